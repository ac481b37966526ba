"""SLA alerts: overdue handoffs and service requests, adverse-event cases near their reporting deadline."""
