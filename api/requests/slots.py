"""Service-request form slots: what the HCP typed → a clean value, or None (the form asks again).

Pure functions, no database, no Rasa: the ``validate_<form>`` actions (api.rasa.actions.validate_forms)
call them for the slot the form asked for, and for the other slots of the form on any message
("four packs of Respizan to 9 Mill Lane, Leeds LS2 7JT" fills three slots at once).

- a product only from ``knowledge/content/products.yaml`` (name, generic name or alias, with the
  catalogue's own spelling tolerance: ``api.safety.products.Catalogue.mentioned``), stored as its key;
- a quantity as a whole number of packs (digits or words), never a dose ("20 mg") or a house number;
- an address only when it looks like one: a house number with a street word, a postcode, or a named
  hospital / practice / clinic;
- the free-text slots (topics, times, contact details) are kept in the HCP's words once they carry
  something of the kind asked for.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from api.safety.products import Catalogue, Product, load_catalogue, products_path_default

MAX_SAMPLE_PACKS = 20
CONFIRM_SLOT = "request_confirmed"
CONFIRMED = "yes"


@dataclass(frozen=True)
class FormSpec:
    label: str                 # "sample request": what the summary calls it
    slots: tuple[str, ...]     # the form's own slots, in the order it asks them (without the confirmation)


FORMS: dict[str, FormSpec] = {
    "samples_form": FormSpec("sample request", ("product", "sample_quantity", "delivery_address")),
    "patient_support_form": FormSpec("patient support programme request", ("product", "support_topic")),
    "access_form": FormSpec("reimbursement and access request", ("product", "access_topic")),
    "literature_form": FormSpec("literature request", ("literature_topic",)),
    "meeting_form": FormSpec("meeting request", ("meeting_with", "preferred_times")),
    "contact_update_form": FormSpec("contact details update", ("new_contact_details",)),
}

# Slots whose value must have a shape (the others are the HCP's own words).
STRICT_SLOTS = frozenset({"product", "sample_quantity", "delivery_address"})

LABELS = {
    "product": "Product",
    "sample_quantity": "Quantity",
    "delivery_address": "Deliver to",
    "support_topic": "What your patient needs",
    "access_topic": "What you need help with",
    "literature_topic": "Topic",
    "meeting_with": "Meet with",
    "preferred_times": "Preferred times",
    "new_contact_details": "New contact details",
}


@lru_cache(maxsize=1)
def catalogue() -> Catalogue:
    """The shipped products file (the off-label screen reads the same one)."""
    return load_catalogue(products_path_default())


def _norm(text: str) -> str:
    return " ".join(str(text).lower().split())


# ---------------------------------------------------------------- product


def products_named(text: str, cat: Catalogue | None = None) -> tuple[Product, ...]:
    """Every catalogue product the text names (display name, generic name or alias, typos tolerated)."""
    cat = cat if cat is not None else catalogue()
    return cat.mentioned(_norm(text).replace("_", " "))


def parse_product(text: Any, cat: Catalogue | None = None) -> str | None:
    """The products.yaml key of the one product the text names; None for none or several."""
    if text is None:
        return None
    found = products_named(str(text), cat)
    return found[0].key if len(found) == 1 else None


def product_label(key: str, cat: Catalogue | None = None) -> str:
    cat = cat if cat is not None else catalogue()
    for p in cat.products:
        if p.key == key:
            return f"{p.display_name} ({p.generic_name})" if p.generic_name else p.display_name
    return key


def product_keys(cat: Catalogue | None = None) -> frozenset[str]:
    cat = cat if cat is not None else catalogue()
    return frozenset(p.key for p in cat.products)


# ---------------------------------------------------------------- quantity

_NUMBER_WORDS = {
    "one": 1, "a single": 1, "two": 2, "a couple of": 2, "a couple": 2, "a pair of": 2, "three": 3, "four": 4,
    "five": 5, "six": 6, "half a dozen": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10, "eleven": 11,
    "twelve": 12, "a dozen": 12, "fifteen": 15, "twenty": 20, "thirty": 30, "fifty": 50, "a hundred": 100,
}
_PACK_UNITS = (r"(?:sample\s+)?(?:packs?|packets?|boxes|box|samples?|cartons?|units?|pens?|inhalers?|kits?"
               r"|starter\s+packs?)")
_DOSE_UNITS = re.compile(r"^(?:mg|mcg|µg|ug|ml|g|iu|milligrams?|micrograms?|%|mmol|kg)\b")
_STREET_WORDS = (r"street|st|road|rd|avenue|ave|lane|ln|drive|dr|way|close|place|pl|square|sq|court|ct|crescent"
                 r"|boulevard|blvd|terrace|hill|row|parade|walk|grove|gardens|park|highway|hwy|mews|strasse|straße")
_AFTER_NUMBER = re.compile(rf"^\s*(?:{_STREET_WORDS})\b|^\s*[a-z]{{1,2}}\d|^\s*(?:st|nd|rd|th)\b|^\s*[:/.,-]\s*\d")
_DIGITS = re.compile(r"(?<![\w.,/:£$€-])(\d{1,4})(?![\d]|[a-wyz])")
_WORDS = re.compile(r"\b(" + "|".join(re.escape(w) for w in sorted(_NUMBER_WORDS, key=len, reverse=True)) + r")\b")
_UNIT_AFTER = re.compile(rf"^\s*(?:x\s*)?(?:of\s+)?(?:[a-z-]+\s+){{0,2}}?{_PACK_UNITS}\b")


def parse_quantity(text: Any, *, need_unit: bool = False) -> int | None:
    """The number of packs the text asks for: "3", "3 boxes", "three packs", "a couple".

    A dose ("20 mg"), a house number ("12 Harley Street"), a postcode or a time is not a quantity;
    two different numbers are ambiguous (None). ``need_unit``: only "<n> packs/boxes/…" counts
    (reading a message that was not an answer to "How many?").
    """
    if text is None:
        return None
    if isinstance(text, int) and not isinstance(text, bool):
        return text
    low = _norm(str(text))
    found: set[int] = set()
    for rx in (_DIGITS, _WORDS):
        for m in rx.finditer(low):
            rest = low[m.end():]
            # "3 boxes to dr lee" is three boxes, not a house on a "dr"ive: a pack word right after wins
            unit = _UNIT_AFTER.match(rest)
            if _DOSE_UNITS.match(rest.lstrip()) or _AFTER_NUMBER.match(rest) or (
                    not unit and _HOUSE_AND_STREET.match(low, m.start())):
                continue
            if rx is _DIGITS and re.match(r"^\s*(?:am|pm|h|hrs?|hours?|days?|weeks?|months?|years?)\b", rest):
                continue
            if need_unit and not unit:
                continue
            word = m.group(1)
            found.add(int(word) if rx is _DIGITS else _NUMBER_WORDS[word])
    return found.pop() if len(found) == 1 else None


def quantity_problem(n: int) -> str | None:
    if n < 1:
        return "The number of packs must be at least 1."
    if n > MAX_SAMPLE_PACKS:
        return f"I can request at most {MAX_SAMPLE_PACKS} sample packs at a time."
    return None


# ---------------------------------------------------------------- address

_UK_POSTCODE = re.compile(r"\b[a-z]{1,2}\d[a-z\d]?\s*\d[a-z]{2}\b")
_US_ZIP = re.compile(r"\b(?:[a-z]{2}|[a-z]+)\s+\d{5}(?:-\d{4})?\b")
_EU_POSTCODE = re.compile(r"\b\d{4,5}\s+[a-zäöüßéè][a-zäöüßéè-]{2,}")
_HOUSE_AND_STREET = re.compile(rf"\b\d{{1,5}}[a-z]?,?\s+(?:[\w'’.-]+\s+){{0,4}}?(?:{_STREET_WORDS})\b")
_STREET_AND_HOUSE = re.compile(r"\b[\wäöüß-]*(?:straße|strasse|str\.|weg|allee|platz|gasse|ring|damm)\s*\d{1,4}")
_INSTITUTION = re.compile(r"\b(?:hospital|clinic|surgery|practice|medical cent(?:re|er)|health cent(?:re|er)|infirmary"
                          r"|pharmacy|klinik|klinikum|praxis|krankenhaus|university|hôpital)\b")
_VAGUE_PLACE = re.compile(r"^(?:to\s+|at\s+)?(?:my|our|the|your|same|usual|usual address|the same)\b")
_ADDRESS_CUE = re.compile(r"\b(?:(?:deliver|send|sent|ship|post|mail)\w*\b[^.?!]{0,40}?\bto"
                          r"|address\s+(?:is|to|should\s+be)|address:|to\s+the\s+address)\s+", re.IGNORECASE)
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")


def _looks_like_address(candidate: str) -> bool:
    low = _norm(candidate)
    if len(low) < 6 or len(low) > 200 or "?" in low or _EMAIL.search(low):
        return False
    if _HOUSE_AND_STREET.search(low) or _STREET_AND_HOUSE.search(low) or _UK_POSTCODE.search(low):
        return True
    if _US_ZIP.search(low) and re.search(r"\d{1,5}\s+[a-z]", low):
        return True
    if _EU_POSTCODE.search(low) and re.search(r"[a-z]{3,}.*\d|\d.*[a-z]{3,}", low) and "," in low:
        return True
    if _INSTITUTION.search(low) and not _VAGUE_PLACE.match(low):
        words = candidate.split()
        named = any(w[:1].isupper() for w in words[1:]) or "," in candidate
        return len(words) >= 3 and named
    return False


def _tidy(text: str) -> str:
    return " ".join(text.split()).strip(" .;")


def parse_address(text: Any, *, need_cue: bool = False) -> str | None:
    """A delivery address in the HCP's words, or None when the text is not one.

    "Deliver to 4 Elm Road, Leeds LS1 4AB" gives "4 Elm Road, Leeds LS1 4AB". ``need_cue``: only text
    after "send them to", "deliver to", "address is" counts (a message that answered another question).
    """
    if text is None:
        return None
    raw = str(text)
    cue = None
    for m in _ADDRESS_CUE.finditer(raw):
        cue = m
    if cue is not None:
        rest = _tidy(raw[cue.end():])
        return rest if _looks_like_address(rest) else None
    if need_cue:
        return None
    whole = _tidy(raw)
    return whole if _looks_like_address(whole) else None


# ---------------------------------------------------------------- the HCP's own words

_TIME_WORDS = re.compile(
    r"\b(?:mon|tue|tues|wed|thu|thur|thurs|fri|sat|sun)(?:day)?s?\b|\bweek(?:day|end)s?\b|\bmornings?\b"
    r"|\bafternoons?\b|\bevenings?\b|\blunch\s?time\b|\blunch\b|\btoday\b|\btomorrow\b|\bnext\s+week\b"
    r"|\bthis\s+week\b|\bany\s?time\b|\bnoon\b|\b\d{1,2}(?::\d{2})?\s*(?:am|pm)\b|\b\d{1,2}[:.h]\d{2}\b"
    r"|\b\d{1,2}(?:st|nd|rd|th)?\s+(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)"
    r"|\b(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\s+\d{1,2}\b|\b\d{1,2}/\d{1,2}\b")
_PHONE = re.compile(r"(?:\+|00)?\d[\d\s().-]{6,}\d")


def parse_free_text(text: Any) -> str | None:
    """A topic in the HCP's words: some letters, not just a number or a single character."""
    if text is None:
        return None
    tidy = _tidy(str(text))
    if len(tidy) < 3 or len(tidy) > 500 or len(re.findall(r"[^\W\d_]", tidy)) < 3 or tidy.startswith("/"):
        return None
    return tidy


