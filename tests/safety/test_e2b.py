"""E2B(R3) ICSR export: the element rules (presence, format, length) and the values from the case.

lxml is not installed in the project's virtualenv, so the messages are parsed with the standard
library's xml.etree; paths with predicates go through ``e2b.select_all``.
"""

from __future__ import annotations

import copy
import re
import xml.etree.ElementTree as ET
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.audit.models import AuditEvent
from api.conversations.models import Conversation
from api.errors import Conflict, NotFound
from api.hcps.models import Hcp
from api.safety import e2b, service
from api.safety.models import AdverseEvent
from api.safety.screen import ScreenResult
from tests.safety.conftest import T0, MakeConversation, MakeMessage

H = "{urn:hl7-org:v3}"
RULE = {r.element: r for r in e2b.ELEMENT_RULES}
NOW = T0 + timedelta(days=2, hours=3)


def _case(session: Session, conv: Conversation, make_message: MakeMessage, body: str, *,
          products: tuple[str, ...] = ("cardiovex",), categories: tuple[str, ...] = ("side_effect",),
          serious_terms: tuple[str, ...] = ()) -> AdverseEvent:
    msg = make_message(conv, body, at=T0)
    result = ScreenResult(adverse_event=True, ae_categories=categories, ae_score=0.9, products=products,
                          serious=bool(serious_terms), serious_terms=serious_terms)
    outcome = service.apply(session, conversation=conv, message=msg, result=result, now=T0 + timedelta(seconds=1))
    case = session.get(AdverseEvent, outcome.adverse_event_id)
    assert case is not None
    return case


def _complete(case: AdverseEvent) -> AdverseEvent:
    case.has_reporter = case.has_patient = case.has_product = case.has_event = True
    return case


def _hcp_conversation(session: Session, make_conversation: MakeConversation, specialty: str = "Cardiology",
                      country: str = "GB") -> Conversation:
    hcp = Hcp(name="Dr Amara Lindqvist", specialty=specialty, country=country, verification_status="verified",
              created_at=T0)
    session.add(hcp)
    session.flush()
    return make_conversation(hcp_id=hcp.id, market=country)


def _value(root: ET.Element, element: str) -> str | None:
    rule = RULE[element]
    [node, *_] = e2b.select_all(root, rule.path)
    return node.get(rule.attribute) if rule.attribute else node.text


def _export(session: Session, case: AdverseEvent) -> ET.Element:
    icsr = e2b.export_case(session, case.id, staff_id="pv-1", now=NOW, default_market="US")
    assert icsr.xml.startswith(b"<?xml version='1.0' encoding='UTF-8'?>")
    return ET.fromstring(icsr.xml)


def test_a_complete_case_passes_every_element_rule_with_the_cases_values(
        session: Session, make_conversation: MakeConversation, make_message: MakeMessage) -> None:
    conv = _hcp_conversation(session, make_conversation)
    body = "A 54 year old woman on cardiovex and respizan was hospitalised with a rash and fever"
    case = _complete(_case(session, conv, make_message, body, products=("cardiovex", "respizan"),
                           serious_terms=("hospitalised",)))
    root = _export(session, case)
    assert e2b.check(root) == []

    case_id = f"GB-{e2b.SENDER_ID}-{case.reference}"
    assert _value(root, "C.1.1") == _value(root, "C.1.8.1") == case_id
    assert _value(root, "N.1.2") == f"{case_id}-B20261125120000"
    assert _value(root, "N.2.r.1") == f"{case_id}-M20261125120000"
    assert _value(root, "N.1.5") == _value(root, "N.2.r.4") == _value(root, "C.1.2") == "20261125120000+0000"
    assert _value(root, "C.1.4") == "20261123090000+0000"  # day 0 = receipt of the first message
    assert _value(root, "N.1.4") == _value(root, "N.2.r.3") == "MHRA"
    assert _value(root, "C.1.3") == "1"  # spontaneous
    assert _value(root, "C.1.7") == "true"  # serious
    assert _value(root, "C.2.r.3") == "GB"
    assert _value(root, "C.2.r.4") == "1"  # a physician
    assert _value(root, "E.i.1.1a") == body
    names = [n.text for n in e2b.select_all(root, RULE["G.k.2.2"].path)]
    assert names == ["cardiovex", "respizan"]
    roles = [n.get("code") for n in e2b.select_all(root, RULE["G.k.1"].path)]
    assert roles == ["1", "1"]  # both suspect
    narrative = _value(root, "H.1") or ""
    assert body in narrative and case.reference in narrative and "23 Nov 2026 09:00 UTC" in narrative
    # D patient: no initials held, age and sex as stated
    player = e2b.select_all(root, RULE["D.1"].path.rsplit("/", 1)[0])[0]
    assert player.find(f"{H}name").get("nullFlavor") == "UNK"  # type: ignore[union-attr]
    assert player.find(f"{H}administrativeGenderCode").get("code") == "2"  # type: ignore[union-attr]
    ages = [o for o in root.iter(f"{H}observation") if o.find(f"{H}code").get("displayName") == "age"]  # type: ignore[union-attr]
    assert [(a.find(f"{H}value").get("value"), a.find(f"{H}value").get("unit")) for a in ages] == [("54", "a")]  # type: ignore[union-attr]
    # E.i.3.2: hospitalisation true, the other five criteria "no information"
    reaction = e2b.select_all(root, RULE["E.i.1.1a"].path.split("/hl7:value")[0])[0]
    criteria = {o.find(f"{H}code").get("displayName"): o.find(f"{H}value").attrib  # type: ignore[union-attr]
                for o in reaction.iter(f"{H}observation") if o is not reaction}
    assert criteria["requiresInpatientHospitalization"]["value"] == "true"
    assert len(criteria) == 6
    assert all(v.get("nullFlavor") == "NI" for k, v in criteria.items() if k != "requiresInpatientHospitalization")


