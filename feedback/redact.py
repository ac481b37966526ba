"""Mask personal data in free text before it reaches analysts or logs.

``redact(text)`` replaces phone numbers (international, UK/US/DE national, ``whatsapp:+…``
addresses), e-mail addresses, licence/registration numbers (GMC, NPI, "registration no. …"),
dates of birth (a date next to "DOB", "born", "birth", "geb.") and names of people (after a
title — Dr, Prof, Mr, Mrs, Ms …; after "my name is", "I'm", "this is"; in a sign-off; or a
capitalised first name from a small list) with ``[phone]``, ``[email]``, ``[licence]``,
``[dob]`` and ``[name]``. Titles are kept ("Dr [name]").

It is rule-based and deterministic, and errs on the side of masking: a masked surname costs an
analyst a word, a leaked one is a GDPR incident. What it deliberately leaves alone: doses and
lab values ("10 mg", "eGFR 45"), dates that are not dates of birth (visit dates), years,
product names from ``knowledge/content/products.yaml`` and eponymous disease names
("Parkinson's disease", "Crohn's"). Limits: a bare first name that is not in the list and not
introduced by a cue ("… said Xiomara") is not recognised.

``install_log_redaction()`` makes every log record's message (and its formatted traceback) go
through ``redact`` and masks IP addresses — COMPLIANCE "No personal data in logs".
"""

from __future__ import annotations

import logging
import re
import threading
import traceback
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

PHONE = "[phone]"
EMAIL = "[email]"
NAME = "[name]"
LICENCE = "[licence]"
DOB = "[dob]"

_PRODUCTS_YAML = Path(__file__).resolve().parent.parent / "knowledge" / "content" / "products.yaml"

# ---------------------------------------------------------------- word lists


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_FIRST_NAMES = _words("""
aaron adam adrian ahmed aisha alan alexander alexandra alex alice alison amanda amelia amir amy ana andrea
andreas andrew angela anja anna anne anton antonio ashley barbara ben benjamin bernd birgit brian bruce
carla carlos caroline catherine charlotte chloe chris christian christina christine christopher claire
claudia daniel daniela david deborah dennis diana dieter dirk dominik edward elena elizabeth ella emily
emma eric erik eva fatima felix fiona florian francesca gareth gary george georg gerhard gordon greg
gregory hannah hans harry heike heinz helen helga henry ian isabel isabella jack jacob james jan jana
jane janet jason jennifer jens jessica joanna joe johann johannes john jonathan jorg joseph joshua julia
julian julie jurgen karen karin karl kate katherine kathleen katrin kevin klaus laura lea lena leon
linda lisa louise lucas lucy ludwig lukas margaret maria marie marion markus martin martina mary
matthew matthias max maximilian megan melanie michael michaela michelle mohammed muhammad monika nadia
natalie nicholas nicola nicole niamh oliver olivia oscar patricia patrick paul paula peter petra
philip philipp priya rachel rajesh ralf raj rebecca richard robert ruth ryan sabine sam samantha sandra
sarah sebastian simon sophia sophie stefan stefanie stephen steven susan susanne sven thomas tim timothy
tobias tom tony ursula uwe victoria wolfgang yusuf zoe siobhan aoife ciaran sean seamus deepak anil sunil
ravi arjun mei wei li chen hiroshi yuki olga irina sergei ivan pierre jacques francois marco giulia luca
""")

# First names that are also ordinary words: masked only when a capitalised surname follows.
_AMBIGUOUS_FIRST = _words("""
will may june mark grace hope faith joy bill frank rose jean art april august summer dawn victor
""")

