"""Demo data generators (``concierge demo …``)."""