def test_the_export_is_audited_with_its_format(
        session: Session, make_conversation: MakeConversation, make_message: MakeMessage) -> None:
    case = _complete(_case(session, _hcp_conversation(session, make_conversation), make_message,
                           "rash on cardiovex"))
    _export(session, case)
    event = session.execute(select(AuditEvent).where(AuditEvent.subject_id == case.id,
                                                     AuditEvent.action == "adverse_event.exported")).scalar_one()
    assert event.actor_id == "pv-1" and event.data["format"] == "e2b_r3"


@pytest.mark.parametrize(("specialty", "code"), [("Hospital pharmacist", "2"), ("Practice nurse", "3"),
                                                 ("", "3"), ("General practice", "1")])
def test_reporter_qualification_follows_the_specialty(
        session: Session, make_conversation: MakeConversation, make_message: MakeMessage, specialty: str,
        code: str) -> None:
    case = _complete(_case(session, _hcp_conversation(session, make_conversation, specialty), make_message,
                           "nausea on cardiovex"))
    assert _value(_export(session, case), "C.2.r.4") == code


def test_an_unidentified_reporter_is_coded_unknown_and_still_valid(
        session: Session, make_conversation: MakeConversation, make_message: MakeMessage) -> None:
    conv = make_conversation(channel="webchat", address=None, market="DE")
    case = _complete(_case(session, conv, make_message, "dizziness with cardiovex"))
    root = _export(session, case)
    assert e2b.check(root) == []
    [qualification] = e2b.select_all(root, RULE["C.2.r.4"].path)
    assert qualification.get("nullFlavor") == "UNK" and qualification.get("code") is None
    assert _value(root, "C.2.r.3") == "DE" and _value(root, "N.1.4") == e2b.DEFAULT_RECEIVER


def test_html_and_control_characters_in_the_report_stay_text(
        session: Session, make_conversation: MakeConversation, make_message: MakeMessage) -> None:
    body = 'rash on cardiovex <script>alert("x")</script> <b>bold</b> & more\x07'
    case = _complete(_case(session, _hcp_conversation(session, make_conversation), make_message, body))
    icsr = e2b.export_case(session, case.id, staff_id="pv-1", now=NOW, default_market="US")
    assert b"<script>" not in icsr.xml and b"&lt;script&gt;" in icsr.xml
    root = ET.fromstring(icsr.xml)
    assert not any(el.tag.endswith(("script", "}b")) for el in root.iter())
    assert 'rash on cardiovex <script>alert("x")</script> <b>bold</b> & more\ufffd' in (_value(root, "H.1") or "")
    assert e2b.check(root) == []


def test_a_long_report_is_cut_to_250_characters_as_reported_but_kept_whole_in_the_narrative(
        session: Session, make_conversation: MakeConversation, make_message: MakeMessage) -> None:
    body = "rash on cardiovex " + "and then it spread further " * 20
    case = _complete(_case(session, _hcp_conversation(session, make_conversation), make_message, body))
    root = _export(session, case)
    reported = _value(root, "E.i.1.1a") or ""
    assert len(reported) == 250 and reported.endswith("…")
    assert body in (_value(root, "H.1") or "")


def test_a_case_missing_minimum_criteria_is_refused_naming_the_sections(
        session: Session, make_conversation: MakeConversation, make_message: MakeMessage) -> None:
    case = _case(session, _hcp_conversation(session, make_conversation), make_message, "rash on cardiovex")
    case.has_patient = False
    before = (case.status, case.updated_at, case.has_patient)
    with pytest.raises(Conflict, match=r"missing patient \(D patient\)"):
        e2b.export_case(session, case.id, staff_id="pv-1", now=NOW, default_market="US")
    assert (case.status, case.updated_at, case.has_patient) == before
    assert session.execute(select(AuditEvent).where(AuditEvent.subject_id == case.id,
                                                    AuditEvent.action == "adverse_event.exported")).first() is None