_SURNAMES = _words("""
smith jones williams taylor brown davies evans wilson thomas johnson roberts robinson thompson wright
walker white edwards hughes green hall wood harris lewis martin jackson clarke clark turner hill scott
cooper morris ward moore king watson baker harrison morgan patel young allen mitchell james anderson
phillips lee bell parker davis miller garcia rodriguez martinez hernandez lopez gonzalez perez sanchez
ramirez nguyen kim singh kaur khan ahmed ali hussain shah murphy kelly byrne ryan walsh obrien o'brien
mcdonald campbell stewart macdonald muller mueller schmidt schneider fischer weber meyer wagner becker
schulz hoffmann schafer koch bauer richter klein wolf schroder neumann schwarz zimmermann braun kruger
hofmann hartmann lange schmitt werner krause meier lehmann schmid schulze maier kohler herrmann konig
walter mayer huber kaiser fuchs peters lang scholz moller weiss jung hahn vogel friedrich keller
gunther frank berger winkler roth beck lorenz baumann franke albrecht schuster simon ludwig bohm winter
kraus martin schumacher kramer vogt stein jager otto sommer gross seidel heinrich brandt haas schreiber
graf dietrich ziegler kuhn pohl engel horn busch bergmann thomsen rossi russo ferrari esposito bianchi
romano dubois moreau laurent petit leroy chen wang zhang liu yang huang zhao wu zhou sato suzuki
tanaka watanabe ivanov petrov novak kowalski nowak
""")

# Capitalised words that follow a cue ("I'm …", "this is …") without being names.
_NOT_NAMES = _words("""
a an the i im i'm me my we you he she it they this that these those is am are was were be been
not no yes very so too just also still really quite rather only here there now then today tomorrow
yesterday please thanks thank sorry hi hello dear hey ok okay gp doctor dr nurse pharmacist consultant
physician surgeon registrar resident fellow professor prof mr mrs ms miss mx sir madam team
department clinic hospital practice ward unit surgery pharmacy nhs trust university college centre
center institute and or but if of in on at to for from with by about as into over after before
calling writing messaging texting looking trying asking wondering interested happy unhappy glad
afraid worried concerned busy tired frustrated annoyed disappointed confused sure unsure aware
based working retired new back still going having getting said says told asked wants wanted will would
can could should has had did does do recommended prescribed mentioned who what when where why how which
english british german american french irish scottish welsh european
monday tuesday wednesday thursday friday saturday sunday january february march april may june july
august september october november december
cardiology oncology diabetes diabetology endocrinology respiratory pulmonology neurology psychiatry
paediatrics pediatrics dermatology rheumatology gastroenterology nephrology urology general
""")

# Eponymous conditions and common clinical words written with a capital letter.
_MEDICAL = _words("""
parkinson parkinsons alzheimer alzheimers crohn crohns hodgkin hodgkins addison addisons cushing
cushings graves hashimoto hashimotos down bell bells raynaud raynauds sjogren sjogrens huntington
huntingtons guillain barre kawasaki kaposi wilson wilsons paget pagets tourette tourettes asperger
aspergers marfan turner klinefelter lyme ebola zika hba1c egfr ldl hdl bmi ecg ekg mri ct copd ckd
""")

_TITLES = (r"(?:Dr|Doctor|Prof|Professor|Mr|Mrs|Ms|Miss|Mx|Sir|Dame|Nurse|Sister|Herr|Frau|"
           r"Madame|Mme|Monsieur|Mlle|Señora|Señor|Sra|Sr)")


@lru_cache(maxsize=1)
def product_words() -> frozenset[str]:
    """Lower-cased product names, generic names and aliases (never masked as names)."""
    words: set[str] = set()
    try:
        import yaml

        data = yaml.safe_load(_PRODUCTS_YAML.read_text(encoding="utf-8")) or {}
    except (OSError, ValueError, ImportError):
        return frozenset()
    for key, product in (data.get("products") or {}).items():
        words.add(str(key).lower())
        for field in ("display_name", "generic_name"):
            if product.get(field):
                words.update(str(product[field]).lower().split())
        for alias in product.get("aliases") or ():
            words.update(str(alias).lower().split())
    return frozenset(words)


def _plain(word: str) -> str:
    return word.lower().replace("'", "").replace("’", "").replace("-", "")


def _is_protected(word: str) -> bool:
    w = _plain(word)
    return w in _NOT_NAMES or w in _MEDICAL or w in product_words()


# ---------------------------------------------------------------- patterns

