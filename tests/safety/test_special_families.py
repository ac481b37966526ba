"""Each family of special-situation wording the screen reads, with a near miss that must stay quiet.

Own wording throughout: one report (with the category it must carry) and one benign message that
shares its words per family. Regression tests, not a benchmark.
"""

from __future__ import annotations

import pytest

from api.safety import rules
from api.safety.classifier import RuleModelScreen
from api.safety.screen import ScreenContext

# (family, report, its category, near miss that opens no case)
FAMILIES = [
    ("overdose: a count swallowed",
     "her toddler chewed about 5 of granny's cardiovex tablets this morning", "overdose",
     "how many cardiovex tablets come in one blister strip?"),
    ("overdose: a deliberate OD",
     "deliberate OD of glucorel pens last night, pt on the medical ward now", "overdose",
     "does the SmPC have an overdose section for glucorel?"),
    ("overdose: the next day's dose taken as well",
     "pt mixed up the days and took friday's velostatin as well as thursday's", "overdose",
     "can velostatin be taken in the evening instead of the morning?"),
    ("medication error: given twice",
     "the day team and the night team both administered respizan to the same man", "medication_error",
     "can respizan be given twice in one month for severe patients?"),
    ("medication error: storage",
     "respizan pens were left out of the fridge over the weekend and then one was injected", "medication_error",
     "how long may respizan stay out of the fridge?"),
    ("medication error: somebody else's supply",
     "nurse gave our 9 yo the glucorel pen belonging to his father", "medication_error",
     "is there a patient leaflet for fathers caring for children on respizan?"),
    ("medication error: an incomplete dose",
     "the needle came out early and only part of the respizan dose went in, she got maybe half", "medication_error",
     "what should I tell patients about needle technique with respizan?"),
    ("misuse: not prescribed to the user",
     "the pt's flatmate has been taking his cardiovex, it was never prescribed for him", "misuse",
     "who can be prescribed cardiovex?"),
    ("misuse: passed on to others",
     "this pt hands out her glucorel pens to friends at the gym", "misuse",
     "can a rep hand out glucorel pen guides at our gym talk?"),
    ("misuse: an odd route",
     "man is nebulising the respizan injection solution at home", "misuse",
     "is respizan available as a nebuliser solution?"),
    ("occupational: dust breathed in at work",
     "our dispensary tech breathed in cardiovex dust while splitting tablets and now feels dizzy",
     "occupational_exposure",
     "should the dispensary wear masks when splitting cardiovex tablets?"),
    ("occupational: sprayed in the eye",
     "respizan sprayed into a nurse's eye when the syringe hub came off", "occupational_exposure",
     "is eye protection needed when preparing respizan?"),
    ("occupational: handling with symptoms",
     "a carer who crushes cardiovex for our residents every day has a rash on both hands",
     "occupational_exposure",
     "can carers crush cardiovex for residents who cannot swallow?"),
    ("infectious transmission: an organism and a lot",
     "blood cultures grew serratia in two pts who had respizan from lot K77", "infectious_transmission",
     "what is the lot number format on respizan cartons?"),
    ("infectious transmission: an infection at the injection site",
     "abscess at the respizan injection site, pus sent to micro", "infectious_transmission",
     "how should the injection site be cleaned before respizan?"),
    ("quality: looks or smells wrong",
     "the new glucorel pens look yellowish inside and smell odd", "quality_complaint",
     "what colour should the glucorel solution be?"),
    ("quality: short count",
     "this cardiovex bottle only had 26 tablets in it", "quality_complaint",
     "how many tablets are in a cardiovex bottle?"),
    ("quality: a device that does not do its job",
     "the respizan pen is too stiff to press and the window never changed colour", "quality_complaint",
     "how does the respizan pen window show the dose is done?"),
    ("lack of efficacy: a marker that did not come down",
     "ldl 5.1 to 5.0 after 3 months of cardiovex 40", "lack_of_efficacy",
     "how much should ldl fall on cardiovex 40?"),
    ("lack of efficacy: events despite treatment",
     "two asthma admissions this year despite respizan every month", "lack_of_efficacy",
     "how many admissions were prevented by respizan in the trials?"),
    ("lack of efficacy: in another language",
     "glucorel wirkt nicht bei meiner Patientin, HbA1c unverändert", "lack_of_efficacy",
     "wie wirkt glucorel?"),
    ("pregnancy: written in German",
     "Patientin ist schwanger in der 9. Woche und nimmt velostatin", "pregnancy_exposure",
     "Gibt es Daten zu velostatin in der Schwangerschaft? (literature please)"),
    ("pregnancy: exposure reported from the newborn's side",
     "newborn on the unit is floppy, mum was taking cardiovex until delivery", "pregnancy_exposure",
     "can I speak to an MSL about cardiovex in pregnancy?"),
    ("pregnancy: an early positive test",
     "beta hcg positive today in a pt on glucorel, IVF cycle", "pregnancy_exposure",
     "is there a glucorel pregnancy registry?"),
    ("off-label: a condition by its shape",
     "we used respizan for her chronic rhinosinusitis, polyps smaller at 6 months", "off_label_outcome",
     "is respizan used for chronic rhinosinusitis anywhere?"),
    ("off-label: the indication said to be absent",
     "respizan in a man with no asthma at all, just sinus disease, sense of smell came back", "off_label_outcome",
     "does respizan help people with no asthma?"),
]


