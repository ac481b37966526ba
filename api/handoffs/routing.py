"""Which team an HCP's words ask for, whether they ask for a call back, and whether a message that
Rasa could not place is plainly a request for a person.

The HCP's own words decide the team (Rasa's ``handoff_target`` entity only when the words name
none): "medical information" / "med info" goes to Medical Information — never to a rep; "MSL",
"science liaison" to an MSL; "patient support" to the patient-support request; a rep otherwise.
"""

from __future__ import annotations

import re

from api.handoffs.models import HandoffTarget

PATIENT_SUPPORT = "patient_support"

_TEAMS: tuple[tuple[str, re.Pattern[str]], ...] = (
    (HandoffTarget.medical_information, re.compile(
        r"\bmed(?:ical)?[ .\-]?info(?:rmation)?\b|\bm\.?i\.? (?:team|dep(?:artmen)?t)\b|\bmedinfo\b"
        r"|\bmedical (?:team|department|dept|affairs|colleagues?|enquiries|inquiries)\b"
        r"|\bmedizinischen? information\b", re.IGNORECASE)),
    (HandoffTarget.msl, re.compile(
        r"\bmsls?\b|\b(?:medical )?science liaisons?\b|\bmedical liaisons?\b|\bscientific liaisons?\b",
        re.IGNORECASE)),
    (PATIENT_SUPPORT, re.compile(
        r"\bpatient (?:support|services|assistance)\b|\bsupport (?:programme|program|scheme)\b|\bnurse educators?\b",
        re.IGNORECASE)),
    (HandoffTarget.rep, re.compile(
        r"\b(?:sales |field |medical )?reps?\b|\brepresentatives?\b|\baccount managers?\b|\baußendienst\w*"
        r"|\bterritory managers?\b", re.IGNORECASE)),
)
_ENTITY_TARGETS = {
    "msl": HandoffTarget.msl, "medical science liaison": HandoffTarget.msl,
    "medical": HandoffTarget.medical_information, "medical information": HandoffTarget.medical_information,
    "medical_information": HandoffTarget.medical_information,
    "rep": HandoffTarget.rep, "representative": HandoffTarget.rep, "sales rep": HandoffTarget.rep,
    "patient_support": PATIENT_SUPPORT, "patient support": PATIENT_SUPPORT,
}
_CALLBACK = re.compile(
    r"\b(?:call|phone|ring|rings|ringing|calling|phoning|telephone)\b(?: me| us)?\b.*|\bcall ?back\b"
    r"|\bgive me a (?:call|ring|bell)\b|\brückruf\b|\bruf\w* mich\b", re.IGNORECASE)
_PERSON = re.compile(
    r"\b(?:person|people|human|humans|human being|agent|operator|somebody|someone|staff|colleague|"
    r"real one|mensch\w*|mitarbeiter\w*)\b", re.IGNORECASE)
_WANT = re.compile(
    r"\b(?:talk|speak|chat|connect|put me through|transfer|get|give|want|need|let me|pass me|hand me|"
    r"switch|escalate|prefer|rather|sprechen|can i|could i|may i|i'?d like)\b|\bpls\b|\bplease\b|\bnow\b"
    r"|^\W*(?:an? |any |some )?(?:real |actual |live )?(?:person|human|agent|operator|somebody|someone)\W*$",
    re.IGNORECASE)


def target_for(text: str, entity: str | None = None) -> str:
    """The team the HCP asked for: a ``HandoffTarget`` value or ``PATIENT_SUPPORT``."""
    for target, pattern in _TEAMS:
        if pattern.search(text or ""):
            return str(target)
    if entity:
        return str(_ENTITY_TARGETS.get(entity.strip().lower(), HandoffTarget.rep))
    return str(HandoffTarget.rep)


def wants_callback(text: str) -> bool:
    return bool(_CALLBACK.search(text or ""))


def asks_for_person(text: str) -> bool:
    """A plain request for a person or a named team ("get me a human", "msl please", "a real person now")."""
    text = text or ""
    if len(text) > 160:
        return False
    named_team = any(p.search(text) for t, p in _TEAMS if t != PATIENT_SUPPORT)
    return bool((_PERSON.search(text) or named_team) and (_WANT.search(text) or wants_callback(text)))


# "book a call with the MSL", "set up a Teams meeting with medical": a meeting request, not a handoff
_BOOKING = re.compile(
    r"\b(?:book|booking|schedule|arrange|organi[sz]e|set up|setup|plan|meet|meeting|appointment|visit|slot|"
    r"teams|zoom|webex)\b", re.IGNORECASE)
_CONNECT = re.compile(
    r"\b(?:connect|put (?:me )?through|transfer|speak|talk|chat with|hand me|pass me|get me|patch me|"
    r"verbinden|sprechen)\b", re.IGNORECASE)


def asks_to_be_put_through(text: str) -> bool:
    """"connect me with the medical information team", "can I speak to an MSL": a named medical team and
    a verb of connecting — a person from that team, whatever the NLU makes of it (rep and patient
    support asks are left to the NLU: "talk to my rep about samples" is a sample request)."""
    text = text or ""
    if len(text) > 160:
        return False
    named = any(p.search(text) for t, p in _TEAMS if t in (HandoffTarget.medical_information, HandoffTarget.msl))
    return named and wants_to_be_connected(text) and not _BOOKING.search(text)


def wants_to_be_connected(text: str) -> bool:
    """"connect me with …", "put me through to …", "can I speak to …": a person, not a written answer."""
    return bool(_CONNECT.search(text or "") or wants_callback(text))
