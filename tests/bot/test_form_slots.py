"""Form slot cleaning (api.requests.slots): products only from products.yaml, numbers, addresses."""

from __future__ import annotations

import pytest

from api.requests import slots


@pytest.mark.parametrize(("typed", "key"), [
    ("Glucorel", "glucorel"),                    # the button / display name
    ("ferlaglutide please", "glucorel"),         # the generic name
    ("zelvamab", "respizan"),
    ("cardio-vex", "cardiovex"),                 # an alias
    ("respizzan", "respizan"),                   # a typo within the catalogue's tolerance
    ("the velostatn one", "cardiovex"),
])
def test_a_product_is_its_catalogue_key_whichever_name_is_typed(typed: str, key: str) -> None:
    assert slots.parse_product(typed) == key


@pytest.mark.parametrize("typed", [
    "3",                                     # a number is not a product
    "aspirin",                               # not one of ours
    "cardiovex or glucorel, not sure",       # two products: ask again rather than pick one
    "whichever you have",
    "",
])
def test_anything_else_is_not_a_product(typed: str) -> None:
    assert slots.parse_product(typed) is None


@pytest.mark.parametrize(("typed", "packs"), [
    ("5", 5),
    ("six boxes", 6),
    ("a couple please", 2),
    ("8 sample packs of glucorel", 8),
    ("x2", None),                 # no number of its own
    ("10 mg", None),              # a dose, not a count
    ("4 or 5", None),             # two counts: ambiguous
    ("some", None),
    ("22 Elm Grove", None),       # a house number
])
def test_a_quantity_is_a_whole_number_of_packs(typed: str, packs: int | None) -> None:
    assert slots.parse_quantity(typed) == packs


def test_a_count_is_read_from_a_message_that_was_not_an_answer_only_with_a_unit() -> None:
    assert slots.parse_quantity("respizan for 12 patients, 3 cartons", need_unit=True) == 3
    assert slots.parse_quantity("glucorel 2 mg", need_unit=True) is None
    assert slots.parse_quantity("I saw 40 patients today", need_unit=True) is None


def test_a_quantity_out_of_range_is_refused_by_clean() -> None:
    assert slots.clean("sample_quantity", "0") is None
    assert slots.clean("sample_quantity", str(slots.MAX_SAMPLE_PACKS + 5)) is None
    assert slots.clean("sample_quantity", "two") == 2
    assert slots.quantity_problem(slots.MAX_SAMPLE_PACKS + 5) is not None


@pytest.mark.parametrize(("typed", "kept"), [
    ("Riverside Surgery, 31 Canal Street, Manchester M1 3HE", "Riverside Surgery, 31 Canal Street, Manchester M1 3HE"),
    ("deliver to 8 Orchard Close, Bath BA2 4QP please.", "8 Orchard Close, Bath BA2 4QP please"),
    ("Lindenallee 14, 50968 Köln", "Lindenallee 14, 50968 Köln"),
    ("Northgate General Hospital, Carlisle", "Northgate General Hospital, Carlisle"),
])
def test_an_address_is_kept_in_the_hcps_words(typed: str, kept: str) -> None:
    assert slots.parse_address(typed) == kept


@pytest.mark.parametrize("typed", [
    "email me rather than texting, thanks",       # a preference, not a place
    "my practice",                                 # no way to deliver there
    "the usual one",
    "is there a limit on how many I can order?",   # a question
    "4",
    "drjones@example.org",
])
def test_text_that_is_not_an_address_is_refused(typed: str) -> None:
    assert slots.parse_address(typed) is None


def test_an_address_in_a_message_that_answered_something_else_needs_a_cue() -> None:
    said = "3 packs of cardiovex sent to 40 Mill Road, Ely CB7 4DZ"
    assert slots.parse_address(said, need_cue=True) == "40 Mill Road, Ely CB7 4DZ"
    assert slots.parse_address("40 Mill Road, Ely CB7 4DZ", need_cue=True) is None


def test_one_message_can_fill_every_samples_slot() -> None:
    found = slots.read_unprompted("could you ship 7 boxes of zelvamab to 2 Kings Parade, Cambridge CB2 1SJ",
                                  slots.FORMS["samples_form"].slots)
    assert found == {"product": "respizan", "sample_quantity": 7,
                     "delivery_address": "2 Kings Parade, Cambridge CB2 1SJ"}
    assert slots.read_unprompted("I need samples", slots.FORMS["samples_form"].slots) == {}


def test_free_text_slots_need_something_of_the_kind_asked() -> None:
    assert slots.clean("preferred_times", "thursdays after 2pm") == "thursdays after 2pm"
    assert slots.clean("preferred_times", "whenever my diary allows") is None
    assert slots.clean("new_contact_details", "new number is +44 20 7946 0321") == "new number is +44 20 7946 0321"
    assert slots.clean("new_contact_details", "it changed") is None
    assert slots.clean("literature_topic", "7") is None
    assert slots.clean("literature_topic", "long-term safety data") == "long-term safety data"


@pytest.mark.parametrize(("typed", "decision"), [
    ("Confirm", "confirm"), ("/affirm", "confirm"), ("yes, go ahead", "confirm"), ("looks right", "confirm"),
    ("Edit", "edit"), ("/deny", "edit"), ("no, the address is wrong", "edit"), ("hang on", None),
])
def test_an_answer_to_the_summary_is_confirm_edit_or_neither(typed: str, decision: str | None) -> None:
    assert slots.parse_confirmation(typed) == decision


def test_the_summary_names_the_product_and_every_value() -> None:
    text = slots.summary("samples_form", {"product": "glucorel", "sample_quantity": 1,
                                          "delivery_address": "8 Orchard Close, Bath"})
    assert "Glucorel (ferlaglutide)" in text and "1 pack\n" in text and "8 Orchard Close, Bath" in text
    assert "Confirm" in text and "Edit" in text


def test_a_pack_word_after_a_number_makes_it_a_count_even_before_a_street_word() -> None:
    # "dr" is also a street word (drive): "2 cartons to dr ..." is still two cartons
    assert slots.parse_quantity("2 cartons to dr ahmed please") == 2
    assert slots.parse_quantity("14 Birch Dr, Austin TX 78701") is None


def test_an_address_after_a_plain_to_is_read_only_when_it_has_an_address_shape() -> None:
    form = slots.FORMS["samples_form"].slots
    assert slots.read_unprompted("5 packs to 7 Orchard Row, Exeter EX1 1AA", form)["delivery_address"] == \
        "7 Orchard Row, Exeter EX1 1AA"
    assert "delivery_address" not in slots.read_unprompted("5 packs to the practice please", form)


@pytest.mark.parametrize(("said", "phrase"), [
    ("happy to meet any tuesday afternoon", "any tuesday afternoon"),
    ("MSL visit on 14 March at 2pm please", "14 March at 2pm"),
    ("I'd like to meet the rep", None),
])
def test_the_days_and_times_of_a_sentence(said: str, phrase: str | None) -> None:
    assert slots.time_phrase(said) == phrase
