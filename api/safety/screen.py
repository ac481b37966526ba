"""The safety screen seam: every inbound message passes through it before anything else.

The worker calls ``SafetyScreen.screen`` on the raw text in every conversation state, with or
without Rasa; ``api.safety.service.apply`` persists what it found in the same transaction
as the message, before any reply is produced.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

# What a case's category means (ICH E2D / EU GVP module VI special situations, plus the plain
# adverse reaction and the product quality complaint). The safety console shows these labels.
CATEGORY_LABELS: dict[str, str] = {
    "side_effect": "Adverse reaction",
    "pregnancy_exposure": "Exposure in pregnancy or breastfeeding (maternal or paternal)",
    "overdose": "Overdose",
    "medication_error": "Medication error (incl. near miss)",
    "misuse": "Misuse or abuse",
    "occupational_exposure": "Occupational exposure",
    "lack_of_efficacy": "Lack of therapeutic efficacy",
    "off_label_outcome": "Off-label use with an outcome",
    "infectious_transmission": "Suspected transmission of an infectious agent",
    "quality_complaint": "Product quality complaint",
}
SPECIAL_SITUATIONS = frozenset(CATEGORY_LABELS) - {"side_effect", "quality_complaint"}

# Form slots whose answer is a fact of a known shape (a name, an address …), not free narrative.
FORM_SLOTS: dict[str, str] = {
    "name": "name", "hcp_name": "name", "full_name": "name",
    "address": "address", "delivery_address": "address", "new_contact_details": "contact",
    "licence_number": "licence", "license_number": "licence", "licence": "licence",
    "date_time": "date", "date": "date", "time": "date", "preferred_times": "date",
    "quantity": "quantity", "sample_quantity": "quantity",
    "specialty": "specialty", "country": "country", "product": "product",
    "email": "contact", "phone": "contact",
}
# Slots that take a topic in the HCP's words (a literature topic, a support need, a comment, why an
# answer fell short, how they want to hear from us).
TOPIC_SLOTS = frozenset({"literature_topic", "support_topic", "access_topic", "comment", "topic",
                         "rating_reason", "preference"})


def category_label(code: str) -> str:
    return CATEGORY_LABELS.get(code, code.replace("_", " "))


@dataclass(frozen=True)
class ScreenContext:
    """What the bot had just asked when the message came in (``asked``: a form slot name)."""

    asked: str | None = None

    @property
    def form_slot(self) -> str | None:
        """The kind of form answer expected (name, address, licence, date, quantity, …), if any."""
        return FORM_SLOTS.get(self.asked or "")

    @property
    def topic_slot(self) -> bool:
        return (self.asked or "") in TOPIC_SLOTS


@dataclass(frozen=True)
class ScreenResult:
    adverse_event: bool = False
    # side_effect | pregnancy_exposure | overdose | medication_error | misuse | occupational_exposure
    # | lack_of_efficacy | off_label_outcome | infectious_transmission | quality_complaint
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
    # the HCP typed an ask for a person ("talk to a human"): handed over even when Rasa is down
    handoff: bool = False
    # the form slot the message was screened as an answer to (None: free text)
    screened_as: str | None = None

    @property
    def special_situations(self) -> tuple[str, ...]:
        return tuple(c for c in self.ae_categories if c in SPECIAL_SITUATIONS)

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
    def screen(self, text: str, context: ScreenContext | None = None) -> ScreenResult: ...