_NAME_WORD = r"[A-ZÄÖÜÀ-Ý][a-zäöüßà-ÿ]*(?:['’\-][A-ZÄÖÜÀ-Ý]?[a-zäöüßà-ÿ]+)*"
_ANY_WORD = r"[A-Za-zÄÖÜÀ-Ýäöüßà-ÿ][a-zäöüßà-ÿA-ZÄÖÜÀ-Ý]*(?:['’\-][A-Za-zÄÖÜà-ÿ]+)*"

_EMAIL = re.compile(r"(?<![\w.+\-])[\w.+\-]+@[\w\-]+(?:\.[\w\-]+)+", re.UNICODE)
_EMAIL_SPELLED = re.compile(
    r"\b[\w.+\-]+\s*[\[(]\s*at\s*[\])]\s*[\w\-]+(?:\s*(?:[\[(]\s*dot\s*[\])]|\.)\s*[\w\-]+)+", re.IGNORECASE)
_EMAIL_WORDS = re.compile(r"\b[\w.+\-]+\s+at\s+[\w\-]+(?:\s+dot\s+[a-z]{2,}\b)+", re.IGNORECASE)
_WHATSAPP = re.compile(r"\bwhatsapp:\s*\+?[\d\s().\-]{6,}\d", re.IGNORECASE)

_LICENCE_PATTERNS = (
    # GMC (UK doctors, 7 digits), NMC PIN, GPhC, HCPC, IMC (Ireland)
    re.compile(r"\b(?:GMC|GPhC|IMC|HCPC|NMC)(?:\s*(?:reference|ref\.?|registration|reg\.?|number|no\.?|"
               r"num\.?|nr\.?|pin|#|code))*\s*(?:is|:|=|-)?\s*[A-Z]{0,2}\d[\d ]{4,9}[A-Z]?\b", re.IGNORECASE),
    # US NPI (10 digits) and DEA (2 letters + 7 digits)
    re.compile(r"\b(?:NPI|DEA)(?:\s*(?:number|no\.?|num\.?|#))*\s*(?:is|:|=|-)?\s*[A-Z]{0,2}\d{7,10}\b",
               re.IGNORECASE),
    # German LANR / BSNR / Arztnummer / Approbation
    re.compile(r"\b(?:LANR|BSNR|Arztnummer|Approbation(?:snummer)?|EFN)(?:\s*(?:number|no\.?|nr\.?|#))*"
               r"\s*(?:is|ist|:|=|-)?\s*\d[\d ]{5,14}\b", re.IGNORECASE),
    # "licence / license / registration / prescriber number …"
    re.compile(r"\b(?:licen[cs]e|registration|reg\.?|prescriber|practitioner|professional)"
               r"(?:\s+(?:number|no\.?|num\.?|nr\.?|id|code|#))+\s*(?:is|:|=|-)?\s*"
               r"[A-Z]{0,3}[\s\-]?\d[\d\-/ ]{3,14}\d\b",
               re.IGNORECASE),
    re.compile(r"\b(?:licen[cs]e|registration)\s*(?:is|:|#)\s*[A-Z]{0,3}[\s\-]?\d[\d\-/ ]{3,14}\d\b",
               re.IGNORECASE),
)

_MONTHS = (r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|"
           r"sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?|januar|februar|märz|mai|juni|juli|"
           r"oktober|dezember)")
_DATE = (r"(?:\d{1,4}[./\-]\d{1,2}[./\-]\d{2,4}"
         rf"|\d{{1,2}}(?:st|nd|rd|th)?\.?\s+(?:of\s+)?{_MONTHS}\.?,?\s+\d{{2,4}}"
         rf"|{_MONTHS}\.?\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{2,4}})")
_DATE_RE = re.compile(_DATE, re.IGNORECASE)
_BIRTH_CUE = re.compile(r"\b(?:DOB|D\.O\.B|birth\w*|born|geb(?=\.)|geboren|date\s+de\s+naissance|né|née)\b",
                        re.IGNORECASE)
_BORN_YEAR = re.compile(r"\b(?:born|geboren)(?:\s+(?:in|im\s+jahr|on))?\s+((?:19|20)\d{2})\b", re.IGNORECASE)
_AGE_DOB = re.compile(r"\b(?:DOB|D\.O\.B\.?)\s*[:=\-]?\s*(\d{1,4}[./\-]\d{1,2}[./\-]\d{2,4}|\d{6,8})",
                      re.IGNORECASE)

