"""One safety case as an ICH E2B(R3) ICSR message (HL7 v3 ``MCCI_IN200100UV01`` batch, one
``PORR_IN049016UV`` message), next to the JSON export of ``api.safety.review``.

No E2B(R3) schema can be fetched here, so the element rules this export relies on are written
down in ``ELEMENT_RULES`` (ICH element id, where it sits, whether it is mandatory, its format and
maximum length) and every document is checked against them before it leaves (``check``). The
tests parse the output and check the same rules plus the values.

What the case can and cannot fill:
- N.1 batch / N.2.r message headers: identifiers built from the case reference and export time.
- C.1 case identification: C.1.1 and C.1.8.1 ``<country>-<sender>-<reference>``, C.1.2 export
  time, C.1.3 spontaneous report, C.1.4 day 0 (first receipt by any company channel), C.1.5 the
  case's last update, C.1.7 from the seriousness (serious or not yet assessed: expedited).
- C.2.r primary source: the HCP (name, country, C.2.r.4 qualification from the specialty;
  ``nullFlavor="UNK"`` for an unidentified reporter). C.3 sender: the company.
- D patient: D.1 as ``nullFlavor="UNK"`` (we hold no initials as a field), D.2.2 age and D.5 sex
  when the report states them plainly.
- E.i reaction: E.i.1.1a the reaction as reported (the first source message, verbatim up to 250
  characters), E.i.3.2 seriousness criteria (true, or ``nullFlavor="NI"``). **Not** E.i.2.1: MedDRA
  coding is done by Patient Safety in the safety database after intake.
- G.k drug: one suspect drug (G.k.1 = 1) per product of the case, G.k.2.2 its name as reported.
- H.1 narrative: how and when it was received, then the source text verbatim. Text is XML-escaped
  by the serializer (HTML in a message is text, never markup).

A case that cannot make a valid ICSR (a quality complaint, a missing minimum criterion, no
source text) is refused with a message that names what is missing; the case is not changed.
"""

from __future__ import annotations

import re
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.orm import Session

from api.audit import service as audit
from api.conversations.models import Conversation
from api.errors import Conflict
from api.hcps.models import Hcp
from api.safety import rules
from api.safety.models import AdverseEvent, AeKind, Seriousness

HL7 = "urn:hl7-org:v3"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
NS = {"hl7": HL7}
ET.register_namespace("", HL7)
ET.register_namespace("xsi", XSI)

# ICH E2B(R3) OIDs (identifier roots and code systems).
OID_BATCH_NUMBER = "2.16.840.1.113883.3.989.2.1.3.22"  # N.1.2
OID_BATCH_SENDER = "2.16.840.1.113883.3.989.2.1.3.13"  # N.1.3
OID_BATCH_RECEIVER = "2.16.840.1.113883.3.989.2.1.3.14"  # N.1.4
OID_MESSAGE_ID = "2.16.840.1.113883.3.989.2.1.3.1"  # N.2.r.1 and C.1.1
OID_MESSAGE_SENDER = "2.16.840.1.113883.3.989.2.1.3.11"  # N.2.r.2
OID_MESSAGE_RECEIVER = "2.16.840.1.113883.3.989.2.1.3.12"  # N.2.r.3
OID_WORLDWIDE_ID = "2.16.840.1.113883.3.989.2.1.3.2"  # C.1.8.1
CS_MESSAGE_TYPE = "2.16.840.1.113883.3.989.2.1.1.1"  # N.1.1
CS_REPORT_TYPE = "2.16.840.1.113883.3.989.2.1.1.2"  # C.1.3 values
CS_QUALIFICATION = "2.16.840.1.113883.3.989.2.1.1.6"  # C.2.r.4
CS_SENDER_TYPE = "2.16.840.1.113883.3.989.2.1.1.7"  # C.3.1
CS_DRUG_ROLE = "2.16.840.1.113883.3.989.2.1.1.13"  # G.k.1 values
CS_OBSERVATION = "2.16.840.1.113883.3.989.2.1.1.19"  # observation codes (reaction, age, seriousness …)
CS_ORGANIZER = "2.16.840.1.113883.3.989.2.1.1.20"  # organizer codes (drug information)
CS_REPORT_RELATION = "2.16.840.1.113883.3.989.2.1.1.22"  # source report
CS_CHARACTERISTIC = "2.16.840.1.113883.3.989.2.1.1.23"  # investigation characteristics (report type)
CS_COUNTRY = "1.0.3166.1.2.2"  # ISO 3166-1 alpha-2
CS_SEX = "1.0.5218"  # ISO 5218
HL7_INTERACTION = "2.16.840.1.113883.1.6"

