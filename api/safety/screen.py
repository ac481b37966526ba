"""The safety screen seam: every inbound message passes through it before anything else.

The worker calls ``SafetyScreen.screen`` on the raw text in every conversation state, with or
without Rasa; ``api.safety.service.apply`` persists what it found in the same transaction
as the message, before any reply is produced.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class ScreenResult:
    adverse_event: bool = False
    # side_effect | lack_of_efficacy | overdose | misuse | pregnancy_exposure | quality_complaint
    ae_categories: tuple[str, ...] = ()
    ae_score: float = 0.0
    off_label: bool = False
    opt_out: bool = False
    opt_in: bool = False
    help: bool = False
    products: tuple[str, ...] = field(default=())
    # Added by the safety package (all optional, defaults keep older callers working).
    serious: bool = False
    serious_terms: tuple[str, ...] = ()
    # population | indication | dose | explicit
    off_label_reasons: tuple[str, ...] = ()
    # a commercial / service request a rep handles (samples, meeting or visit request)
    rep_request: bool = False

    @property
    def is_quality_complaint_only(self) -> bool:
        return self.adverse_event and set(self.ae_categories) == {"quality_complaint"}

    @property
    def route(self) -> str:
        """Where a human follow-up belongs: safety > medical > rep > bot."""
        if self.adverse_event:
            return "safety"
        if self.off_label:
            return "medical"
        if self.rep_request:
            return "rep"
        return "bot"


class SafetyScreen(Protocol):
    def screen(self, text: str) -> ScreenResult: ...
