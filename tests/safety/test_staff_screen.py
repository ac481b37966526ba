"""The pure staff reply screen (api.safety.staff_screen): which findings a reply carries for which
role, whether they block and whether they may be overridden."""

from __future__ import annotations

import pytest

from api.safety.classifier import RuleModelScreen
from api.safety.products import Catalogue, parse_catalogue
from api.safety.screen import ScreenContext, ScreenResult
from api.safety.staff_screen import StaffScreen, is_commercial, screen_staff_reply

APPROVED = (
    "The maximum daily dose of Cardiovex is 40 mg once daily. Doses above 40 mg have not been studied.",
    "In clinical studies Cardiovex 20 mg reduced LDL cholesterol by 41% from baseline at 12 weeks.",
)


class ScriptedScreen:
    """A SafetyScreen that reports an event when the text holds a marker word."""

    def __init__(self, marker: str) -> None:
        self.marker = marker
        self.seen: list[str] = []

    def screen(self, text: str, context: ScreenContext | None = None) -> ScreenResult:
        self.seen.append(text)
        if self.marker in text:
            return ScreenResult(adverse_event=True, ae_categories=("side_effect",), products=("cardiovex",))
        return ScreenResult()


def _kinds(result: StaffScreen) -> list[str]:
    return [f.kind for f in result.findings]