# A run of digits and phone separators; classified by _phone_like.
_PHONE_CANDIDATE = re.compile(r"(?<![\w.,/])(?:\+|00)?\(?\d[\d\s().\-/]{4,}\d(?![\w/]|[.,]\d)")
_PHONE_CUE = re.compile(r"\b(?:call|ring|phone|tel|telephone|mobile|mob|cell|cellphone|landline|fax|number|"
                        r"num|no\.|contact|reach|text|sms|whatsapp|handy|telefon|nummer|rufnummer|ext|extension|"
                        r"bleep|pager)\b\W*(?:\w+\W+){0,3}$", re.IGNORECASE)
_UNIT_AFTER = re.compile(r"\s*(?:mg|mcg|µg|ug|g|kg|ml|l|mmol|mol|iu|units?|%|mm|cm|m|h|hrs?|hours?|days?|"
                         r"weeks?|months?|years?|min|mins|minutes?|patients?|tablets?|doses?|x)\b", re.IGNORECASE)

_TITLE_NAME = re.compile(
    rf"\b({_TITLES}|dr|prof|mr|mrs|DR|PROF|MR|MRS)(\.\s*|\s+)((?:(?:{_ANY_WORD})\.?[ \t]+){{0,3}}{_ANY_WORD})")
_TITLE_WORDS = frozenset({"dr", "doctor", "prof", "professor", "med", "rer", "nat", "phil", "habil", "pd", "mr", "mrs",
                          "ms", "sir", "dame", "herr", "frau", "dipl", "ing"})
_INTRO = re.compile(
    r"\b(my name is|my name's|name is|name's|i am|i'm|im|this is|it's|it is|call me|ask for|speak to|speak with|"
    r"talk to|talk with|ich bin|mein name ist|ich heiße|je suis|je m'appelle|me llamo|mi chiamo|from|regards|"
    r"thanks|thank you|cheers|best wishes|best|sincerely|kind regards|many thanks|gruß|grüße|mfg|lg|bw|kr|"
    r"signed|yours)([,:!.\-–—]?\s+[-–—]{0,2}\s*)"
    rf"((?:{_ANY_WORD})(?:[ \t]+(?:{_ANY_WORD})){{0,2}})",
    re.IGNORECASE)
# A person named after their role: "the rep Jonas", "my colleague Rebecca Hale", "patient John Doe".
_ROLE_NAME = re.compile(
    r"\b((?:rep|representative|colleague|msl|nurse|pharmacist|doctor|consultant|gp|manager|assistant|secretary|"
    r"receptionist|patient|husband|wife|partner|son|daughter|mother|father|friend|registrar|surgeon|midwife)"
    r"[ \t]+)"
    rf"({_NAME_WORD}(?:[ \t]+{_NAME_WORD})?)", re.IGNORECASE)
_CAPITAL_SEQ = re.compile(rf"(?<![\w@])({_NAME_WORD})((?:[ \t]+{_NAME_WORD}){{0,2}})")

# Cues after which a lowercase name is still treated as a name.
_STRONG_INTRO = frozenset({"my name is", "my name's", "name is", "name's", "mein name ist", "ich heiße",
                           "je m'appelle", "me llamo", "mi chiamo", "call me", "ask for"})
_SIGN_OFF = frozenset({"regards", "thanks", "thank you", "cheers", "best wishes", "best", "sincerely",
                       "kind regards", "many thanks", "gruß", "grüße", "mfg", "lg", "bw", "kr", "signed",
                       "yours"})


def _is_capitalised(word: str) -> bool:
    return bool(word) and word[0].isupper() and not word.isupper()


def _digits(s: str) -> int:
    return sum(c.isdigit() for c in s)


