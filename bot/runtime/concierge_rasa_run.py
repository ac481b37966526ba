"""Start Rasa's command line with message text kept out of its logs.

Rasa 3.6 logs the user's text in some of its structured events (for example
``rest.message.received.timeout`` when a turn is cancelled at our deadline). Rasa passes each
event through ``rasa.utils.log_utils._anonymizer`` but, without a Rasa Pro plugin, changes nothing;
here that step masks the same keys instead, before Rasa configures its logging. Use it in place of
the ``rasa`` script: ``python -m concierge_rasa_run run ...``.

Not part of the trained model (it is not in ``bot/components``): changing it retrains nothing.
"""

from __future__ import annotations

import sys
from typing import Any

MASK = "[redacted]"
# The keys Rasa itself marks as anonymizable (rasa/utils/log_utils.py), whatever they hold.
TEXT_KEYS = frozenset({
    "text", "response_text", "user_text", "slot_values", "parse_data_text", "parse_data_entities",
    "prediction_events", "tracker_latest_message", "prefilled_slots", "message", "response",
    "slot_candidates", "rasa_event", "rasa_events", "tracker_states", "current_states", "old_states",
    "successes", "current_entity", "next_entity", "states", "entity", "token_text", "user_message",
    "json_message",
})


def mask_text(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    for key in TEXT_KEYS.intersection(event_dict):
        event_dict[key] = MASK
    return event_dict


def install() -> None:
    from rasa.utils import log_utils

    log_utils._anonymizer = mask_text  # looked up when Rasa configures structlog


def main() -> int:
    install()
    from rasa.__main__ import main as rasa_main

    sys.argv[0] = "rasa"
    rasa_main()
    return 0


if __name__ == "__main__":
    sys.exit(main())