SENDER_ORGANISATION = "HCP Concierge Patient Safety"
SENDER_ID = "HCPCONCIERGE"
# The authority an ICSR goes to, by the reporter's market (EudraVigilance for the rest).
RECEIVERS = {"US": "CDER", "GB": "MHRA"}
DEFAULT_RECEIVER = "EVHUMAN"

# C.2.r.4 qualification: 1 physician, 2 pharmacist, 3 other health professional, 4 lawyer, 5 consumer.
QUALIFICATION_WORDS = (
    (re.compile(r"pharmac", re.I), "2"),
    (re.compile(r"nurs|midwi|physio|therap|dietit|paramedic|technician|optometr|dent", re.I), "3"),
)
# E.i.3.2 seriousness criteria: observation code → words in the case's seriousness terms.
SERIOUSNESS_CRITERIA = (
    ("34", "resultsInDeath", re.compile(r"died|death|dead|deceased|fatal|passed away|stillb")),
    ("21", "isLifeThreatening", re.compile(r"life[- ]threatening|anaphyla|resuscitat|intubat|cardiac arrest|coma")),
    ("33", "requiresInpatientHospitalization",
     re.compile(r"hospitali|admitted|icu|intensive care|emergency|a&e")),
    ("35", "resultsInPersistentOrSignificantDisability", re.compile(r"disab|incapacitat|permanent")),
    ("12", "congenitalAnomalyBirthDefect", re.compile(r"congenital|birth defect|anomal|malformation")),
    ("26", "otherMedicallyImportantCondition", re.compile(r".")),  # any other serious term
)
AGE = re.compile(r"\b(\d{1,3})\s*(?:-| )?(?:years?|yrs?)(?:-| )old\b|\b(\d{1,3})\s*(?:yo|y/o|y\.o\.)(?!\w)")
FEMALE = re.compile(r"\b(woman|women|female|lady|girl|mother)\b")
MALE = re.compile(r"\b(man|men|male|gentleman|boy|father)\b")

REACTION_MAX = 250
# Characters XML 1.0 cannot carry at all (a control character pasted into a message).
XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


# ---------------------------------------------------------------- the element rules


@dataclass(frozen=True)
class ElementRule:
    """Where an E2B(R3) element sits in the message and what its value must look like."""

    element: str  # ICH id, e.g. "C.1.1"
    name: str
    path: str  # ElementTree path from the batch root (prefix hl7:)
    attribute: str | None  # the value is this attribute; None: the element's text
    pattern: str | None = None  # the whole value must match
    max_length: int | None = None
    null_flavors: tuple[str, ...] = ()  # allowed instead of a value
    repeats: bool = False  # one per reaction / drug / message: every occurrence is checked


TS_SECONDS = r"\d{14}[+-]\d{4}"  # CCYYMMDDhhmmss+ZZZZ
TS_DAY_OR_FINER = r"\d{8}(\d{6}([+-]\d{4})?)?"
_MSG = "hl7:PORR_IN049016UV"
_CAP = f"{_MSG}/hl7:controlActProcess"
_INV = f"{_CAP}/hl7:subject/hl7:investigationEvent"
_ASSESS = f"{_INV}/hl7:component/hl7:adverseEventAssessment"
_ROLE = f"{_ASSESS}/hl7:subject1/hl7:primaryRole"
_SOURCE = (f"{_INV}/hl7:outboundRelationship/hl7:relatedInvestigation/hl7:subjectOf2/hl7:controlActEvent"
           "/hl7:author/hl7:assignedEntity")
_DRUG = (f"{_ROLE}/hl7:subjectOf2/hl7:organizer[hl7:code/@code='4']/hl7:component/hl7:substanceAdministration")

