"""The screen's behaviour on HCP language: reports caught, general questions not, keywords."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from api.safety import classifier
from api.safety.classifier import RuleModelScreen, load_or_train, load_training_rows, train
from api.safety.rules import normalise

AE_REPORTS = [
    "my patient developed a rash after the second dose",
    "pt on cardiovex c/o muscle pain",
    "she took 3x the dose by mistake",
    "pregnant while on glucorel",
    "my patient has side effects",
    "Patient reports vomiting every day since starting Glucorel",
    "67 yo F on velostatin, CK elevated and weakness in the legs",
    "respizan isn't working for my patient, still two exacerbations a month",
    "he was hospitalised with pancreatitis after his third glucorel injection",
]
NOT_AE = [
    "what are the side effects of cardiovex?",
    "What are the common side effects of Glucorel?",
    "does respizan cause headaches?",
    "is muscle pain a known adverse reaction of velostatin?",
    "can I get some samples of cardiovex",
    "hello",
    "thanks a lot",
    "how should glucorel pens be stored?",
    "what is the recommended dose of cardiovex",
]


@pytest.mark.parametrize("text", AE_REPORTS)
def test_hcp_adverse_event_reports_are_flagged(screen: RuleModelScreen, text: str) -> None:
    result = screen.screen(text)
    assert result.adverse_event, text
    assert result.route == "safety"
    assert result.ae_categories


@pytest.mark.parametrize("text", NOT_AE)
def test_general_questions_service_requests_and_greetings_are_not_adverse_events(
    screen: RuleModelScreen, text: str
) -> None:
    assert not screen.screen(text).adverse_event, text


def test_quality_complaint_is_its_own_category(screen: RuleModelScreen) -> None:
    result = screen.screen("the pen was cracked when it arrived")
    assert result.adverse_event
    assert result.ae_categories == ("quality_complaint",)
    assert result.is_quality_complaint_only


@pytest.mark.parametrize(
    ("text", "category"),
    [
        ("she took 3x the dose by mistake", "overdose"),
        ("pregnant while on glucorel", "pregnancy_exposure"),
        ("my patient's LDL is still high on cardiovex after 3 months", "lack_of_efficacy"),
        ("my patient has been misusing glucorel to lose weight", "misuse"),
        ("pt on cardiovex c/o muscle pain", "side_effect"),
    ],
)
def test_adverse_event_categories_are_detected(screen: RuleModelScreen, text: str, category: str) -> None:
    assert category in screen.screen(text).ae_categories


def test_obvious_seriousness_words_mark_the_report_serious(screen: RuleModelScreen) -> None:
    serious = screen.screen("my patient was hospitalised with rhabdomyolysis on cardiovex")
    assert serious.adverse_event and serious.serious
    assert "hospitalised" in serious.serious_terms
    assert not screen.screen("pt on cardiovex c/o mild muscle pain").serious


@pytest.mark.parametrize(
    "text", ["STOP", "stop", "Unsubscribe", "please don't message me again", "stop messaging me", "opt out"]
)
def test_opt_out_keywords_and_phrases_are_detected(screen: RuleModelScreen, text: str) -> None:
    result = screen.screen(text)
    assert result.opt_out
    assert not result.adverse_event


@pytest.mark.parametrize("text", [
    "can you stop sending me these whatsapps",
    "pls quit texting, actually no: stop texting me",
    "I really don't want to hear from you again",
    "kindly take me off your mailing list",
    "remove my number please",
    "we no longer want to receive messages from halcyon",
    "I'd like to opt out of marketing",
    "no more notifications thx",
    "cancel all the whatsapps",
    "bitte keine Werbung mehr",
    "just leave me alone",
])
def test_an_opt_out_in_everyday_words_is_an_opt_out(screen: RuleModelScreen, text: str) -> None:
    result = screen.screen(text)
    assert result.opt_out, text
    assert not result.adverse_event


@pytest.mark.parametrize("text", [
    "I had to stop cardiovex because of the rash", "when should I stop glucorel?",
    "please stop sending samples to the old address", "could the rep stop contacting my practice nurse",
    "how do I stop the respizan pen leaking", "please remove my patient from the copay programme",
])
def test_the_word_stop_inside_a_sentence_is_not_an_opt_out(screen: RuleModelScreen, text: str) -> None:
    assert not screen.screen(text).opt_out


def test_start_and_help_keywords_are_detected(screen: RuleModelScreen) -> None:
    assert screen.screen("START").opt_in
    assert screen.screen("help").help
    assert not screen.screen("I need help with my patient's rash on cardiovex").help


def test_rep_requests_route_to_the_rep(screen: RuleModelScreen) -> None:
    assert screen.screen("could you send me some cardiovex samples").route == "rep"
    assert screen.screen("I'd like to book a meeting with my rep").route == "rep"


def test_products_are_recognised_by_brand_and_generic_name(screen: RuleModelScreen) -> None:
    assert screen.screen("pt on velostatin c/o muscle pain").products == ("cardiovex",)


def test_empty_message_is_clear(screen: RuleModelScreen) -> None:
    result = screen.screen("   ")
    assert not result.adverse_event and result.route == "bot"


def test_trained_artifact_is_reused_not_retrained(screen: RuleModelScreen, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_training(*_a: object, **_k: object) -> None:
        raise AssertionError("trained again although a cached artifact exists")

    monkeypatch.setattr(classifier, "train", no_training)
    model = load_or_train(screen.model_dir)
    assert model.fingerprint == screen.model.fingerprint
    assert model.threshold == screen.model.threshold


def test_training_is_deterministic(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(classifier.HYPER, "folds", 2)  # same code path, fewer fits
    rows = load_training_rows()
    subset = [r for r in rows if r.weight > 1.0] + rows[:150]
    first = train(subset, "fp")
    second = train(subset, "fp")
    assert first.threshold == second.threshold
    assert pickle.dumps(first.parts) == pickle.dumps(second.parts)
    text = normalise("pt on cardiovex c/o muscle pain")
    assert first.score(text) == second.score(text)


def test_recall_first_threshold_catches_the_target_share_of_training_reports(screen: RuleModelScreen) -> None:
    meta = screen.model.meta
    assert meta["oof_recall"] >= classifier.TARGET_RECALL - 0.005
    assert 0.0 < screen.model.threshold < 0.5


def test_cancel_is_left_to_the_dialogue_not_read_as_an_opt_out(screen: RuleModelScreen) -> None:
    # "cancel" ends a form in the bot; only STOP-style words and explicit phrases unsubscribe.
    assert not screen.screen("cancel").opt_out


def test_a_samples_request_from_a_patient_context_still_goes_to_the_rep(screen: RuleModelScreen) -> None:
    result = screen.screen("my patient wants samples")
    assert not result.adverse_event and result.route == "rep"


def test_build_screen_is_shared_and_loads_once_across_threads(screen: RuleModelScreen) -> None:
    import threading

    from api.safety.classifier import build_screen
    from tests.safety.conftest import MODEL_DIR, PRODUCTS_FIXTURE

    seen: list[RuleModelScreen] = []
    lock = threading.Lock()

    def work() -> None:
        s = build_screen(MODEL_DIR, PRODUCTS_FIXTURE)
        s.screen("pt on cardiovex c/o muscle pain")
        with lock:
            seen.append(s)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(s is screen for s in seen)
    assert all(s.model is screen.model for s in seen)


def test_an_unreadable_cached_artifact_is_retrained_and_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fingerprint = classifier.training_fingerprint()
    artifact = tmp_path / f"{classifier.ARTIFACT_PREFIX}{fingerprint[:20]}.pkl"
    artifact.write_bytes(b"not a pickle")
    stale = tmp_path / f"{classifier.ARTIFACT_PREFIX}00000000000000000000.pkl"
    stale.write_bytes(b"old")
    calls: list[str] = []

    def fake_train(rows: list[classifier.TrainingRow], fp: str) -> classifier.AeModel:
        calls.append(fp)
        return classifier.AeModel(parts=[], intercept=0.0, threshold=0.5, fingerprint=fp)

    monkeypatch.setattr(classifier, "train", fake_train)
    model = load_or_train(tmp_path)
    assert calls == [fingerprint]
    assert model.fingerprint == fingerprint
    assert sorted(p.name for p in tmp_path.iterdir()) == [artifact.name]
    assert load_or_train(tmp_path).fingerprint == fingerprint and calls == [fingerprint]


@pytest.mark.parametrize("text", ["3 boxes", "3 packs", "12 Harley Street, London W1", "United Kingdom",
                                  "Dr Ada Jones", "GB-1234567", "tuesday mornings"])
def test_short_form_answers_are_not_adverse_events(screen: RuleModelScreen, text: str) -> None:
    assert not screen.screen(text).adverse_event


@pytest.mark.parametrize("text", ["rash", "headache", "dizzy since dose 2", "I gained 20 pounds", "hair loss"])
def test_short_reports_that_name_an_event_are_still_adverse_events(screen: RuleModelScreen, text: str) -> None:
    assert screen.screen(text).adverse_event