def parse_preferred_times(text: Any) -> str | None:
    tidy = parse_free_text(text)
    return tidy if tidy and _TIME_WORDS.search(tidy.lower()) else None


def parse_contact_details(text: Any) -> str | None:
    if text is None:
        return None
    tidy = _tidy(str(text))
    if _EMAIL.search(tidy) or _PHONE.search(tidy) or parse_address(tidy):
        return tidy[:300]
    return None


# ---------------------------------------------------------------- one entry point per slot


def clean(slot: str, value: Any, cat: Catalogue | None = None) -> Any:
    """The slot's clean value from what was typed (or extracted), or None when it is not one."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if slot == "product":
        return parse_product(value, cat)
    if slot == "sample_quantity":
        n = parse_quantity(value)
        if n is None:  # "3 boxes to 12 Main St, Boston MA 02118": the number with a pack word is the quantity
            n = parse_quantity(value, need_unit=True)
        return n if n is not None and quantity_problem(n) is None else None
    if slot == "delivery_address":
        return parse_address(value)
    if slot == "preferred_times":
        return parse_preferred_times(value)
    if slot == "new_contact_details":
        return parse_contact_details(value)
    return parse_free_text(value)


_WEAK_ADDRESS_CUE = re.compile(r"\b(?:to|at|for)\s+", re.IGNORECASE)
# Words that belong to the days named after them ("next thursday", "any tuesday afternoon").
_TIME_LEAD = re.compile(r"\b(?:next|this|any|every|most|after|before|around)\s+$")


def _address_after_weak_cue(text: str) -> str | None:
    """"3 boxes to Dr Lee, Harbor Clinic, 12 Main St, Boston MA 02118": the address after "to" / "at" /
    "for", when what follows is an address by shape (a street and number, a postcode …)."""
    for m in _WEAK_ADDRESS_CUE.finditer(text):
        rest = _tidy(text[m.end():])
        low = _norm(rest)
        if _looks_like_address(rest) and (_HOUSE_AND_STREET.search(low) or _UK_POSTCODE.search(low)
                                          or _US_ZIP.search(low)):
            return rest
    return None


def _stated_address(text: str) -> str | None:
    """An address a message states for a slot not asked: after "send them to", or "to" + an address shape."""
    return parse_address(text, need_cue=True) or _address_after_weak_cue(text)


def time_phrase(text: str) -> str | None:
    """The days and times a sentence names ("... with the MSL on tuesday afternoon about X" gives "tuesday
    afternoon"), from its first time word to its last, or None when it names none."""
    low = text.lower()
    matches = list(_TIME_WORDS.finditer(low))
    if not matches:
        return None
    start, end = matches[0].start(), matches[-1].end()
    lead = _TIME_LEAD.search(low[:start])
    if lead:
        start = lead.start()
    phrase = _tidy(text[start:end])
    return phrase if len(phrase.split()) <= 12 else None


def read_unprompted(text: str, slots: tuple[str, ...] | list[str], cat: Catalogue | None = None, *,
                    bare: bool = False) -> dict[str, Any]:
    """Values for ``slots`` that a message states without being asked: a product it names, "<n> packs",
    an address after "send them to" (or "to" + something shaped like an address), the days and times of a
    meeting, an email or phone number for a contact update. Free-text topics are never guessed.

    ``bare``: the message may be an answer to another of the form's questions (it did not answer the one
    asked), so an address is also taken without any cue ("Harbor Clinic, 12 Main St, Boston MA 02118")."""
    found: dict[str, Any] = {}
    if "product" in slots:
        product = parse_product(text, cat)
        if product:
            found["product"] = product
    if "sample_quantity" in slots:
        n = parse_quantity(text, need_unit=True)
        if n is not None and quantity_problem(n) is None:
            found["sample_quantity"] = n
    if "delivery_address" in slots:
        address = _stated_address(text) or (parse_address(text) if bare else None)
        if address:
            found["delivery_address"] = address
    if "preferred_times" in slots:
        times = time_phrase(text)
        if times:
            found["preferred_times"] = times
    if "new_contact_details" in slots:
        given = [m.group(0) for rx in (_EMAIL, _PHONE) for m in rx.finditer(text)]
        address = _stated_address(text)
        if address:
            given.append(address)
        if given:
            found["new_contact_details"] = "; ".join(_tidy(g) for g in given)[:300]
    return found


# ---------------------------------------------------------------- the confirmation step

_YES = re.compile(r"^(?:/affirm\b|yes\b|yep\b|yeah\b|yup\b|y$|ok\b|okay\b|confirm|correct\b"
                  r"|that'?s\s+(?:right|correct|fine)"
                  r"|looks\s+(?:good|right|fine)|all\s+(?:good|correct)|go\s+ahead|submit|send\s+it|please\s+do"
                  r"|sure\b|perfect\b|fine\b|great\b|right\b)")
_EDIT = re.compile(r"^(?:/deny\b|no\b|nope\b|not\s+quite|edit\b|change\b|wrong\b|incorrect\b|start\s+(?:again|over)"
                   r"|redo\b)|\b(?:edit|change|wrong|incorrect|mistake)\b")


def parse_confirmation(text: str) -> str | None:
    """"confirm", "edit" or None for an answer to the summary."""
    low = _norm(text).strip(" .!")
    if not low:
        return None
    if _EDIT.search(low):
        return "edit"
    if _YES.match(low) and len(low.split()) <= 6:
        return "confirm"
    return None


def summary(form: str, values: dict[str, Any], cat: Catalogue | None = None) -> str:
    """The summary shown before a request is created: one line per slot, in the form's order."""
    spec = FORMS[form]
    lines = [f"Please check your {spec.label} before I send it:"]
    for slot in spec.slots:
        value = values.get(slot)
        if value is None:
            continue
        if slot == "product":
            shown = product_label(str(value), cat)
        elif slot == "sample_quantity":
            shown = f"{value} pack" + ("" if value == 1 else "s")
        else:
            shown = str(value)
        lines.append(f"• {LABELS[slot]}: {shown}")
    lines.append("Confirm to send it, or Edit to change it (you can also type the correction).")
    return "\n".join(lines)


HINTS = {
    "product": "I can only take one of our products here.",
    "sample_quantity": f"Please give the number of packs as a number from 1 to {MAX_SAMPLE_PACKS}.",
    "delivery_address": ("That doesn't look like a delivery address. Please give a street address with "
                         "postcode, or the name of the hospital or practice and its town."),
    "preferred_times": "Please give a day or a time, for example 'Tuesday afternoon'.",
    "new_contact_details": "Please give an email address, a phone number or a postal address.",
}
GENERIC_HINT = "Sorry, I didn't catch that."