ELEMENT_RULES: tuple[ElementRule, ...] = (
    ElementRule("N.1.1", "Type of messages in batch", f"hl7:name[@codeSystem='{CS_MESSAGE_TYPE}']", "code", "1"),
    ElementRule("N.1.2", "Batch number", f"hl7:id[@root='{OID_BATCH_NUMBER}']", "extension",
                r"[A-Za-z0-9._-]+", 100),
    ElementRule("N.1.3", "Batch sender identifier", f"hl7:sender/hl7:device/hl7:id[@root='{OID_BATCH_SENDER}']",
                "extension", r"\S+", 60),
    ElementRule("N.1.4", "Batch receiver identifier",
                f"hl7:receiver/hl7:device/hl7:id[@root='{OID_BATCH_RECEIVER}']", "extension", r"\S+", 60),
    ElementRule("N.1.5", "Date of batch transmission", "hl7:creationTime", "value", TS_SECONDS),
    ElementRule("N.2.r.1", "Message identifier", f"{_MSG}/hl7:id[@root='{OID_MESSAGE_ID}']", "extension",
                r"[A-Za-z0-9._-]+", 100, repeats=True),
    ElementRule("N.2.r.2", "Message sender identifier",
                f"{_MSG}/hl7:sender/hl7:device/hl7:id[@root='{OID_MESSAGE_SENDER}']", "extension", r"\S+", 60,
                repeats=True),
    ElementRule("N.2.r.3", "Message receiver identifier",
                f"{_MSG}/hl7:receiver/hl7:device/hl7:id[@root='{OID_MESSAGE_RECEIVER}']", "extension", r"\S+", 60,
                repeats=True),
    ElementRule("N.2.r.4", "Date of message creation", f"{_MSG}/hl7:creationTime", "value", TS_SECONDS,
                repeats=True),
    ElementRule("C.1.1", "Sender's (case) safety report unique identifier",
                f"{_INV}/hl7:id[@root='{OID_MESSAGE_ID}']", "extension", r"[A-Z]{2}-[A-Za-z0-9]+-[A-Za-z0-9-]+", 100),
    ElementRule("C.1.2", "Date of creation", f"{_CAP}/hl7:effectiveTime", "value", TS_SECONDS),
    ElementRule("C.1.3", "Type of report",
                f"{_INV}/hl7:subjectOf2/hl7:investigationCharacteristic[hl7:code/@code='1']/hl7:value", "code",
                "[1-4]"),
    ElementRule("C.1.4", "Date report was first received from source (day 0)", f"{_INV}/hl7:effectiveTime/hl7:low",
                "value", TS_DAY_OR_FINER),
    ElementRule("C.1.5", "Date of most recent information for this report", f"{_INV}/hl7:availabilityTime",
                "value", TS_DAY_OR_FINER),
    ElementRule("C.1.7", "Does this case fulfil the local criteria for an expedited report?",
                f"{_INV}/hl7:component/hl7:observationEvent[hl7:code/@code='23']/hl7:value", "value",
                "true|false"),
    ElementRule("C.1.8.1", "Worldwide unique case identification number",
                f"{_INV}/hl7:id[@root='{OID_WORLDWIDE_ID}']", "extension", r"[A-Z]{2}-[A-Za-z0-9]+-[A-Za-z0-9-]+",
                100),
    ElementRule("C.2.r.3", "Reporter's country code",
                f"{_SOURCE}/hl7:assignedPerson/hl7:asLocatedEntity/hl7:location/hl7:code", "code", "[A-Z]{2}",
                null_flavors=("UNK",)),
    ElementRule("C.2.r.4", "Qualification",
                f"{_SOURCE}/hl7:assignedPerson/hl7:asQualifiedEntity/hl7:code", "code", "[1-5]",
                null_flavors=("UNK",)),
    ElementRule("C.2.r.5", "Primary source for regulatory purposes",
                f"{_INV}/hl7:outboundRelationship/hl7:priorityNumber", "value", "1"),
    ElementRule("C.3.1", "Sender type", f"{_INV}/hl7:subjectOf1/hl7:controlActEvent/hl7:author/hl7:assignedEntity"
                "/hl7:code", "code", "[1-7]"),
    ElementRule("C.3.2", "Sender's organisation", f"{_INV}/hl7:subjectOf1/hl7:controlActEvent/hl7:author"
                "/hl7:assignedEntity/hl7:representedOrganization/hl7:name", None, r".+", 100),
    ElementRule("D.1", "Patient (name or initials)", f"{_ROLE}/hl7:player1/hl7:name", None, r".+", 60,
                null_flavors=("MSK", "ASKU", "NASK", "UNK")),
    ElementRule("E.i.1.1a", "Reaction / event as reported by the primary source",
                f"{_ROLE}/hl7:subjectOf2/hl7:observation[hl7:code/@code='29']/hl7:value/hl7:originalText", None,
                r"(?s).*\S.*", REACTION_MAX, repeats=True),
    ElementRule("G.k.1", "Characterisation of drug role",
                f"{_ASSESS}/hl7:component/hl7:causalityAssessment[hl7:code/@code='20']/hl7:value", "code", "[1-4]",
                repeats=True),
    ElementRule("G.k.2.2", "Medicinal product name as reported by the primary source",
                f"{_DRUG}/hl7:consumable/hl7:instanceOfKind/hl7:kindOfProduct/hl7:name", None, r".*\S.*", 250,
                repeats=True),
    ElementRule("H.1", "Case narrative", f"{_INV}/hl7:text", None, r"(?s).*\S.*", 100000),
)