def _phone_like(text: str, start: int, cand: str) -> bool:
    digits = _digits(cand)
    if digits < 6 or digits > 15:
        return False
    stripped = cand.strip()
    if _DATE_RE.fullmatch(stripped) or re.fullmatch(r"\d{1,2}[.:]\d{2}", stripped):
        return False
    if re.fullmatch(r"(?:19|20)\d{2}\s*[-/–]\s*(?:19|20)\d{2}", stripped):
        return False  # a range of years
    cued = bool(_PHONE_CUE.search(text[max(0, start - 40):start]))
    if _UNIT_AFTER.match(text, start + len(cand)) and not cued:
        return False
    if stripped.startswith(("+", "00")):
        return digits >= 8
    if stripped.lstrip("(").startswith("0"):
        return digits >= 9 or (cued and digits >= 7)
    if digits >= 10:
        return True
    return cued and digits >= 7


# Where one run of digits may hold two numbers: "+44 7700 900095 (84446617)", "0161 496 0000 / 0161 496 0001".
_RUN_SPLIT = re.compile(r"\s+[(/]\s*|\s*[)/]\s+|\s{2,}")


def _phone_spans(text: str, start: int, cand: str) -> list[tuple[int, int]]:
    """The phone numbers in one candidate run, as (start, end) offsets in ``text``."""
    # trailing separators belong to the sentence, not the number
    core = cand.rstrip(" .-/()")
    if core.count("(") < core.count(")"):
        core = core.rstrip(")")
    if _phone_like(text, start, core):
        return [(start, start + len(core))]
    if _digits(core) <= 15:
        return []
    # too many digits for one number: classify each part between brackets / slashes / wide gaps on its own
    spans: list[tuple[int, int]] = []
    pos = 0
    for cut in [*_RUN_SPLIT.finditer(core), None]:
        end = cut.start() if cut is not None else len(core)
        part = core[pos:end].strip(" ()")
        if part:
            offset = start + pos + core[pos:end].index(part)
            spans += _phone_spans(text, offset, part) if _digits(part) <= 15 else []
        if cut is not None:
            pos = cut.end()
    return spans


def _sub_phones(text: str) -> str:
    out: list[str] = []
    pos = 0
    for m in _PHONE_CANDIDATE.finditer(text):
        for start, end in _phone_spans(text, m.start(), m.group(0)):
            out.append(text[pos:start])
            out.append(PHONE)
            pos = end
    out.append(text[pos:])
    return "".join(out)


def _sub_dob(text: str) -> str:
    text = _AGE_DOB.sub(lambda m: m.group(0)[:m.start(1) - m.start(0)] + DOB, text)
    text = _BORN_YEAR.sub(lambda m: m.group(0)[:m.start(1) - m.start(0)] + DOB, text)
    spans: list[tuple[int, int]] = []
    for m in _DATE_RE.finditer(text):
        before = text[max(0, m.start() - 40):m.start()]
        after = text[m.end():m.end() + 25]
        if _BIRTH_CUE.search(before) or re.match(r"\W{0,3}\(?\s*(?:DOB|D\.O\.B|date of birth|birth)", after,
                                                 re.IGNORECASE):
            spans.append((m.start(), m.end()))
    for start, end in reversed(spans):
        text = text[:start] + DOB + text[end:]
    return text


def _name_words(phrase: str, *, strong: bool) -> int:
    """How many leading words of ``phrase`` are (part of) a person's name."""
    words = phrase.split()
    n = 0
    for i, word in enumerate(words):
        bare = word.rstrip(".,;:!?")
        if not bare or _is_protected(bare) or bare.startswith("["):
            break
        if not _is_capitalised(bare) and not (strong and i == 0) and _plain(bare) not in _SURNAMES \
                and _plain(bare) not in _FIRST_NAMES:
            break
        if bare.isdigit():
            break
        n += 1
        if bare != word:  # punctuation ends the name
            break
    return n


