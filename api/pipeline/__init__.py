"""The turn pipeline, above the domains: a turn (safety screen → state → Rasa or relay → replies),
the per-conversation worker that runs turns, and delivery after commit. Work that crosses
domains lives here; no domain imports it (only the app, the worker process and the consoles)."""
