"""HCP Concierge api process: channels, worker, actions, consoles, audit."""