def _sub_names(text: str) -> str:
    def title(m: re.Match[str]) -> str:
        phrase = m.group(3)
        spans = [w.span() for w in re.finditer(r"\S+", phrase)]
        words = [phrase[x:y] for x, y in spans]
        first = 0
        while first < len(words) and _plain(words[first].rstrip(".")) in _TITLE_WORDS:
            first += 1  # further titles and degrees stay: "Prof Dr …", "Dr med. …"
        n = 0
        for word in words[first:]:
            bare = word.rstrip(".,;:!?")
            if not bare or _is_protected(bare) or bare.startswith("["):
                break
            if n > 0 and not (_is_capitalised(bare) or _plain(bare) in _SURNAMES):
                break
            n += 1
            if bare != word.rstrip("."):  # a comma or colon ends the name
                break
        if n == 0:  # "Mr and Mrs Patel": look for the next title inside
            return m.group(1) + m.group(2) + _TITLE_NAME.sub(title, phrase)
        start, end = spans[first][0], spans[first + n - 1][1]
        while end > start and phrase[end - 1] in ".,;:!?":
            end -= 1
        if end - start <= 2 and phrase[end:end + 1] == ".":  # an initial: "Dr J." masks "J."
            end += 1
        return f"{m.group(1)}{m.group(2)}{phrase[:start]}{NAME}{_TITLE_NAME.sub(title, phrase[end:])}"

    text = _TITLE_NAME.sub(title, text)

    def intro(m: re.Match[str]) -> str:
        cue = " ".join(m.group(1).lower().split())
        strong = cue in _STRONG_INTRO
        phrase = m.group(3)
        words = phrase.split()
        if cue == "from" or cue in {"i am", "i'm", "im", "this is", "it's", "it is", "speak to", "speak with",
                                    "talk to", "talk with", "ich bin", "je suis"}:
            # weak cues: only a capitalised word that is a known name, or two capitalised words
            first = words[0].rstrip(".,;:!?")
            known = _plain(first) in _FIRST_NAMES or _plain(first) in _SURNAMES
            two_caps = len(words) > 1 and _is_capitalised(first) and _is_capitalised(words[1].rstrip(".,;:!?")) \
                and not _is_protected(words[1].rstrip(".,;:!?"))
            if cue == "from" and not known:
                return m.group(0)
            if not _is_capitalised(first) or _is_protected(first) or not (known or two_caps):
                return m.group(0)
        elif cue in _SIGN_OFF:
            first = words[0].rstrip(".,;:!?")
            # a sign-off name ends the message (or its line)
            tail = text[m.end(3):m.end(3) + 3].lstrip(" \t")
            if not _is_capitalised(first) or _is_protected(first) or (tail and tail[0] not in ".!\n\r"):
                return m.group(0)
        n = _name_words(phrase, strong=strong)
        if n == 0:
            return m.group(0)
        spans = [w.span() for w in re.finditer(r"\S+", phrase)]
        start, end = spans[0][0], spans[n - 1][1]
        while end > start and phrase[end - 1] in ".,;:!?":
            end -= 1
        return m.group(1) + m.group(2) + phrase[:start] + NAME + phrase[end:]

    text = _INTRO.sub(intro, text)

    def role(m: re.Match[str]) -> str:
        words = m.group(2).split()
        if not _is_capitalised(words[0]) or _is_protected(words[0]):
            return m.group(0)
        n = 2 if len(words) > 1 and _is_capitalised(words[1]) and not _is_protected(words[1]) else 1
        end = [w.end() for w in re.finditer(r"\S+", m.group(2))][n - 1]
        return m.group(1) + NAME + m.group(2)[end:]

    text = _ROLE_NAME.sub(role, text)

    def listed(m: re.Match[str]) -> str:
        words = m.group(0).split()
        out: list[str] = []
        i = 0
        while i < len(words):
            w = _plain(words[i])
            nxt = words[i + 1] if i + 1 < len(words) else ""
            if _is_protected(words[i]):
                out.append(words[i])
                i += 1
                continue
            surname_next = bool(nxt) and not _is_protected(nxt)
            if (w in _FIRST_NAMES and w not in _AMBIGUOUS_FIRST) or (w in _AMBIGUOUS_FIRST and surname_next) \
                    or (w in _SURNAMES and out and out[-1] == NAME):
                j = i + 1
                while j < len(words) and not _is_protected(words[j]):
                    j += 1
                out.append(NAME)
                i = j
                continue
            if surname_next and _plain(nxt) in _SURNAMES and w not in _SURNAMES:
                out.append(NAME)  # "Xiomara Smith": an unknown first name before a listed surname
                i += 2
                continue
            out.append(words[i])
            i += 1
        return " ".join(out)

    return _CAPITAL_SEQ.sub(listed, text)


