"""The preferences a message states, read deterministically (no model), with what they replace.

"by email instead of WhatsApp" is channel = email (WhatsApp is what the HCP no longer wants);
"not on weekends" is best time = weekdays; "only about Respizan" is topics = respizan (product names
from products.yaml with its spelling tolerance). A value the message negates ("not", "no more",
"instead of", "rather than", "from" in "switch from X to Y") is never the one stored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from feedback.models import PreferenceName

LANGUAGES = {"english": "en", "french": "fr", "francais": "fr", "français": "fr", "german": "de",
             "deutsch": "de", "spanish": "es", "espanol": "es", "español": "es", "italian": "it",
             "portuguese": "pt", "dutch": "nl"}
CHANNELS = (("whatsapp", "whatsapp"), ("e-mail", "email"), ("email", "email"), ("mail", "email"),
            ("sms", "sms"), ("text message", "sms"), ("texts", "sms"), ("phone", "phone"), ("call", "phone"),
            ("web chat", "webchat"), ("webchat", "webchat"))
FREQUENCIES = (
    (r"\b(once|one time) (a|per|every) month\b|\bmonthly\b|\bonce a month\b", "monthly"),
    (r"\b(once|one time) (a|per|every) (week|wk)\b|\bweekly\b", "weekly"),
    (r"\b(once|one time) (a|per|every) (quarter|3 months|three months)\b|\bquarterly\b", "quarterly"),
    (r"\b(every|each) (day|morning)\b|\bdaily\b", "daily"),
    (r"\b(too much|too many|too often|less often|fewer messages|less frequently)\b", "less_often"),
)
NAMED_TIMES = ((r"\bmornings?\b", "morning"), (r"\b(afternoons?|lunch ?time)\b", "afternoon"),
               (r"\bevenings?\b", "evening"), (r"\bweekends?\b", "weekend"),
               (r"\bweekdays?\b", "weekdays"))
TOPIC_WORDS = {"cardiology": "cardiology", "diabetes": "diabetes", "respiratory": "respiratory",
               "asthma": "respiratory", "events": "events", "congress": "events", "clinical data": "clinical_data",
               "studies": "clinical_data", "guidelines": "guidelines"}

# Words that make the mention right after them a value the HCP does NOT want.
_NEGATED_BEFORE = re.compile(
    r"\b(?:not|no|no more|never|don'?t|do not|stop|avoid|except|instead of|rather than|other than|than|from)"
    r"(?:\s+(?:on|at|by|via|over|through|in|the|a|me|us|contact|message|messaging|call|calling|use|using|"
    r"send|sending|me|any|about|during|weekend|more|messages?|emails?|calls?|texts?|updates?|news)){0,4}\s+$")
_BOUNDARY = re.compile(r"[,.;:!?]|\b(?:but|and|please)\b")


def _negated(low: str, start: int) -> bool:
    before = low[max(0, start - 40):start]
    cut = None
    for m in _BOUNDARY.finditer(before):
        cut = m
    if cut is not None:
        before = before[cut.end():]
    return bool(_NEGATED_BEFORE.search(" " + before))


@dataclass
class Parsed:
    values: dict[str, str] = field(default_factory=dict)
    instead_of: dict[str, str] = field(default_factory=dict)   # name → the value the HCP turned down


def _mentions(low: str, pairs: tuple[tuple[str, str], ...] | list[tuple[str, str]]) -> list[tuple[int, str, bool]]:
    """(position, value, negated) of every mention, in text order."""
    out: list[tuple[int, str, bool]] = []
    for pattern, value in pairs:
        for m in re.finditer(pattern, low):
            out.append((m.start(), value, _negated(low, m.start())))
    return sorted(out)


def _choose(found: Parsed, name: str, mentions: list[tuple[int, str, bool]]) -> None:
    """The first value the HCP asked for (not negated) and, if they turned another one down, that one."""
    wanted = [v for _, v, neg in mentions if not neg]
    if wanted:
        found.values[name] = wanted[0]
        refused = [v for _, v, neg in mentions if neg and v != wanted[0]]
        if refused:
            found.instead_of[name] = refused[0]


def _product_topics(low: str) -> list[tuple[int, str, bool]]:
    from api.requests.slots import products_named

    out: list[tuple[int, str, bool]] = []
    for product in products_named(low):
        positions = [m.start() for name in product.names for m in re.finditer(rf"\b{re.escape(name)}\b", low)]
        if not positions:   # a misspelt name: find the word the catalogue matched
            positions = [m.start() for m in re.finditer(r"[a-z]{5,}", low)
                         if products_named(m.group(0)) == (product,)]
        for pos in positions[:1]:
            out.append((pos, product.key, _negated(low, pos)))
    return out


def parse(text: str) -> Parsed:
    low = " ".join(text.lower().split())
    found = Parsed()
    for pattern, value in FREQUENCIES:
        if re.search(pattern, low):
            found.values[PreferenceName.frequency] = value
            break

    _choose(found, PreferenceName.language,
            _mentions(low, [(rf"\b{re.escape(w)}\b", code) for w, code in LANGUAGES.items()]))

    time_context = re.search(r"\b(best time|contact me|reach me|message me|call me|available|prefer)\b", low)
    clock = re.search(r"\b(after|before|around|at) (\d{1,2}(:\d{2})?\s*(am|pm)?)", low)
    times = _mentions(low, NAMED_TIMES)
    if clock and time_context and not _negated(low, clock.start()):
        found.values[PreferenceName.best_time] = f"{clock.group(1)} {clock.group(2).strip()}"
    elif times:
        positive = [v for _, v, neg in times if not neg]
        negative = [v for _, v, neg in times if neg]
        if positive:
            found.values[PreferenceName.best_time] = positive[0]
        elif negative:
            found.values[PreferenceName.best_time] = "weekdays" if negative[0] == "weekend" else f"not_{negative[0]}"

    if re.search(r"\b(via|by|through|over|on|use|prefer|rather|switch|move|change|from|instead|only|stick to)\b", low):
        # "mail" inside "e-mail" / "email" is the same mention
        _choose(found, PreferenceName.channel,
                _mentions(low, [(rf"\b{re.escape(w)}s?\b", code) for w, code in CHANNELS]))

    if re.search(r"\b(only|interested in|topics?|about|news on|updates on|just)\b", low):
        topics = _mentions(low, [(rf"\b{re.escape(w)}\b", t) for w, t in TOPIC_WORDS.items()]) + _product_topics(low)
        chosen = sorted({t for _, t, neg in topics if not neg})
        if chosen:
            found.values[PreferenceName.topics] = ",".join(chosen)
    if re.search(r"\b(no|stop|don't send|do not send)\b.{0,20}\b(marketing|promotional|newsletters?)\b", low):
        found.values[PreferenceName.opt_out] = "marketing"
    return found
