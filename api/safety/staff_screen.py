"""The screen on staff free text: what a rep, MSL or medical reviewer typed, before it goes to the HCP.

``screen_staff_reply`` is pure: text in, findings out. It reuses the HCP-side parts rather than
repeating them: the off-label parser (``api.safety.products``: products, populations, indications,
doses from ``products.yaml``), the AE screen (any ``SafetyScreen``, the same classifier and rules
every inbound message passes) and the personal-data masker (``feedback.redact``).

Findings and what they do (COMPLIANCE.md: firewall, approved content only, pharmacovigilance):

- ``off_label`` (reps only; MSLs and medical reviewers may answer medical questions): a use,
  population or dose outside the label, or a "yes" to an off-label use the HCP asked about.
  Blocks, and a rep cannot override it.
- ``promotional`` (reps only): a superlative or absolute ("safest", "no side effects"), or a claim
  about a product that no approved content item makes. Blocks; overridable with a reason.
- ``personal_data``: a phone number, e-mail, name, licence number or date of birth the HCP did not
  give in the conversation (and that is not the HCP's or the writer's own name). Blocks;
  overridable with a reason.
- ``adverse_event``: staff mention an adverse event or a special situation. It does not block: the
  caller opens a case as if it had been reported (day 0 = now), whatever happens to the reply.

A sentence that refuses or redirects ("it is not approved for children; I will ask Medical
Information") is not a claim.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from api.safety import rules
from api.safety.products import Catalogue, Product, off_label_reasons
from api.safety.screen import SafetyScreen, ScreenResult, category_label

OFF_LABEL = "off_label"
PROMOTIONAL = "promotional"
ADVERSE_EVENT = "adverse_event"
PERSONAL_DATA = "personal_data"
KINDS = (OFF_LABEL, PROMOTIONAL, ADVERSE_EVENT, PERSONAL_DATA)
# Findings that stop a reply; an adverse event is captured instead.
BLOCKING = frozenset({OFF_LABEL, PROMOTIONAL, PERSONAL_DATA})
# Findings nobody with this role may send past, even with a reason.
NOT_OVERRIDABLE_FOR_REPS = frozenset({OFF_LABEL})

COMMERCIAL_ROLE = "rep"
MEDICAL_ROLES = frozenset({"msl", "medical_reviewer"})

KIND_LABELS = {
    OFF_LABEL: "Off-label claim",
    PROMOTIONAL: "Promotional claim",
    ADVERSE_EVENT: "Adverse event mentioned",
    PERSONAL_DATA: "Personal data the HCP did not give",
}


@dataclass(frozen=True)
class Finding:
    kind: str
    detail: str
    # (start, end) in the reply's text; None when the finding is about the reply as a whole
    span: tuple[int, int] | None = None

    @property
    def label(self) -> str:
        return KIND_LABELS[self.kind]

    def as_dict(self, text: str | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "label": self.label, "detail": self.detail,
                               "span": list(self.span) if self.span else None}
        if text is not None and self.span:
            out["excerpt"] = text[self.span[0]:self.span[1]]
        return out


@dataclass(frozen=True)
class StaffScreen:
    findings: tuple[Finding, ...] = ()
    # the reply may not go as it is
    blocked: bool = False
    # every blocking finding may be overridden (with a reason) by this writer
    overridable: bool = True
    # products the reply is about (named in it, or in what the HCP said)
    products: tuple[str, ...] = ()
    # the AE screen's result on the reply, when it found an adverse event
    adverse_event: ScreenResult | None = field(default=None, compare=False)

    @property
    def kinds(self) -> tuple[str, ...]:
        seen: list[str] = []
        for f in self.findings:
            if f.kind not in seen:
                seen.append(f.kind)
        return tuple(seen)

    @property
    def blocking(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.kind in BLOCKING)


def is_commercial(roles: str | Iterable[str]) -> bool:
    """Screened as a rep: anyone who is a rep, or who holds no medical role (the firewall's rule,
    ``api.safety.firewall.sees_medical_content``, read from the writer's side)."""
    held = {roles} if isinstance(roles, str) else set(roles)
    return COMMERCIAL_ROLE in held or not (held & MEDICAL_ROLES)


# ---------------------------------------------------------------- sentences

_SENTENCE = re.compile(r"[^.!?\n]+(?:[.!?]+|\n|$)")


def _sentences(text: str) -> list[tuple[int, int]]:
    """Spans of the sentences of ``text`` (punctuation or a line break ends one)."""
    out: list[tuple[int, int]] = []
    for m in _SENTENCE.finditer(text):
        start, end = m.start(), m.end()
        while start < end and text[start].isspace():
            start += 1
        while end > start and text[end - 1].isspace():
            end -= 1
        if end > start:
            out.append((start, end))
    return out


def _rx(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.IGNORECASE)


# "It is not in the label yet, but it works brilliantly": a disclaimer covers its own clause only.
_CLAUSE_BREAK = _rx(r";|,?\s+(?=\b(but|however|although|though|yet|whereas)\b)")


def _clauses(text: str, sentences: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for start, end in sentences:
        cut = start
        for m in _CLAUSE_BREAK.finditer(text, start, end):
            if m.start() > cut:
                out.append((cut, m.start()))
            cut = m.end()
        if end > cut:
            out.append((cut, end))
    return [(a, b) for a, b in out if text[a:b].strip()]


# A sentence that declines, warns or redirects rather than claims.
_DISCLAIMER = _rx(
    r"\b(not|isn'?t|aren'?t|wasn'?t) (approved|licen[sc]ed|indicated|recommended|studied|established|authori[sz]ed"
    r"|for|in|suitable|meant|intended)\b|\bno (data|evidence|studies)\b"
    r"|\b(can ?not|can'?t|couldn'?t|won'?t|unable to|not able to|not allowed to|not permitted to) (advise|comment"
    r"|discuss|recommend|answer|talk|speak|go into|give|provide|share|say|help with that)"
    r"|\boutside (the|its|our) (label|licen[sc]e|indication|smpc|pi|marketing authori[sz]ation)\b"
    r"|\bmedical information\b|\bmedical (team|colleagues?|affairs|department)\b|\bmsl\b|\bmedical science liaison\b"
    r"|\b(refer|forward|pass|passed|hand|handed|route|routed|send|sent|report|reported|raise|flag|let)\b[^.]{0,40}"
    r"\b(medical|msl|safety|colleague|pharmacovigilance|pv)\b"
    r"|\bcontraindicated\b|\b(do not|don'?t|never|should not|shouldn'?t|must not|mustn'?t) (use|exceed|give|start"
    r"|prescribe|take)\b|\bavoid\b|\bplease (see|refer to|check) the (smpc|pi|label|prescribing information)\b"
)
_QUESTION = re.compile(r"\?\s*$")

# ---------------------------------------------------------------- off-label

# A yes to what the HCP asked.
_AFFIRM = _rx(
    r"^\W*(yes|yeah|yep|sure|absolutely|definitely|of course|certainly|correct|that'?s (fine|ok|okay|right|correct)"
    r"|no problem)\b"
    r"|\b(you can|you could|you may|feel free to|go ahead( and)?|it'?s (fine|ok|okay|safe) to|it is (fine|ok|okay|safe)"
    r" to|works (well|fine|great|brilliantly|nicely)|lots of (doctors|physicians|colleagues|gps|clinicians|centres"
    r"|centers|clinics) (use|prescribe|do)|many (doctors|physicians|colleagues|gps|clinicians|centres|centers|clinics)"
    r" (use|prescribe|do))\b|" + r"\b(should|would|will) be (fine|ok|okay|safe)\b|\b(is|are|it'?s) (fine|ok|okay)\b"
    r"|\bno need to (adjust|reduce|change|worry)\b|\b(go|went) for it\b|\b(give|gave) it a (try|go)\b"
    r"|\bworth (a try|trying|a go)\b|\b(might|may|could) (find it |well )?helps?\b|\bgood results\b"
)
# A medical writer may give data on an off-label use when asked; recommending it is another matter.
_ENDORSE = _rx(
    r"\bprobably (ok|okay|fine|safe|reasonable)\b|\b(may|might|could) be (a )?(reasonable|good|sensible|useful)"
    r"( option| choice)?\b|\breasonable (option|choice)\b|\b(may|might|could|can) be considered\b"
    r"|\bwould support (using|use|it)\b|\bi'?d (say |suggest )?(go for it|give it a try|try it|use it)\b"
    r"|\bworth (a try|trying)\b|\b(go|went) for it\b|\b(should|would) be (fine|ok|okay|safe)\b"
    r"|\b(is|are|it'?s) (fine|ok|okay|safe)\b|\bno need to (adjust|reduce|change|worry)\b"
    r"|\bi (would|'d) (recommend|suggest|consider)\b|\b(data|evidence|pharmacology|mechanism) (would )?supports? "
    r"(it|using|use|this)\b|\b(some|many|lots of|most|plenty of) (\w+ )?(clinicians|clinics|centres|centers|doctors"
    r"|physicians|specialists|colleagues) (use|prescribe|give|go)\b"
)
# A lab value is not an age ("HbA1c under 7"), whatever the population rule reads into it.
_LAB_VALUE = _rx(r"\b(hba1c|a1c|ldl(-c)?|hdl|cholesterol|eos|eosinophils?|fev1|bp|glucose|egfr|ck|alt)\s+"
                 r"(under|below|over|above|of|<|>)\s*\d+(\.\d+)?")
# An amount someone was given by mistake is a report, not a claim about the dose.
_REPORTED_DOSE = (rules.OVERDOSE, rules.MEDICATION_ERROR, rules.BY_MISTAKE)
# "Off-label" said approvingly ("plenty of people use it off label").
_OFF_LABEL_WORDS = _rx(r"\boff[- ]label\b|\bunlicen[sc]ed (use|indication)\b")


# A market named in the text ("in the UK", "in Germany"): the label that applies there.
_MARKET_NAMES = (
    ("GB", _rx(r"\b(in|for) (the )?(uk|united kingdom|britain|great britain|england|scotland|wales|gb)\b")),
    ("DE", _rx(r"\b(in|for) (germany|deutschland|de)\b")),
    # not "for us" / "in us": the pronoun
    ("US", _rx(r"\b(in|for) the (us|usa|u\.s\.|united states|states)\b|\b(in|for) (america|the usa|usa)\b"
               r"|\bus[- ](label|market|pi|only|indication)\b")),
)


def _market_named(norm: str) -> str | None:
    found = [code for code, rx in _MARKET_NAMES if rx.search(norm)]
    return found[0] if len(found) == 1 else None


def _products_in(norm: str, catalogue: Catalogue) -> tuple[Product, ...]:
    return catalogue.mentioned(norm) if norm else ()


def _off_label(text: str, sentences: list[tuple[int, int]], catalogue: Catalogue,
               context: tuple[Product, ...], hcp_off_label: bool, *, commercial: bool = True,
               market: str | None = None) -> list[Finding]:
    """Clauses claiming a use outside the label. A medical writer's clause counts only when it also
    recommends the use (``_ENDORSE``): giving data on request is their job."""
    found: list[Finding] = []
    for start, end in sentences:
        sentence = text[start:end]
        norm = rules.normalise(sentence)
        if _DISCLAIMER.search(norm) or (not commercial and not _ENDORSE.search(norm)):
            continue
        products = _products_in(norm, catalogue) or context
        if not products or any(rx.search(norm) for rx in _REPORTED_DOSE):
            continue
        reasons = list(off_label_reasons(_LAB_VALUE.sub(" ", norm), products, _market_named(norm) or market))
        if not reasons and _OFF_LABEL_WORDS.search(norm) and not _QUESTION.search(sentence):
            reasons.append("explicit")
        affirms = _AFFIRM.search(norm) if commercial else _ENDORSE.search(norm)
        if not reasons and hcp_off_label and affirms and not _QUESTION.search(sentence):
            reasons.append("affirms the off-label use the HCP asked about")
        if reasons:
            names = ", ".join(p.key.capitalize() for p in products)
            found.append(Finding(OFF_LABEL, f"{names}: outside the label ({', '.join(reasons)})", (start, end)))
    return found


# ---------------------------------------------------------------- promotional

_SUPERLATIVE = _rx(
    r"\b(the )?(best|safest|strongest|fastest|most (effective|powerful|potent|trusted|advanced|prescribed)"
    r"|number one|no\.? ?1|#1|market[- ]leading|unrivall?ed|unmatched|unbeatable|unparall?eled|superior (to|efficacy"
    r"|safety|results?|control)|better than|outperforms?|beats (every|all|the)|miracle|wonder drug|revolutionary"
    r"|breakthrough|game[- ]?changer|cures?|guarantee[sd]?|100 ?%|completely safe|totally safe|perfectly safe"
    r"|absolutely safe|entirely safe|no side[- ]effects|without (any )?side[- ]effects|zero side[- ]effects"
    r"|risk[- ]free"
    r"|no risks?|zero risk|never fails|always works|works for (everyone|everybody|every patient|all patients)"
    r"|works every time|first[- ]choice|gold standard|best[- ]in[- ]class|first[- ]in[- ]class|nothing (else )?"
    r"(comes close|compares|beats it)|hands down|amazing|incredible|fantastic results|dramatic(ally)?"
    r"|far (better|superior|safer)|much (better|safer|stronger)|the superior|clearly superior|super safe"
    r"|works (brilliantly|wonders)|works in (every|all)|no problems ever|never (any|a) problem)\b"
)
# Everyday uses of the same words.
_NOT_PROMOTIONAL = _rx(
    r"\b(best (regards|wishes|time|way|number|day|person|contact|to reach)|all the best|do (my|our) best"
    r"|try (my|our) best|at best|best practice|kind regards)\b"
)
# Words that make a sentence a claim about what a product does.
_CLAIM = _rx(
    r"\b(reduc\w*|lower\w*|improv\w*|increas\w*|prevent\w*|protect\w*|works?|working|effective\w*|efficacy"
    r"|well[- ]tolerated|tolerab\w*|safe|safer|safety profile|fewer|faster|quicker|onset|benefits?|beneficial"
    r"|helps?|control\w*|cuts?|drops?|halves|stops?|clears?|relie\w*|response rates?)\b|\d+(\.\d+)? ?%"
)
_PRONOUN = _rx(r"\b(it|this (drug|medicine|product|treatment|one)|the (drug|medicine|product|treatment))\b")
_TOKEN = re.compile(r"[a-z0-9]+(?:\.[0-9]+)?")
_CLAIM_STOP_WORDS = """
a an the of and or in on at to for with by is are was were be been it its this that these those as from
your you we our i my can may will would should has have had do does very also just so than then there
their they them he she his her patients patient people
"""
_CLAIM_STOP = frozenset(_CLAIM_STOP_WORDS.split())
SUPPORT = 0.75  # share of a claim's words an approved sentence must contain


_NOT_A_CLAIM = _rx(r"\bprotect(ed)? (it |them )?from (light|moisture|heat|freezing)\b|\bkeep\b[^.]{0,30}\b(fridge"
                   r"|refrigerat|carton|room temperature)\b")


def _claim_words(norm: str, product_names: frozenset[str]) -> list[str]:
    return [t for t in _TOKEN.findall(norm) if t not in _CLAIM_STOP and t not in product_names]


def _approved_sentences(approved: Sequence[str]) -> list[tuple[set[str], set[str]]]:
    out: list[tuple[set[str], set[str]]] = []
    for body in approved:
        norm = rules.normalise(body)
        for s, e in _sentences(norm):
            words = set(_TOKEN.findall(norm[s:e]))
            out.append((words, {w for w in words if any(c.isdigit() for c in w)}))
    return out


def _supported(words: list[str], approved: list[tuple[set[str], set[str]]]) -> bool:
    if not words:
        return True
    numbers = {w for w in words if any(c.isdigit() for c in w)}
    for approved_words, approved_numbers in approved:
        if not numbers <= approved_numbers:
            continue
        if sum(w in approved_words for w in words) / len(words) >= SUPPORT:
            return True
    return False


def _promotional(text: str, sentences: list[tuple[int, int]], catalogue: Catalogue, context: tuple[Product, ...],
                 approved: Sequence[str], *, commercial: bool = True,
                 off_label: frozenset[tuple[int, int]] = frozenset()) -> list[Finding]:
    """Superlatives and absolutes (anyone); a product claim no approved item makes (reps only; a
    clause already found off-label is not reported twice)."""
    found: list[Finding] = []
    names = frozenset(n for p in catalogue.products for n in p.names)
    approved_sentences: list[tuple[set[str], set[str]]] | None = None
    for start, end in sentences:
        sentence = text[start:end]
        norm = rules.normalise(sentence)
        cleaned = _NOT_PROMOTIONAL.sub(" ", norm)
        superlative = _SUPERLATIVE.search(cleaned)
        if superlative:
            words = superlative.group(0).strip()
            found.append(Finding(PROMOTIONAL, f"superlative or absolute claim: \u201c{words}\u201d", (start, end)))
            continue
        if not commercial or (start, end) in off_label or _QUESTION.search(sentence) or _DISCLAIMER.search(norm) \
                or not _CLAIM.search(norm) or _NOT_A_CLAIM.search(norm) or rules.LACK_OF_EFFICACY.search(norm):
            continue
        products = _products_in(norm, catalogue) or (context if _PRONOUN.search(norm) else ())
        if not products:
            continue
        if approved_sentences is None:
            approved_sentences = _approved_sentences(approved)
        if not _supported(_claim_words(norm, names), approved_sentences):
            product_names = ", ".join(p.key.capitalize() for p in products)
            found.append(Finding(PROMOTIONAL, f"a claim about {product_names} that no approved content makes",
                                 (start, end)))
    return found


# ---------------------------------------------------------------- personal data

_PLACEHOLDER = re.compile(r"\[(phone|email|name|licence|dob)\]")
_PII_WORDS = {"phone": "phone number", "email": "e-mail address", "name": "name", "licence": "licence number",
              "dob": "date of birth"}
# Function mailboxes are the company's, not a person's.
_FUNCTION_MAILBOX = re.compile(
    r"^(info|medinfo|medical[._-]?information|mi|safety|pharmacovigilance|pv|drugsafety|support|service|help"
    r"|hello|contact|noreply|no-reply|samples|orders|customer[._-]?service|enquiries|inquiries)@", re.IGNORECASE)
_GREETING = _rx(r"^\W*(hi|hello|hey|dear|good (morning|afternoon|evening)|thanks|thank you|many thanks)\b[\s,]*"
                r"((dr|doctor|prof|professor|mr|mrs|ms|miss)\.?\s+)?$")
_SIGN_OFF = _rx(r"(best|regards|kind regards|best wishes|many thanks|thanks|thank you|cheers|sincerely|from)"
                r"\W*$")
MAX_ALIGNED_PLACEHOLDERS = 24


def _masked_spans(text: str) -> list[tuple[str, int, int]]:
    """(kind, start, end) of each piece of personal data ``feedback.redact`` masks in ``text``."""
    from feedback.redact import redact

    masked = redact(text)
    pieces = _PLACEHOLDER.split(masked)
    kinds = pieces[1::2]
    if not kinds:
        return []
    if len(kinds) > MAX_ALIGNED_PLACEHOLDERS:
        return [(k, 0, len(text)) for k in kinds]
    literals = pieces[0::2]
    pattern = "".join(re.escape(lit) + ("(.+?)" if i < len(kinds) else "") for i, lit in enumerate(literals))
    m = re.fullmatch(pattern, text, re.DOTALL)
    if m is None:  # the masker also tidied whitespace: the kinds are known, the places are not
        return [(k, 0, len(text)) for k in kinds]
    return [(kind, m.start(i + 1), m.end(i + 1)) for i, kind in enumerate(kinds)]


def _digits(s: str) -> str:
    return re.sub(r"\D", "", s)


def _words(s: str) -> set[str]:
    return set(re.findall(r"[a-zäöüßà-ÿ']+", s.lower()))


# Capitalised words the masker can take for a name in staff text ("our Patient Safety team").
_NOT_A_PERSON_WORDS = """
patient safety medical information team halcyon concierge support services service programme program
affairs department nurse nurses line desk office customer care pharmacovigilance quality max min
"""
_NOT_A_PERSON = frozenset(_NOT_A_PERSON_WORDS.split())


def _given(kind: str, value: str, given_texts: Sequence[str]) -> bool:
    if kind in ("phone", "licence", "dob"):
        digits = _digits(value)
        return bool(digits) and any(digits in _digits(t) for t in given_texts)
    if kind == "email":
        return any(value.lower().strip() in t.lower() for t in given_texts)
    words = _words(value) - {"dr", "doctor", "prof", "professor", "mr", "mrs", "ms", "miss"}
    return bool(words) and any(words <= _words(t) for t in given_texts)


def _personal_data(text: str, hcp_texts: Sequence[str], known_names: Sequence[str]) -> list[Finding]:
    found: list[Finding] = []
    for kind, start, end in _masked_spans(text):
        value = text[start:end]
        if _given(kind, value, hcp_texts):
            continue
        if kind == "name":
            if _words(value) <= _NOT_A_PERSON or _given(kind, value, known_names):
                continue
            before = text[:start]
            if _GREETING.search(before):
                continue  # addressing the HCP at the start of the reply
            if _SIGN_OFF.search(before) and "\n" not in text[end:].strip() and len(text[end:].strip()) <= 40:
                continue  # the writer's own sign-off
        if kind == "email" and _FUNCTION_MAILBOX.match(value.strip()):
            continue
        found.append(Finding(PERSONAL_DATA, f"a {_PII_WORDS[kind]} the HCP did not give in this conversation",
                             (start, end) if (start, end) != (0, len(text)) else None))
    return found


# ---------------------------------------------------------------- adverse events

# Staff speak of "your patient"; the HCP-side cues are written for "my patient".
_THEIR_PATIENT = _rx(r"\b(your|the|this|that|their) (\w+ )?(patients?|pts?|lady|gentleman|man|woman|boy|girl|child"
                     r"|baby)('s)?\b|\b(patient|case) of (yours|mine|dr)\b")
# General product information: what may happen, not what happened.
_GENERAL_INFO = _rx(
    r"\b(is|are) (very |quite )?(common|uncommon|rare|known|listed|expected|reported with)\b|\bcommonly\b"
    r"|\busually (settle|settles|resolve|resolves|pass|passes|improve|improves)\b|\btend(s)? to\b"
    r"|\b(may|can|could) (cause|occur|happen)\b|\bin (the )?(clinical )?(trials|studies)\b|\bsection 4\.8\b"
    r"|\bknown (warning|risk|side[- ]effect|adverse)\b|\badvise (patients|them)\b|\bpatient guide\b"
)
# The writer says they are passing something on to Patient Safety: they know of an event.
_TO_SAFETY = _rx(
    r"\b(report|reporting|let|tell|inform|pass|passing|flag|raise|forward|notify|log)\b[^.]{0,50}"
    r"\b(patient safety|safety team|drug safety|pharmacovigilance|pv( team)?)\b"
)


_PATIENT_MATERIAL = _rx(r"\bpatient (guide|leaflet|diary|diaries|information|card|support|materials?|booklet"
                       r"|alert card|programme|program|pack)s?\b")


def _adverse_event(text: str, safety: SafetyScreen, context: tuple[Product, ...]) -> ScreenResult | None:
    """The AE screen's verdict on staff text, read for staff: the classifier's hit needs evidence
    that something happened to someone (staff talk about products and side effects all day)."""
    norm = _PATIENT_MATERIAL.sub(" material ", rules.normalise(text))
    result = safety.screen(text)
    someone = bool(_THEIR_PATIENT.search(norm) or rules.PERSONAL_CONTEXT.search(norm))
    if result.adverse_event:
        # A patient named in passing ("a patient diary") is not that evidence on its own.
        evidence = rules.has_event_evidence(rules.PATIENT_CONTEXT.sub(" ", norm))
        general = bool(_GENERAL_INFO.search(norm)) and not someone
        quality_only = set(result.ae_categories) == {"quality_complaint"} and not rules.SPECIFIC_EVENT.search(norm)
        if evidence and not general and not quality_only:
            return result
    if _TO_SAFETY.search(norm) and someone:
        serious = rules.serious_terms(norm)
        return ScreenResult(adverse_event=True, ae_categories=result.ae_categories or ("side_effect",),
                            ae_score=result.ae_score, products=result.products or tuple(p.key for p in context),
                            serious=bool(serious), serious_terms=serious)
    return None


# ---------------------------------------------------------------- the screen


def screen_staff_reply(
    text: str,
    *,
    role: str | Iterable[str],
    hcp_texts: Sequence[str] = (),
    products: Catalogue,
    market: str | None = None,
    approved: Sequence[str] = (),
    safety: SafetyScreen | None = None,
    known_names: Sequence[str] = (),
) -> StaffScreen:
    """Screen one staff reply.

    ``role``: the writer's role(s); ``hcp_texts``: what the HCP said in the conversation (oldest
    first; personal data in it counts as given, and the products it names give "it" a meaning);
    ``products``: the catalogue from ``products.yaml``; ``market``: the HCP's market, whose label
    applies unless the text names another (None: a use is on-label when any market approves it, as
    on the HCP side); ``approved``:
    bodies of approved content a rep's claims must come from; ``safety``: the AE screen (None: no
    AE check); ``known_names``: names that are not a leak (the HCP's own, the writer's own).
    """
    sentences = _sentences(text)
    commercial = is_commercial(role)
    hcp_norms = [rules.normalise(t) for t in hcp_texts if t]
    reply_products = _products_in(rules.normalise(text), products)
    hcp_products: tuple[Product, ...] = ()
    for norm in reversed(hcp_norms):
        hcp_products = _products_in(norm, products)
        if hcp_products:
            break
    context = reply_products or hcp_products
    units = _clauses(text, sentences)
    last = hcp_norms[-1] if hcp_norms else ""
    last_products = _products_in(last, products) or hcp_products
    # The label that applies: a market the reply or the HCP's last message names, else the HCP's.
    label_market = _market_named(rules.normalise(text)) or _market_named(last) or market
    hcp_off_label = bool(last) and ((bool(last_products) and bool(off_label_reasons(last, last_products,
                                                                                   label_market)))
                                    or rules.is_explicit_off_label(last))
    findings: list[Finding] = []
    findings += _off_label(text, units, products, context, hcp_off_label, commercial=commercial,
                           market=label_market)
    off_label_units = frozenset(f.span for f in findings if f.span)
    findings += _promotional(text, units, products, context, approved, commercial=commercial,
                             off_label=off_label_units)
    ae = _adverse_event(text, safety, context) if safety is not None else None
    if ae is not None:
        what = ", ".join(category_label(c) for c in ae.ae_categories) or "adverse event"
        findings.append(Finding(ADVERSE_EVENT, f"{what}: a safety case is opened as if reported"))
    findings += _personal_data(text, hcp_texts, known_names)
    blocking = [f for f in findings if f.kind in BLOCKING]
    overridable = not (commercial and any(f.kind in NOT_OVERRIDABLE_FOR_REPS for f in blocking))
    return StaffScreen(findings=tuple(findings), blocked=bool(blocking), overridable=overridable,
                       products=tuple(p.key for p in context), adverse_event=ae)