@pytest.mark.parametrize(("family", "report", "category", "near_miss"), FAMILIES, ids=[f[0] for f in FAMILIES])
def test_a_report_of_the_family_is_a_case_with_its_category(
    screen: RuleModelScreen, family: str, report: str, category: str, near_miss: str
) -> None:
    result = screen.screen(report)
    assert result.adverse_event and category in result.ae_categories, (family, result.ae_categories)


@pytest.mark.parametrize(("family", "report", "category", "near_miss"), FAMILIES, ids=[f[0] for f in FAMILIES])
def test_the_near_miss_of_the_family_opens_no_case(
    screen: RuleModelScreen, family: str, report: str, category: str, near_miss: str
) -> None:
    result = screen.screen(near_miss)
    assert not result.adverse_event, (family, result.ae_categories)


@pytest.mark.parametrize(("report", "category"), [
    ("respizan just is not working for my pt, three flares since christmas. is there a higher dose?",
     "lack_of_efficacy"),
    ("the glucorel pens from this box are printed with the wrong strength??", "quality_complaint"),
    ("someone at the clinic says friends snort crushed cardiovex at parties, any known cases?", "misuse"),
])
def test_a_special_situation_stated_before_a_question_is_a_report(
    screen: RuleModelScreen, report: str, category: str
) -> None:
    result = screen.screen(report)
    assert result.adverse_event and category in result.ae_categories, result.ae_categories


def test_an_fyi_is_not_a_question_even_when_it_says_someone_would_want_to_know(screen: RuleModelScreen) -> None:
    result = screen.screen("started cardiovex for a pt's essential tremor, it settled nicely. "
                           "thought you'd want to know")
    assert result.adverse_event and "off_label_outcome" in result.ae_categories
    assert result.off_label and "indication" in result.off_label_reasons


def test_not_sure_if_related_is_not_a_condition(screen: RuleModelScreen) -> None:
    result = screen.screen("baby born at 36 weeks with a cleft lip, mother was on velostatin up to week 20, "
                           "not sure if related")
    assert result.adverse_event and "pregnancy_exposure" in result.ae_categories


@pytest.mark.parametrize("text", [
    "hello - do you have overdose guidance for cardiovex? it is for our ED protocol",
    "respizan dosing interval for a pt with severe asthma, what does the label say",
    "considering glucorel for a pt with fatty liver and neuropathy, any studies?",
])
def test_questions_phrased_around_a_greeting_a_purpose_or_a_condition_are_questions(
    screen: RuleModelScreen, text: str
) -> None:
    assert not screen.screen(text).adverse_event, text


@pytest.mark.parametrize("text", [
    "please sign my patient up to the glucorel adherence programme",
    "feedback: the respizan nurse visit for my pt was excellent",
    "the website was down all morning, couldn't get the PI",
    "Suite 12, 40 King Street, Leeds LS1 2HL",
    "Dr Hana Stroke, Poisons Unit, City Hospital",
])
def test_service_asks_feedback_addresses_and_signatures_are_not_reports(screen: RuleModelScreen, text: str) -> None:
    assert not screen.screen(text).adverse_event, text


def test_a_symptom_given_as_a_literature_topic_is_the_topic() -> None:
    assert not rules.topic_has_report("biologics and eosinophilic pneumonia")
    assert rules.topic_has_report("my patient got eosinophilic pneumonia on respizan")


def test_a_service_ask_that_also_tells_of_an_event_is_still_a_report(screen: RuleModelScreen) -> None:
    result = screen.screen("please enrol my pt in the respizan support programme, she fainted after the last dose")
    assert result.adverse_event


def test_a_topic_answer_that_tells_of_a_patient_still_opens_a_case(screen: RuleModelScreen) -> None:
    topic = ScreenContext(asked="literature_topic")
    assert not screen.screen("respizan and eosinophilic pneumonia", context=topic).adverse_event
    assert screen.screen("my patient on respizan developed eosinophilic pneumonia", context=topic).adverse_event


@pytest.mark.parametrize(("text", "expected"), [
    ("hba1c 8.4 to 8.3 after four months", True),
    ("ldl 4.0 -> 4.6 on treatment", True),
    ("hba1c 9.0 to 7.1 after four months", False),
])
def test_a_marker_that_barely_fell_or_rose_is_no_improvement(text: str, expected: bool) -> None:
    assert rules.marker_not_improved(rules.normalise(text)) is expected


@pytest.mark.parametrize(("report", "category"), [
    ("porter got jabbed by a used respizan syringe?? does he need bloods", "occupational_exposure"),
    ("hi, quick one - infection after respizan in 3 pts, same batch, call me back", "infectious_transmission"),
    ("Dr Lee here, needle from a glucorel pen went into a colleague's hand", "occupational_exposure"),
    ("nurse asks whether she needs bloods after a needlestick from a respizan pen", "occupational_exposure"),
])
def test_the_wider_question_cues_never_veto_a_stated_special_situation(
    screen: RuleModelScreen, report: str, category: str
) -> None:
    result = screen.screen(report)
    assert result.adverse_event and category in result.ae_categories, result.ae_categories


@pytest.mark.parametrize("text", [
    "hi, what should a porter do if a respizan needle goes into his hand?",
    "is there abuse potential with cardiovex? a colleague asked",
    "the hotline kept me waiting 20 minutes",
])
def test_the_same_words_asked_in_general_stay_questions(screen: RuleModelScreen, text: str) -> None:
    assert not screen.screen(text).adverse_event, text
