"""Off-label signals against the products file (fixture in the knowledge package's schema)."""

from __future__ import annotations

import pytest

from api.safety.classifier import RuleModelScreen
from api.safety.products import Catalogue, off_label_reasons
from api.safety.rules import normalise


def reasons(catalogue: Catalogue, text: str) -> tuple[str, ...]:
    norm = normalise(text)
    return off_label_reasons(norm, catalogue.mentioned(norm))


def test_products_file_is_parsed_with_populations_and_max_dose(catalogue: Catalogue) -> None:
    by_key = {p.key: p for p in catalogue.products}
    assert by_key["cardiovex"].min_age == 18
    assert by_key["respizan"].min_age == 12
    assert by_key["cardiovex"].max_daily_dose_mg == 40
    assert "velostatin" in by_key["cardiovex"].names


@pytest.mark.parametrize(
    "text",
    [
        "can I prescribe cardiovex to a 10 year old with familial hypercholesterolaemia?",
        "is glucorel ok for children?",
        "what dose of cardiovex for a teenager",
    ],
)
def test_paediatric_use_of_an_adults_only_product_is_off_label(catalogue: Catalogue, text: str) -> None:
    assert "population" in reasons(catalogue, text)


def test_adolescent_use_of_a_twelve_plus_product_is_on_label(catalogue: Catalogue) -> None:
    assert "population" not in reasons(catalogue, "can respizan be used in a 14 year old with severe asthma?")
    assert "population" in reasons(catalogue, "can respizan be used in an 8 year old?")


@pytest.mark.parametrize(
    "text",
    [
        "can I use glucorel for weight loss in non-diabetic patients?",
        "does respizan work for COPD?",
        "I'd like to prescribe cardiovex for migraine",
        "is glucorel effective in type 1 diabetes?",
    ],
)
def test_unapproved_indication_is_off_label(catalogue: Catalogue, text: str) -> None:
    assert "indication" in reasons(catalogue, text)


@pytest.mark.parametrize(
    "text",
    [
        "what is the dose of cardiovex for primary hypercholesterolaemia?",
        "is glucorel approved for type 2 diabetes?",
        "how do I use respizan for severe eosinophilic asthma",
        "can cardiovex be used for high cholesterol",
    ],
)
def test_approved_indication_is_on_label(catalogue: Catalogue, text: str) -> None:
    assert "indication" not in reasons(catalogue, text)


def test_dose_above_the_maximum_daily_dose_is_off_label(catalogue: Catalogue) -> None:
    assert "dose" in reasons(catalogue, "can I give cardiovex 80 mg daily?")
    assert "dose" in reasons(catalogue, "cardiovex 40mg twice daily for a resistant patient?")
    assert "dose" not in reasons(catalogue, "cardiovex 20 mg once daily")


def test_dose_above_a_weekly_or_four_weekly_maximum_is_off_label(catalogue: Catalogue) -> None:
    assert "dose" in reasons(catalogue, "glucorel 4 mg weekly for a resistant patient?")
    assert "dose" in reasons(catalogue, "glucorel 1.5 mg twice a week?")
    assert "dose" not in reasons(catalogue, "glucorel 1 mg once weekly")
    assert "dose" in reasons(catalogue, "respizan 200 mg every 4 weeks")


def test_lab_multiples_are_not_read_as_a_dosing_frequency(catalogue: Catalogue) -> None:
    assert "dose" not in reasons(catalogue, "started cardiovex 20mg 2 weeks ago, now ALT 3x ULN")


def test_pregnancy_use_of_a_product_not_approved_in_pregnancy_is_off_label(catalogue: Catalogue) -> None:
    assert "population" in reasons(catalogue, "can glucorel be used in pregnancy?")


def test_off_label_question_routes_to_medical(screen: RuleModelScreen) -> None:
    result = screen.screen("can I use glucorel for weight loss in non-diabetic patients?")
    assert result.off_label and not result.adverse_event
    assert result.route == "medical"
    assert result.products == ("glucorel",)


def test_explicit_off_label_wording_is_flagged_without_a_product(screen: RuleModelScreen) -> None:
    assert screen.screen("any data on off-label use in heart failure?").off_label


def test_on_label_question_stays_with_the_bot(screen: RuleModelScreen) -> None:
    result = screen.screen("what is the starting dose of cardiovex for primary hypercholesterolaemia?")
    assert not result.off_label and result.route == "bot"


def test_an_adverse_event_outranks_off_label_in_routing(screen: RuleModelScreen) -> None:
    result = screen.screen("my 9 year old patient on cardiovex developed a rash")
    assert result.adverse_event and result.off_label
    assert result.route == "safety"


@pytest.mark.parametrize(
    "text",
    [
        "cardiovex dosing in patients with advanced kidney disease",
        "starting cardiovex in my copd patient whose cholesterol is 8",
        "any interaction between respizan and the inhaled steroids of a lupus patient?",
        "a type 1 diabetic with severe eosinophilic asthma, can she have respizan?",
        "glucorel for my dialysis patient with type 2 diabetes, what dose?",
    ],
)
def test_a_condition_the_patient_has_outside_the_products_area_is_a_comorbidity(catalogue: Catalogue,
                                                                                  text: str) -> None:
    assert "indication" not in reasons(catalogue, text)


@pytest.mark.parametrize(
    "text",
    [
        "thinking of respizan for my copd patient with frequent flares",
        "one of our type 1 diabetics wants to try glucorel",
        "respizan in patients with chronic rhinosinusitis",
        "glucorel in patients with obesity and normal sugars",
    ],
)
def test_a_condition_in_the_products_own_area_is_still_off_label(catalogue: Catalogue, text: str) -> None:
    assert "indication" in reasons(catalogue, text)