_STEP = re.compile(r"[^/\[\]]+(?:\[[^\]]*\])?")
_STEP_PARTS = re.compile(r"hl7:(\w+)(?:\[(?:@(\w+)='([^']*)'|hl7:(\w+)/@(\w+)='([^']*)')\])?")


def select_all(root: ET.Element, path: str) -> list[ET.Element]:
    """The elements at ``path`` below ``root``: steps ``hl7:tag``, each with at most one predicate,
    ``[@attr='v']`` or ``[hl7:child/@attr='v']`` (ElementTree's own paths lack the second kind)."""
    nodes = [root]
    for step in _STEP.findall(path):
        parts = _STEP_PARTS.fullmatch(step)
        if parts is None:
            raise ValueError(f"unsupported path step {step!r}")
        tag, attr, value, child, child_attr, child_value = parts.groups()
        nodes = [c for n in nodes for c in n if c.tag == f"{{{HL7}}}{tag}"]
        if attr:
            nodes = [n for n in nodes if n.get(attr) == value]
        elif child:
            nodes = [n for n in nodes
                     if any(c.tag == f"{{{HL7}}}{child}" and c.get(child_attr) == child_value for c in n)]
    return nodes


def check(root: ET.Element) -> list[str]:
    """Every broken element rule of a parsed message, as ``"C.1.1 …: why"``; ``[]`` when it is valid."""
    problems: list[str] = []
    if root.tag != f"{{{HL7}}}MCCI_IN200100UV01":
        return [f"the root is {root.tag}, not an E2B(R3) batch (MCCI_IN200100UV01)"]
    for rule in ELEMENT_RULES:
        found = select_all(root, rule.path)
        label = f"{rule.element} {rule.name}"
        if not found:
            problems.append(f"{label}: missing")
            continue
        for node in found if rule.repeats else found[:1]:
            null = node.get("nullFlavor")
            if null is not None:
                if null not in rule.null_flavors:
                    problems.append(f"{label}: nullFlavor {null!r} is not allowed here")
                continue
            value = node.get(rule.attribute) if rule.attribute else (node.text or "")
            if value is None or value == "":
                problems.append(f"{label}: empty")
                continue
            if rule.max_length is not None and len(value) > rule.max_length:
                problems.append(f"{label}: {len(value)} characters, at most {rule.max_length}")
            if rule.pattern is not None and not re.fullmatch(rule.pattern, value):
                problems.append(f"{label}: {value[:40]!r} is not in the expected format")
    if len(select_all(root, _DRUG)) != len(select_all(
            root, f"{_ASSESS}/hl7:component/hl7:causalityAssessment[hl7:code/@code='20']")):
        problems.append("G.k.1 Characterisation of drug role: one per drug is required")
    return problems


# ---------------------------------------------------------------- building the message


