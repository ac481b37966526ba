"""Service requests the bot takes on behalf of a human team (samples, access, meetings ...)."""