def redact(text: str) -> str:
    """``text`` with phone numbers, e-mails, names, licence numbers and dates of birth masked."""
    if not text:
        return text
    text = _EMAIL.sub(EMAIL, text)
    text = _EMAIL_SPELLED.sub(EMAIL, text)
    text = _EMAIL_WORDS.sub(EMAIL, text)
    text = _WHATSAPP.sub(PHONE, text)
    for pattern in _LICENCE_PATTERNS:
        text = pattern.sub(lambda m: _keep_cue(m.group(0)), text)
    text = _sub_dob(text)
    text = _sub_phones(text)
    return _sub_names(text)


def _keep_cue(match: str) -> str:
    """'GMC number 1234567' → 'GMC number [licence]': keep the cue words, mask the code."""
    first_digit = next(i for i, c in enumerate(match) if c.isdigit())
    head = match[:first_digit]
    glued = re.search(r"[A-Za-z]{1,3}-?$", head)  # a code prefix: "AB1234", "AB-1234"
    if glued and (glued.start() == 0 or not head[glued.start() - 1].isalnum()):
        head = head[:glued.start()]
    return head + LICENCE


# ---------------------------------------------------------------- logging

_install_lock = threading.Lock()
_installed: list[Callable[..., logging.LogRecord]] = []


class RedactingFilter(logging.Filter):
    """Rewrite a record's message and traceback through ``redact`` (for handlers set up elsewhere)."""

    def filter(self, record: logging.LogRecord) -> bool:
        _redact_record(record)
        return True


_IP = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?::\d{1,5})?(?![\w.])"
                 # IPv6: with "::" or eight groups (so times like 12:30:45 stay)
                 r"|(?<![\w:])(?=[0-9a-fA-F:]*::|(?:[0-9a-fA-F]{1,4}:){7})[0-9a-fA-F:]{2,39}(?![\w:])")


# Secrets that may sit in a URL: the deprecated web chat paths carry the session secret, and any
# query parameter named like a credential.
_URL_SECRET = re.compile(r"(/api/webchat/sessions/)[^/\s?#\"']+")
_QUERY_SECRET = re.compile(r"([?&](?:token|session|session_id|secret|ticket|key)=)[^&\s#\"']+", re.IGNORECASE)


def redact_log_text(text: str) -> str:
    """``redact`` plus IP addresses (uvicorn's access log names the client): ``[ip]``, and secrets
    in URLs: ``[secret]``."""
    text = _URL_SECRET.sub(r"\1[secret]", text)
    text = _QUERY_SECRET.sub(r"\1[secret]", text)
    return redact(_IP.sub("[ip]", text))


def _redact_record(record: logging.LogRecord) -> None:
    if getattr(record, "_redacted", False):
        return
    if record.name == "uvicorn.access" and isinstance(record.args, tuple):
        # uvicorn's AccessFormatter unpacks the five args (client, method, path, version, status):
        # keep the tuple, redact each text in it.
        record.args = tuple(redact_log_text(a) if isinstance(a, str) else a for a in record.args)
        record._redacted = True
        return
    try:
        message = record.getMessage()
    except (TypeError, ValueError):  # a bad format string: keep the template only
        message = str(record.msg)
    record.msg = redact_log_text(message)
    record.args = None
    if record.exc_info and not record.exc_text:
        record.exc_text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
    if record.exc_text:
        record.exc_text = redact_log_text(record.exc_text)
    if record.stack_info:
        record.stack_info = redact_log_text(record.stack_info)
    record._redacted = True


def install_log_redaction() -> None:
    """Every log record created from now on, by any logger, carries a redacted message.

    Done in the record factory, so handlers configured later (uvicorn's dictConfig) are
    covered too. Idempotent.
    """
    with _install_lock:
        if _installed:
            return
        previous = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            _redact_record(record)
            return record

        _installed.append(previous)
        logging.setLogRecordFactory(factory)


def uninstall_log_redaction() -> None:
    """Restore the record factory ``install_log_redaction`` replaced (tests)."""
    with _install_lock:
        if _installed:
            logging.setLogRecordFactory(_installed.pop())