def _ts(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y%m%d%H%M%S+0000")


def _el(parent: ET.Element, tag: str, attrib: dict[str, str] | None = None, text: str | None = None) -> ET.Element:
    node = ET.SubElement(parent, f"{{{HL7}}}{tag}", attrib or {})
    if text is not None:
        node.text = XML_INVALID.sub("\ufffd", text)
    return node


def _xsi(kind: str) -> dict[str, str]:
    return {f"{{{XSI}}}type": kind}


def _id_part(value: str) -> str:
    return re.sub(r"[^A-Za-z0-9-]", "", value)


def qualification(hcp: Hcp | None) -> str | None:
    """C.2.r.4 for the reporter: None (nullFlavor UNK) when we do not know who they are."""
    if hcp is None:
        return None
    specialty = hcp.specialty or ""
    for pattern, code in QUALIFICATION_WORDS:
        if pattern.search(specialty):
            return code
    return "1" if specialty.strip() else "3"


def patient_age(text: str) -> int | None:
    found = AGE.search(rules.normalise(text))
    if not found:
        return None
    age = int(found.group(1) or found.group(2))
    return age if 0 <= age <= 130 else None


def patient_sex(text: str) -> str | None:
    """ISO 5218: 1 male, 2 female; None when not stated or ambiguous."""
    norm = rules.normalise(text)
    female, male = bool(FEMALE.search(norm)), bool(MALE.search(norm))
    if female == male:
        return None
    return "2" if female else "1"


def refusal(case: AdverseEvent) -> str | None:
    """Why this case cannot be an ICSR now, or None."""
    if case.kind != AeKind.adverse_event:
        return (f"{case.reference} is a {case.kind.replace('_', ' ')}, not an individual case safety report; "
                "export it as JSON")
    missing = case.missing_criteria
    if missing:
        sections = {"reporter": "C.2.r primary source", "patient": "D patient", "product": "G.k drug",
                    "event": "E.i reaction"}
        return (f"{case.reference} is not a valid ICSR yet: missing {', '.join(missing)} "
                f"({'; '.join(sections[m] for m in missing)}). Record them in the assessment first.")
    if not case.products:
        return f"{case.reference} names no suspect product (G.k.2.2); add it before exporting"
    if not (case.raw_text or "").strip():
        return f"{case.reference} has no source text for the reaction (E.i.1.1) and narrative (H.1)"
    return None


def _reaction_as_reported(case: AdverseEvent) -> str:
    first = (case.raw_text or "").split("\n---\n", 1)[0]
    text = " ".join(first.split())
    return text if len(text) <= REACTION_MAX else text[:REACTION_MAX - 1] + "…"


def _narrative(case: AdverseEvent, conv: Conversation, qualification_code: str | None) -> str:
    who = {"1": "a physician", "2": "a pharmacist", "3": "a health professional"}.get(
        qualification_code or "", "an unidentified reporter")
    channel = "WhatsApp" if conv.channel == "whatsapp" else "web chat"
    seriousness = {Seriousness.serious: "serious", Seriousness.non_serious: "non-serious"}.get(
        Seriousness(case.seriousness) if case.seriousness in Seriousness.__members__ else Seriousness.unknown,
        "not yet assessed")
    lines = [
        f"Spontaneous report {case.reference} from {who}, received on {channel} on "
        f"{case.day0_at.astimezone(UTC):%d %b %Y %H:%M} UTC (day 0).",
        f"Suspect product(s): {', '.join(case.products or [])}. Seriousness: {seriousness}"
        + (f" ({', '.join(case.serious_terms)})." if case.serious_terms else "."),
        "Reported text, verbatim (follow-up messages separated by ---):",
        case.raw_text,
    ]
    return "\n".join(lines)


def _seriousness(parent: ET.Element, case: AdverseEvent) -> None:
    terms = " ".join(case.serious_terms or []).lower()
    hits: set[str] = set()
    if case.seriousness == Seriousness.serious or terms:
        for code, _name, pattern in SERIOUSNESS_CRITERIA[:-1]:
            if pattern.search(terms):
                hits.add(code)
        if not hits:
            hits.add("26")
    for code, name, _pattern in SERIOUSNESS_CRITERIA:
        rel = _el(parent, "outboundRelationship2", {"typeCode": "PERT"})
        obs = _el(rel, "observation", {"classCode": "OBS", "moodCode": "EVN"})
        _el(obs, "code", {"code": code, "codeSystem": CS_OBSERVATION, "codeSystemVersion": "1.0", "displayName": name})
        _el(obs, "value", {**_xsi("BL"), "value": "true"} if code in hits else {**_xsi("BL"), "nullFlavor": "NI"})


def _device(parent: ET.Element, tag: str, type_code: str, root: str, extension: str) -> None:
    party = _el(parent, tag, {"typeCode": type_code})
    device = _el(party, "device", {"classCode": "DEV", "determinerCode": "INSTANCE"})
    _el(device, "id", {"root": root, "extension": extension})


@dataclass(frozen=True)
class Icsr:
    xml: bytes
    case_identifier: str  # C.1.1
    filename: str


def build(session: Session, case: AdverseEvent, *, now: datetime, default_market: str) -> Icsr:
    """The case as an E2B(R3) batch of one message; raises Conflict when it cannot be a valid ICSR."""
    why = refusal(case)
    if why:
        raise Conflict(why, detail={"missing": case.missing_criteria, "kind": case.kind})
    conv = session.get(Conversation, case.conversation_id)
    assert conv is not None
    hcp = session.get(Hcp, case.hcp_id or conv.hcp_id) if (case.hcp_id or conv.hcp_id) else None
    # The reporter's country: the HCP's, else the conversation's market, else the deployment's default.
    stated = ((hcp.country if hcp else None) or conv.market or default_market or "").upper()
    country: str | None = stated if re.fullmatch("[A-Z]{2}", stated) else None
    case_id = f"{country or 'XX'}-{SENDER_ID}-{_id_part(case.reference)}"
    stamp = now.astimezone(UTC).strftime("%Y%m%d%H%M%S")
    receiver = RECEIVERS.get(country or "", DEFAULT_RECEIVER)
    qual = qualification(hcp)

    batch = ET.Element(f"{{{HL7}}}MCCI_IN200100UV01", {"ITSVersion": "XML_1.0"})
    _el(batch, "id", {"root": OID_BATCH_NUMBER, "extension": f"{case_id}-B{stamp}"})
    _el(batch, "creationTime", {"value": _ts(now)})
    _el(batch, "responseModeCode", {"code": "D"})
    _el(batch, "interactionId", {"root": HL7_INTERACTION, "extension": "MCCI_IN200100UV01"})
    _el(batch, "name", {"code": "1", "codeSystem": CS_MESSAGE_TYPE, "codeSystemVersion": "1.0",
                        "displayName": "ichicsr"})

    msg = _el(batch, "PORR_IN049016UV")
    _el(msg, "id", {"root": OID_MESSAGE_ID, "extension": f"{case_id}-M{stamp}"})
    _el(msg, "creationTime", {"value": _ts(now)})
    _el(msg, "interactionId", {"root": HL7_INTERACTION, "extension": "PORR_IN049016UV"})
    _el(msg, "processingCode", {"code": "P"})
    _el(msg, "processingModeCode", {"code": "T"})
    _el(msg, "acceptAckCode", {"code": "AL"})
    _device(msg, "receiver", "RCV", OID_MESSAGE_RECEIVER, receiver)
    _device(msg, "sender", "SND", OID_MESSAGE_SENDER, SENDER_ID)
    cap = _el(msg, "controlActProcess", {"classCode": "CACT", "moodCode": "EVN"})
    _el(cap, "code", {"code": "PORR_TE049016UV", "codeSystem": "2.16.840.1.113883.1.18"})
    _el(cap, "effectiveTime", {"value": _ts(now)})
    inv = _el(_el(cap, "subject", {"typeCode": "SUBJ"}), "investigationEvent",
              {"classCode": "INVSTG", "moodCode": "EVN"})
    _el(inv, "id", {"root": OID_MESSAGE_ID, "extension": case_id})
    _el(inv, "id", {"root": OID_WORLDWIDE_ID, "extension": case_id})
    _el(inv, "code", {"code": "PAT_ADV_EVNT", "codeSystem": "2.16.840.1.113883.5.4"})
    _el(inv, "text", text=_narrative(case, conv, qual))
    _el(inv, "statusCode", {"code": "active"})
    _el(_el(inv, "effectiveTime"), "low", {"value": _ts(case.day0_at)})
    _el(inv, "availabilityTime", {"value": _ts(case.updated_at or case.created_at)})

    # D patient, E.i reaction, G.k drugs
    assessment = _el(_el(inv, "component", {"typeCode": "COMP"}), "adverseEventAssessment",
                     {"classCode": "INVSTG", "moodCode": "EVN"})
    role = _el(_el(assessment, "subject1", {"typeCode": "SBJ"}), "primaryRole", {"classCode": "INVSBJ"})
    player = _el(role, "player1", {"classCode": "PSN", "determinerCode": "INSTANCE"})
    _el(player, "name", {"nullFlavor": "UNK"})
    sex = patient_sex(case.raw_text)
    if sex:
        _el(player, "administrativeGenderCode", {"code": sex, "codeSystem": CS_SEX})
    age = patient_age(case.raw_text)
    if age is not None:
        obs = _el(_el(role, "subjectOf2", {"typeCode": "SBJ"}), "observation", {"classCode": "OBS", "moodCode": "EVN"})
        _el(obs, "code", {"code": "3", "codeSystem": CS_OBSERVATION, "codeSystemVersion": "1.0", "displayName": "age"})
        _el(obs, "value", {**_xsi("PQ"), "value": str(age), "unit": "a"})
    reaction = _el(_el(role, "subjectOf2", {"typeCode": "SBJ"}), "observation",
                   {"classCode": "OBS", "moodCode": "EVN"})
    _el(reaction, "id", {"root": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{case.id}/reaction/1"))})
    _el(reaction, "code", {"code": "29", "codeSystem": CS_OBSERVATION, "codeSystemVersion": "1.0",
                           "displayName": "reaction"})
    _el(_el(reaction, "value", _xsi("CE")), "originalText", text=_reaction_as_reported(case))
    if country:
        place = _el(_el(_el(reaction, "location", {"typeCode": "LOC"}), "locatedEntity", {"classCode": "LOCE"}),
                    "locatedPlace", {"classCode": "COUNTRY", "determinerCode": "INSTANCE"})
        _el(place, "code", {"code": country, "codeSystem": CS_COUNTRY})
    _seriousness(reaction, case)
    organizer = _el(_el(role, "subjectOf2", {"typeCode": "SBJ"}), "organizer",
                    {"classCode": "CATEGORY", "moodCode": "EVN"})
    _el(organizer, "code", {"code": "4", "codeSystem": CS_ORGANIZER, "codeSystemVersion": "1.0",
                            "displayName": "drugInformation"})
    drug_ids = []
    for n, product in enumerate(case.products, start=1):
        drug_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{case.id}/drug/{n}"))
        drug_ids.append(drug_id)
        admin = _el(_el(organizer, "component", {"typeCode": "COMP"}), "substanceAdministration",
                    {"classCode": "SBADM", "moodCode": "EVN"})
        _el(admin, "id", {"root": drug_id})
        kind = _el(_el(_el(admin, "consumable", {"typeCode": "CSM"}), "instanceOfKind", {"classCode": "INST"}),
                   "kindOfProduct", {"classCode": "MMAT", "determinerCode": "KIND"})
        _el(kind, "name", text=product[:250])
    for drug_id in drug_ids:
        causality = _el(_el(assessment, "component", {"typeCode": "COMP"}), "causalityAssessment",
                        {"classCode": "OBS", "moodCode": "EVN"})
        _el(causality, "code", {"code": "20", "codeSystem": CS_OBSERVATION, "codeSystemVersion": "1.0",
                                "displayName": "interventionCharacterization"})
        _el(causality, "value", {**_xsi("CE"), "code": "1", "codeSystem": CS_DRUG_ROLE, "displayName": "suspect"})
        use = _el(_el(causality, "subject2", {"typeCode": "SUBJ"}), "productUseReference",
                  {"classCode": "SBADM", "moodCode": "EVN"})
        _el(use, "id", {"root": drug_id})

    # C.1.7 expedited: serious, or not yet assessed (the 15-day clock runs until it is)
    expedited = case.seriousness != Seriousness.non_serious
    event = _el(_el(inv, "component", {"typeCode": "COMP"}), "observationEvent",
                {"classCode": "OBS", "moodCode": "EVN"})
    _el(event, "code", {"code": "23", "codeSystem": CS_OBSERVATION, "codeSystemVersion": "1.0",
                        "displayName": "localCriteriaForExpedited"})
    _el(event, "value", {**_xsi("BL"), "value": "true" if expedited else "false"})

    # C.2.r primary source
    source_rel = _el(inv, "outboundRelationship", {"typeCode": "SPRT"})
    _el(source_rel, "priorityNumber", {"value": "1"})
    related = _el(source_rel, "relatedInvestigation", {"classCode": "INVSTG", "moodCode": "EVN"})
    _el(related, "code", {"code": "2", "codeSystem": CS_REPORT_RELATION, "codeSystemVersion": "1.0",
                          "displayName": "sourceReport"})
    entity = _el(_el(_el(_el(related, "subjectOf2", {"typeCode": "SUBJ"}), "controlActEvent",
                         {"classCode": "CACT", "moodCode": "EVN"}), "author", {"typeCode": "AUT"}),
                 "assignedEntity", {"classCode": "ASSIGNED"})
    person = _el(entity, "assignedPerson", {"classCode": "PSN", "determinerCode": "INSTANCE"})
    if hcp is not None and hcp.name and hcp.erased_at is None:
        parts = hcp.name.split()
        name = _el(person, "name")
        if len(parts) > 1:
            _el(name, "given", text=" ".join(parts[:-1])[:35])
        _el(name, "family", text=parts[-1][:50])
    else:
        _el(person, "name", {"nullFlavor": "MSK" if hcp is not None else "UNK"})
    _el(_el(person, "asQualifiedEntity", {"classCode": "QUAL"}), "code",
        {"code": qual, "codeSystem": CS_QUALIFICATION, "codeSystemVersion": "1.0"} if qual
        else {"nullFlavor": "UNK"})
    location = _el(_el(person, "asLocatedEntity", {"classCode": "LOCE"}), "location",
                   {"classCode": "COUNTRY", "determinerCode": "INSTANCE"})
    _el(location, "code", {"code": country, "codeSystem": CS_COUNTRY} if country else {"nullFlavor": "UNK"})

    # C.3 sender
    sender = _el(_el(_el(inv, "subjectOf1", {"typeCode": "SUBJ"}), "controlActEvent",
                     {"classCode": "CACT", "moodCode": "EVN"}), "author", {"typeCode": "AUT"})
    sender_entity = _el(sender, "assignedEntity", {"classCode": "ASSIGNED"})
    _el(sender_entity, "code", {"code": "1", "codeSystem": CS_SENDER_TYPE, "codeSystemVersion": "1.0",
                                "displayName": "pharmaceuticalCompany"})
    _el(_el(sender_entity, "representedOrganization", {"classCode": "ORG", "determinerCode": "INSTANCE"}), "name",
        text=SENDER_ORGANISATION)

    # C.1.3 type of report: 1 = spontaneous
    characteristic = _el(_el(inv, "subjectOf2", {"typeCode": "SUBJ"}), "investigationCharacteristic",
                         {"classCode": "OBS", "moodCode": "EVN"})
    _el(characteristic, "code", {"code": "1", "codeSystem": CS_CHARACTERISTIC, "codeSystemVersion": "1.0",
                                 "displayName": "ichReportType"})
    _el(characteristic, "value", {**_xsi("CE"), "code": "1", "codeSystem": CS_REPORT_TYPE,
                                  "displayName": "spontaneous"})

    _device(batch, "receiver", "RCV", OID_BATCH_RECEIVER, receiver)
    _device(batch, "sender", "SND", OID_BATCH_SENDER, SENDER_ID)

    problems = check(batch)
    if problems:  # a bug here, not the reviewer's input: say exactly which rule broke
        raise Conflict(f"the E2B(R3) message for {case.reference} failed its own checks: {'; '.join(problems)}",
                       detail={"problems": problems})
    ET.indent(batch)
    xml = ET.tostring(batch, encoding="UTF-8", xml_declaration=True)
    return Icsr(xml=xml, case_identifier=case_id, filename=f"{_id_part(case.reference)}-e2b-r3.xml")


def export_case(session: Session, case_id: str, *, staff_id: str, now: datetime, default_market: str) -> Icsr:
    """Build the ICSR of one case and audit the export (a refusal raises before anything is recorded)."""
    from api.safety.review import get_case

    case = get_case(session, case_id)
    icsr = build(session, case, now=now, default_market=default_market)
    audit.record(session, action="adverse_event.exported", subject_type="adverse_event", subject_id=case.id,
                 actor_type="staff", actor_id=staff_id,
                 data={"format": "e2b_r3", "reference": case.reference, "case_identifier": icsr.case_identifier},
                 at=now)
    return icsr
