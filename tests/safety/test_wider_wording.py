"""Special situations told without their names, answers to feedback questions, and the HCP-style
negatives the AE model learns from. Own wording throughout (regression tests, not a benchmark)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from api.rasa.actions import rate_answer, set_preference
from api.safety.classifier import FILE_WEIGHTS, TRAINING_FILES, RuleModelScreen
from api.safety.context import slot_for_prompt
from api.safety.screen import ScreenContext

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("text", "category"), [
    # a sign of infection and a product that looked wrong, a lot named, or a sepsis right after a dose
    ("the zelvamab syringe looked hazy and by the evening he had rigors and a temperature of 39.8",
     "infectious_transmission"),
    ("two of our patients febrile the day after their respizan, both from batch ending 7Q",
     "infectious_transmission"),
    ("bacteraemia within hours of her glucorel injection, no other source found", "infectious_transmission"),
    # the numbers did not move, exacerbations carried on
    ("her HbA1c didn't budge on glucorel, 71 in spring and 71 now, she never misses a dose", "lack_of_efficacy"),
    ("attacks have carried on just the same since he started respizan in the summer", "lack_of_efficacy"),
    # wrong person, no needle, instructions misread, injected again thinking it failed
    ("the chemist gave our patient a pack of cardiovex with another patient's name on it", "medication_error"),
    ("he had been pressing the glucorel pen without a needle on it for weeks", "medication_error"),
    ("she injected glucorel again on thursday because she thought the first one didn't go in", "medication_error"),
    # using it to cut weight, doubling it on his own, a partner using her pens, a forged script
    ("gym regular taking his wife's glucorel to cut for a competition, he isn't diabetic", "misuse"),
    ("he has been doubling his respizan dose himself because he thinks it gives him more energy", "misuse"),
    ("a prescription for glucorel had been altered from 2 pens to 12", "misuse"),
    # handlers exposed
    ("while I was crushing cardiovex for a resident the powder went in my eyes, they are stinging",
     "occupational_exposure"),
    ("our healthcare assistant got pricked by the glucorel needle while recapping it", "occupational_exposure"),
    # amounts taken at once, a child into the box
    ("he took all of his cardiovex at once after an argument, about 20 tablets, now in A&E", "overdose"),
    ("a 3 year old got into grandad's tablets, we think 4 cardiovex 40 are missing", "overdose"),
    ("she injected another full 2 mg glucorel the next morning by mistake and is vomiting", "overdose"),
    # pregnancy said without the word
    ("she miscarried at 9 weeks and had been on cardiovex until then", "pregnancy_exposure"),
    ("woman on respizan seen at booking today, she is now 14 weeks and stayed on it", "pregnancy_exposure"),
    # quality said without a defect word
    ("the pack label has a misprint, the strength on the carton is smudged and the barcode won't scan",
     "quality_complaint"),
    ("a different round pink tablet was in the cardiovex blister instead of the usual white one",
     "quality_complaint"),
])
def test_special_situations_told_without_their_names(screen: RuleModelScreen, text: str, category: str) -> None:
    result = screen.screen(text)
    assert result.adverse_event, text
    assert category in result.ae_categories, result.ae_categories


@pytest.mark.parametrize("text", [
    "if a child ate one of the cardiovex tablets would that need hospital? it's for our poisons leaflet",
    "what should happen if a nurse accidentally injected herself with glucorel, asking for our training slides",
    "she wasn't planning it but is there data on respizan in early pregnancy, asking in general",
])
def test_what_an_if_clause_tells_has_not_happened(screen: RuleModelScreen, text: str) -> None:
    assert not screen.screen(text).adverse_event, text


def test_a_pregnancy_that_was_not_planned_is_still_a_pregnancy(screen: RuleModelScreen) -> None:
    result = screen.screen("my patient on glucorel has a positive test this week, she wasn't planning a baby")
    assert result.adverse_event and "pregnancy_exposure" in result.ae_categories


def test_the_feedback_questions_are_known_to_the_screen() -> None:
    assert slot_for_prompt(rate_answer.ASK_REASON) == "rating_reason"
    assert slot_for_prompt("Some intro. " + set_preference.ASK) == "preference"


@pytest.mark.parametrize("text", [
    "missed the bit about hepatic impairment completely",
    "too generic, nothing about what to do when a dose is late",
    "fine but I wanted the US label not the UK one",
])
def test_an_answer_to_why_an_answer_fell_short_is_feedback(screen: RuleModelScreen, text: str) -> None:
    result = screen.screen(text, ScreenContext(asked="rating_reason"))
    assert not result.adverse_event and result.screened_as == "rating_reason"


def test_a_report_given_as_a_rating_reason_is_still_a_report(screen: RuleModelScreen) -> None:
    result = screen.screen("it did not mention the rash my patient developed after the second dose of cardiovex",
                           ScreenContext(asked="rating_reason"))
    assert result.adverse_event


def test_the_nlu_negatives_are_trained_on_and_up_to_date() -> None:
    assert "nlu_negatives.jsonl" in TRAINING_FILES and FILE_WEIGHTS["nlu_negatives.jsonl"] > 1
    done = subprocess.run([sys.executable, "scripts/build_safety_negatives.py", "--check"], cwd=REPO,
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


def test_the_negatives_hold_no_report_and_no_bare_detail() -> None:
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import build_safety_negatives as build
    finally:
        sys.path.remove(str(REPO / "scripts"))
    rows = build.negatives()
    assert len(rows) > 1000
    assert {r["intent"] for r in rows}.isdisjoint({"report_adverse_event", "inform"})
    from api.safety import rules
    assert not any(rules.has_event_evidence(rules.normalise(str(r["text"]))) for r in rows)