def test_a_quality_complaint_is_not_an_icsr(
        session: Session, make_conversation: MakeConversation, make_message: MakeMessage) -> None:
    case = _complete(_case(session, _hcp_conversation(session, make_conversation), make_message,
                           "the cardiovex blister arrived cracked", categories=("quality_complaint",)))
    assert case.kind == "quality_complaint"
    with pytest.raises(Conflict, match="not an individual case safety report"):
        e2b.export_case(session, case.id, staff_id="pv-1", now=NOW, default_market="US")


def test_an_unknown_case_is_not_found(session: Session) -> None:
    with pytest.raises(NotFound):
        e2b.export_case(session, "no-such-case", staff_id="pv-1", now=NOW, default_market="US")


# ---------------------------------------------------------------- the rules themselves catch broken messages


@pytest.fixture()
def good(session: Session, make_conversation: MakeConversation, make_message: MakeMessage) -> ET.Element:
    case = _complete(_case(session, _hcp_conversation(session, make_conversation), make_message,
                           "tremor on cardiovex"))
    return _export(session, case)


def _broken(good: ET.Element, element: str, change: str) -> list[str]:
    root = copy.deepcopy(good)
    rule = RULE[element]
    [node, *_] = e2b.select_all(root, rule.path)
    if change == "remove":
        parent = next(p for p in root.iter() if node in list(p))
        parent.remove(node)
    elif change.startswith("null:"):
        node.attrib.pop(rule.attribute or "", None)
        node.text = None
        node.set("nullFlavor", change[5:])
    elif rule.attribute:
        node.set(rule.attribute, change)
    else:
        node.text = change
    return e2b.check(root)


@pytest.mark.parametrize(("element", "change", "expected"), [
    ("N.1.2", "remove", "N.1.2 Batch number: missing"),
    ("N.2.r.1", "remove", "N.2.r.1 Message identifier: missing"),
    ("C.1.1", "remove", "C.1.1 Sender's (case) safety report unique identifier: missing"),
    ("C.1.1", "AE 2026 1", "C.1.1 Sender's (case) safety report unique identifier: 'AE 2026 1' is not in the "
                           "expected format"),
    ("C.1.4", "yesterday", "C.1.4 Date report was first received from source (day 0): 'yesterday' is not in the "
                           "expected format"),
    ("C.1.4", "remove", "C.1.4 Date report was first received from source (day 0): missing"),
    ("N.1.5", "20261125", "N.1.5 Date of batch transmission: '20261125' is not in the expected format"),
    ("C.2.r.4", "9", "C.2.r.4 Qualification: '9' is not in the expected format"),
    ("C.2.r.4", "null:NA", "C.2.r.4 Qualification: nullFlavor 'NA' is not allowed here"),
    ("D.1", "remove", "D.1 Patient (name or initials): missing"),
    ("E.i.1.1a", "x" * 251, "E.i.1.1a Reaction / event as reported by the primary source: 251 characters, at most 250"),
    ("E.i.1.1a", "   ", "E.i.1.1a Reaction / event as reported by the primary source: '   ' is not in the "
                        "expected format"),
    ("G.k.2.2", "null:UNK", "G.k.2.2 Medicinal product name as reported by the primary source: nullFlavor 'UNK' is "
                            "not allowed here"),
    ("G.k.1", "remove", "G.k.1 Characterisation of drug role: missing"),
    ("H.1", "", "H.1 Case narrative: empty"),
])
def test_each_encoded_rule_reports_a_broken_element(good: ET.Element, element: str, change: str,
                                                    expected: str) -> None:
    assert e2b.check(good) == []
    assert expected in _broken(good, element, change)


def test_every_mandatory_element_id_has_a_rule() -> None:
    ids = set(RULE)
    assert {"N.1.2", "N.2.r.1", "C.1.1", "C.1.4", "C.2.r.4", "D.1", "E.i.1.1a", "G.k.2.2", "H.1"} <= ids
    for rule in e2b.ELEMENT_RULES:
        assert re.fullmatch(r"[NCDEGH](\.[0-9a-z]+)+", rule.element), rule.element


def test_a_document_that_is_not_an_e2b_batch_is_reported() -> None:
    assert e2b.check(ET.fromstring("<ichicsr/>")) == ["the root is ichicsr, not an E2B(R3) batch (MCCI_IN200100UV01)"]


def test_an_erased_reporters_name_is_masked(
        session: Session, make_conversation: MakeConversation, make_message: MakeMessage) -> None:
    conv = _hcp_conversation(session, make_conversation)
    hcp = session.get(Hcp, conv.hcp_id)
    assert hcp is not None
    case = _complete(_case(session, conv, make_message, "rash on cardiovex"))
    named = _export(session, case)
    family = e2b.select_all(named, f"{e2b._SOURCE}/hl7:assignedPerson/hl7:name/hl7:family")
    assert [n.text for n in family] == ["Lindqvist"]
    hcp.name, hcp.erased_at = None, NOW
    masked = _export(session, case)
    [name] = e2b.select_all(masked, f"{e2b._SOURCE}/hl7:assignedPerson/hl7:name")
    assert name.get("nullFlavor") == "MSK" and not list(name)
    assert e2b.check(masked) == []
