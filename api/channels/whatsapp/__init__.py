"""The WhatsApp channel through Twilio: verified webhooks in, an outbox dispatcher out."""