def _rep(text: str, catalogue: Catalogue, **kw: object) -> StaffScreen:
    return screen_staff_reply(text, role="rep", products=catalogue, approved=APPROVED, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("text", [
    "Cardiovex works nicely for migraine prevention too.",
    "You can start Cardiovex at 60 mg if the LDL is very high.",
    "Glucorel is great for weight management in non-diabetics.",
    "Plenty of clinics use Respizan off-label for mild asthma.",
    "Cardiovex is fine in pregnancy, no need to stop it.",
])
def test_a_rep_claiming_a_use_outside_the_label_is_blocked_without_override(catalogue: Catalogue,
                                                                           text: str) -> None:
    result = _rep(text, catalogue)
    assert "off_label" in _kinds(result)
    assert result.blocked and not result.overridable


@pytest.mark.parametrize("text", [
    "Cardiovex is not licensed for children, so I have passed your question to Medical Information.",
    "Please do not exceed 40 mg of Cardiovex a day.",
    "Glucorel is contraindicated in type 1 diabetes.",
    "I can't comment on use in teenagers; our medical team will answer you.",
])
def test_a_rep_declining_or_redirecting_an_off_label_question_passes(catalogue: Catalogue, text: str) -> None:
    result = _rep(text, catalogue)
    assert "off_label" not in _kinds(result), result.findings


def test_a_yes_to_an_off_label_question_is_off_label_even_without_the_product_name(catalogue: Catalogue) -> None:
    asked = ["could I put a 7 year old on respizan?"]
    assert _kinds(_rep("Sure, that works well.", catalogue, hcp_texts=asked)) == ["off_label"]
    assert _kinds(_rep("Sure, I will arrange that.", catalogue, hcp_texts=["can I have respizan samples?"])) == []


def test_medical_roles_may_discuss_uses_outside_the_label(catalogue: Catalogue) -> None:
    text = "Cardiovex has been given at 80 mg in one pharmacokinetic study; it is not a licensed dose."
    for role in ("msl", "medical_reviewer"):
        assert screen_staff_reply(text, role=role, products=catalogue) == StaffScreen(products=("cardiovex",))
    # whoever also holds the rep role is screened as a rep (the firewall's rule)
    assert is_commercial({"rep", "msl"}) and not is_commercial({"msl"})
    assert "off_label" in _kinds(screen_staff_reply("Try Cardiovex 80 mg.", role={"rep", "msl"}, products=catalogue))


@pytest.mark.parametrize("text", [
    "Cardiovex is the best statin money can buy.",
    "Respizan has no side effects worth mentioning.",
    "Honestly Glucorel is a game changer for glycaemic control.",
    "It is completely safe for all your patients.",
])
def test_superlatives_from_a_rep_are_promotional_and_overridable(catalogue: Catalogue, text: str) -> None:
    result = _rep(text, catalogue)
    assert _kinds(result) == ["promotional"]
    assert result.blocked and result.overridable


def test_an_msl_may_cite_data_but_superlatives_are_flagged_for_everyone(catalogue: Catalogue) -> None:
    data = "In the ASTER trial Cardiovex 20 mg lowered LDL-C by 52% against placebo."
    assert screen_staff_reply(data, role="msl", products=catalogue).findings == ()
    assert _kinds(_rep(data, catalogue)) == ["promotional"]  # a rep may only quote approved content
    hype = screen_staff_reply("Honestly Respizan is clearly superior to the other biologics.", role="medical_reviewer",
                              products=catalogue)
    assert _kinds(hype) == ["promotional"] and hype.overridable


def test_a_medical_writer_recommending_an_off_label_use_is_flagged_but_may_override(catalogue: Catalogue) -> None:
    asked = ["could glucorel help my NAFLD patients who are not diabetic?"]
    data = "Two small studies looked at liver fat with glucorel in NAFLD; neither was powered for outcomes."
    assert screen_staff_reply(data, role="msl", products=catalogue, hcp_texts=asked).findings == ()
    advice = "Glucorel may be a reasonable option for your fatty liver patients even without diabetes."
    result = screen_staff_reply(advice, role="msl", products=catalogue, hcp_texts=asked)
    assert _kinds(result) == ["off_label"] and result.blocked and result.overridable


def test_a_lab_value_is_not_an_age_and_a_reported_overdose_is_not_a_dose_claim(catalogue: Catalogue) -> None:
    assert "off_label" not in _kinds(_rep("Most of your Glucorel patients keep HbA1c under 7 on 1 mg.", catalogue))
    report = "The 200 mg Respizan your patient was given by mistake has gone to our safety team."
    assert "off_label" not in _kinds(_rep(report, catalogue))


def test_a_disclaimer_covers_only_its_own_clause(catalogue: Catalogue) -> None:
    text = "Respizan is not licensed for nasal polyps, but honestly I'd say go for it."
    assert _kinds(_rep(text, catalogue, hcp_texts=["is respizan any good for nasal polyps?"])) == ["off_label"]


def test_a_product_claim_must_come_from_approved_content(catalogue: Catalogue) -> None:
    quoted = "In clinical studies Cardiovex 20 mg reduced LDL cholesterol by 41% from baseline at 12 weeks."
    assert _kinds(_rep(quoted, catalogue)) == []
    assert _kinds(_rep("Cardiovex 20 mg reduced LDL cholesterol by 65% from baseline at 12 weeks.", catalogue)) == [
        "promotional"]  # the number is not the approved one
    assert _kinds(_rep("Cardiovex protects the kidneys as well.", catalogue)) == ["promotional"]
    # logistics, questions and greetings are not claims
    for text in ("Your Cardiovex samples leave the depot tomorrow.", "Does Cardiovex work well for your patients?",
                 "Best regards, the Halcyon team", "I will do my best to get the leaflet to you today."):
        assert _kinds(_rep(text, catalogue)) == [], text


def test_personal_data_the_hcp_did_not_give_is_found_with_its_place(catalogue: Catalogue) -> None:
    text = "Dr Okafor's nurse is on 07700 900222 and her email is j.okafor@example.org."
    result = screen_staff_reply(text, role="msl", products=catalogue)
    assert _kinds(result) == ["personal_data", "personal_data", "personal_data"]
    spans = [text[f.span[0]:f.span[1]] for f in result.findings if f.span]
    assert "07700 900222" in spans and "j.okafor@example.org" in spans
    assert result.blocked and result.overridable


def test_personal_data_the_hcp_gave_or_that_names_the_reader_or_writer_passes(catalogue: Catalogue) -> None:
    said = ["this is Dr Wanjiru Otieno, email me at w.otieno@clinic.example"]
    text = "Thanks Dr Otieno, I will write to w.otieno@clinic.example today.\nBest wishes, Morgan"
    assert screen_staff_reply(text, role="rep", products=catalogue, hcp_texts=said).findings == ()
    # the HCP's profile name and the writer's own name are known, not leaked
    assert screen_staff_reply("Hello, I am Rosalind Achebe from Halcyon.", role="rep", products=catalogue,
                              known_names=["Rosalind Achebe"]).findings == ()
    # the company's function mailboxes are not a person's data
    assert screen_staff_reply("You can also write to medinfo@halcyon.example.", role="rep",
                              products=catalogue).findings == ()


def test_an_adverse_event_is_reported_through_the_given_screen_and_does_not_block(catalogue: Catalogue) -> None:
    safety = ScriptedScreen("rash")
    text = "Thanks, the patient who developed a rash on Cardiovex is noted."
    result = screen_staff_reply(text, role="rep", products=catalogue, safety=safety)
    assert _kinds(result) == ["adverse_event"] and not result.blocked
    assert result.adverse_event is not None and safety.seen == [text]


def test_the_real_ae_screen_reads_staff_reports_but_not_product_talk(catalogue: Catalogue,
                                                                     screen: RuleModelScreen) -> None:
    report = "Noted: your patient collapsed and was hospitalised two days after the first Respizan injection."
    assert "adverse_event" in _kinds(screen_staff_reply(report, role="msl", products=catalogue, safety=screen))
    for talk in ("Side effects of Glucorel are listed in section 4.8 of the SmPC.",
                 "In trials Cardiovex 20 mg reduced LDL cholesterol by 41%."):
        assert "adverse_event" not in _kinds(screen_staff_reply(talk, role="msl", products=catalogue,
                                                                safety=screen)), talk


def test_empty_text_has_no_findings(catalogue: Catalogue) -> None:
    assert screen_staff_reply("", role="rep", products=catalogue) == StaffScreen()


def test_a_use_approved_in_one_market_is_off_label_in_another() -> None:
    catalogue = parse_catalogue({"products": {"cardiovex": {
        "display_name": "Cardiovex", "approved_populations": ["adults"], "max_daily_dose_mg": 40,
        "indications": {"US": ["primary hypercholesterolaemia",
                               "prevention of cardiovascular events in adults at high cardiovascular risk"],
                        "GB": ["primary hypercholesterolaemia"]}}}})
    claim = "You can use Cardiovex for heart attack prevention in your high-risk adults."
    assert "off_label" in _kinds(screen_staff_reply(claim, role="rep", products=catalogue, market="GB"))
    assert "off_label" not in _kinds(screen_staff_reply(claim, role="rep", products=catalogue, market="US"))
    # a market the reply names decides which label applies
    named = screen_staff_reply("Yes, in the UK it can be used for cardiovascular prevention as well.", role="rep",
                               products=catalogue, hcp_texts=["does cardiovex cover CV prevention?"], market="US")
    assert "off_label" in _kinds(named)
    assert screen_staff_reply("That works for us, see you Tuesday.", role="rep", products=catalogue,
                              market="GB").findings == ()
