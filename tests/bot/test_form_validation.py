"""validate_<form> and the summary step, run as Rasa calls them (trailing slot events = candidates)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.conversations.models import Conversation
from api.rasa.actions import REGISTRY
from api.rasa.actions.protocol import ActionContext, ActionResult
from api.requests.models import ServiceRequest
from api.settings import Settings
from feedback import service as feedback
from tests.bot.conftest import NOW, texts, tracker


def _validate(session: Session, settings: Settings, conv: Conversation, typed: str, *, form: str = "samples_form",
              requested: str | None, candidates: dict[str, Any] | None = None, slots: dict[str, Any] | None = None,
              intent: str = "inform", action: str | None = None) -> ActionResult:
    """Run ``validate_<form>`` (or ``action``) on a tracker shaped like Rasa's temporary form tracker."""
    t = tracker(typed, intent=intent, slots={**(slots or {}), **(candidates or {}), "requested_slot": requested})
    t["active_loop"] = {"name": form}
    t["events"] = [*t.get("events", [])[:1], {"event": "user", "text": typed},
                   {"event": "slot", "name": "requested_slot", "value": requested},
                   {"event": "action", "name": form},
                   *({"event": "slot", "name": k, "value": v} for k, v in (candidates or {}).items())]
    ctx = ActionContext(session=session, settings=settings, conversation=conv, tracker=t, now=NOW)
    result = REGISTRY[action or f"validate_{form}"](ctx)
    session.flush()
    return result


def _set(result: ActionResult) -> dict[str, Any]:
    return {e["name"]: e["value"] for e in result.events if e.get("event") == "slot"}


def test_activation_takes_every_value_the_request_already_states(session: Session, settings: Settings,
                                                                 conversation: Conversation) -> None:
    said = "can I have 6 packs of ferlaglutide sent to 14 Quay Street, Bristol BS1 4DB"
    result = _validate(session, settings, conversation, said, requested=None)
    assert _set(result) == {"request_confirmed": None, "product": "glucorel", "sample_quantity": 6,
                            "delivery_address": "14 Quay Street, Bristol BS1 4DB"}


def test_an_extracted_product_outside_the_catalogue_is_dropped(session: Session, settings: Settings,
                                                                conversation: Conversation) -> None:
    result = _validate(session, settings, conversation, "samples of zorbatin please", requested=None,
                       candidates={"product": "zorbatin"})
    assert _set(result)["product"] is None


def test_a_bare_number_is_not_taken_as_the_product(session: Session, settings: Settings,
                                                   conversation: Conversation) -> None:
    result = _validate(session, settings, conversation, "3", requested="product", candidates={"product": "3"})
    assert _set(result) == {"product": None}
    assert "Cardiovex, Respizan, Glucorel" in texts(result)[0]


def test_a_product_answer_also_fills_the_count_it_mentions(session: Session, settings: Settings,
                                                           conversation: Conversation) -> None:
    result = _validate(session, settings, conversation, "respizan, 2 boxes", requested="product",
                       candidates={"product": "respizan, 2 boxes"})
    assert _set(result) == {"product": "respizan", "sample_quantity": 2}


def test_a_quantity_answer_is_stored_as_a_number(session: Session, settings: Settings,
                                                 conversation: Conversation) -> None:
    result = _validate(session, settings, conversation, "nine please", requested="sample_quantity",
                       candidates={"sample_quantity": "nine please"}, slots={"product": "cardiovex"})
    assert _set(result) == {"sample_quantity": 9}
    too_many = _validate(session, settings, conversation, "500", requested="sample_quantity",
                         candidates={"sample_quantity": "500"}, slots={"product": "cardiovex"})
    assert _set(too_many) == {"sample_quantity": None} and "at most" in texts(too_many)[0]


def test_a_preference_given_instead_of_an_address_is_stored_and_the_address_asked_again(
        session: Session, settings: Settings, conversation: Conversation) -> None:
    typed = "actually, text me by SMS rather than WhatsApp from now on"
    result = _validate(session, settings, conversation, typed, requested="delivery_address",
                       candidates={"delivery_address": typed}, intent="set_preference",
                       slots={"product": "cardiovex", "sample_quantity": 2})
    assert _set(result) == {"delivery_address": None}            # not stored as an address
    assert feedback.profile(session, conversation) == {"channel": "sms"}
    assert "SMS instead of WhatsApp" in texts(result)[0]
    assert result.responses[0]["custom"]["buttons"][0]["payload"] == "/undo_preference"


def test_a_person_asked_for_mid_form_leaves_the_form_to_its_rules(session: Session, settings: Settings,
                                                                  conversation: Conversation) -> None:
    # request_human is excluded from the from_text mapping: nothing extracted, so nothing validated
    result = _validate(session, settings, conversation, "put me through to someone", requested="delivery_address",
                       intent="request_human", slots={"product": "cardiovex", "sample_quantity": 2})
    assert result.events == [] and result.responses == []


def test_the_summary_lists_the_request_with_confirm_and_edit(session: Session, settings: Settings,
                                                             conversation: Conversation) -> None:
    result = _validate(session, settings, conversation, "x", requested="request_confirmed",
                       action="action_ask_request_confirmed",
                       slots={"product": "respizan", "sample_quantity": 4, "delivery_address": "1 Dock Road, Hull"})
    body = result.responses[0]["custom"]
    assert "Respizan (zelvamab)" in body["text"] and "4 packs" in body["text"] and "1 Dock Road, Hull" in body["text"]
    assert [b["title"] for b in body["buttons"]] == ["Confirm", "Edit"]


def test_confirm_edit_and_a_typed_correction_at_the_summary(session: Session, settings: Settings,
                                                            conversation: Conversation) -> None:
    filled = {"product": "respizan", "sample_quantity": 4, "delivery_address": "1 Dock Road, Hull"}
    ok = _validate(session, settings, conversation, "/affirm", requested="request_confirmed", intent="affirm",
                   candidates={"request_confirmed": "/affirm"}, slots=filled)
    assert _set(ok) == {"request_confirmed": "yes"}
    edit = _validate(session, settings, conversation, "/deny", requested="request_confirmed", intent="deny",
                     candidates={"request_confirmed": "/deny"}, slots=filled)
    assert _set(edit) == {"request_confirmed": None, "product": None, "sample_quantity": None,
                          "delivery_address": None}
    fix = _validate(session, settings, conversation, "make it 6 packs", requested="request_confirmed",
                    candidates={"request_confirmed": "make it 6 packs"}, slots=filled)
    assert _set(fix) == {"request_confirmed": None, "sample_quantity": 6}


def test_no_request_exists_until_the_summary_is_confirmed(session: Session, settings: Settings,
                                                          conversation: Conversation) -> None:
    filled = {"product": "glucorel", "sample_quantity": 1, "delivery_address": "1 Dock Road, Hull"}
    _validate(session, settings, conversation, "x", requested=None, action="action_submit_samples", slots=filled)
    assert session.execute(select(ServiceRequest).where(ServiceRequest.conversation_id == conversation.id)).first() \
        is None
    _validate(session, settings, conversation, "x", requested=None, action="action_submit_samples",
              slots={**filled, "request_confirmed": "yes"})
    row = session.execute(select(ServiceRequest).where(ServiceRequest.conversation_id == conversation.id)).scalar_one()
    assert row.product == "glucorel" and row.details["sample_quantity"] == 1


def test_undo_puts_the_previous_preferences_back_once(session: Session, settings: Settings,
                                                      conversation: Conversation) -> None:
    feedback.set_preference(session, conversation, name="channel", value="whatsapp", message_id=None,
                            now=NOW, source="console")
    run = REGISTRY["action_set_preference"]
    ctx = ActionContext(session=session, settings=settings, conversation=conversation, now=NOW,
                        tracker=tracker("only Cardiovex news, and by email instead of WhatsApp",
                                        intent="set_preference", message_id=41))
    run(ctx)
    assert feedback.profile(session, conversation) == {"channel": "email", "topics": "cardiovex"}
    undo = ActionContext(session=session, settings=settings, conversation=conversation, now=NOW,
                         tracker=tracker("/undo_preference", intent="undo_preference", message_id=42))
    reply = texts(REGISTRY["action_undo_preference"](undo))[0]
    assert "Undone" in reply and "WhatsApp" in reply
    assert feedback.profile(session, conversation) == {"channel": "whatsapp"}
    history = feedback.history(session, conversation)
    assert [h.source for h in history] == ["console", "bot", "bot", "undo", "undo"]   # appended, never rewritten
    assert "no preference change to undo" in texts(REGISTRY["action_undo_preference"](undo))[0]


def test_the_product_a_request_names_wins_over_one_carried_over_from_an_earlier_message(
        session: Session, settings: Settings, conversation: Conversation) -> None:
    # An adverse-event report about one medicine left its product in the slot; the sample request that
    # follows names another, and the entity extractor missed it (no candidate for the slot).
    result = _validate(session, settings, conversation, "could you post me a few Respizan samples", requested=None,
                       slots={"product": "glucorel"})
    assert _set(result)["product"] == "respizan"
    kept = _validate(session, settings, conversation, "could you post me a few samples", requested=None,
                     slots={"product": "glucorel"})
    assert "product" not in _set(kept)      # nothing named: the earlier product stays, shown at the summary


def test_an_address_given_when_asked_for_the_product_is_kept_and_the_product_asked_again(
        session: Session, settings: Settings, conversation: Conversation) -> None:
    typed = "Dr Oyelaran, Westgate Surgery, 9 Tanner Lane, Norwich NR2 4HS"
    result = _validate(session, settings, conversation, typed, requested="product", candidates={"product": typed})
    assert _set(result) == {"product": None, "delivery_address": typed}
    assert texts(result) == ["Thanks, I've noted that (deliver to)."]


def test_a_count_and_an_address_in_one_answer_to_how_many(session: Session, settings: Settings,
                                                          conversation: Conversation) -> None:
    typed = "sure, 4 boxes to Dr Osei at Lakeside Practice, 31 Canal Dr, Madison WI 53703"
    result = _validate(session, settings, conversation, typed, requested="sample_quantity",
                       candidates={"sample_quantity": typed}, slots={"product": "glucorel"})
    assert _set(result) == {"sample_quantity": 4,
                            "delivery_address": "Dr Osei at Lakeside Practice, 31 Canal Dr, Madison WI 53703"}


def test_a_meeting_request_that_names_its_days_needs_no_question_about_them(
        session: Session, settings: Settings, conversation: Conversation) -> None:
    typed = "could the liaison visit us next thursday or friday morning to go through the respizan data"
    result = _validate(session, settings, conversation, typed, form="meeting_form", requested=None,
                       candidates={"meeting_with": "msl"})
    assert _set(result)["preferred_times"] == "next thursday or friday morning"


def test_a_contact_update_that_states_the_new_email_needs_no_question_about_it(
        session: Session, settings: Settings, conversation: Conversation) -> None:
    result = _validate(session, settings, conversation, "pls change my email to j.mwangi@northclinic.example",
                       form="contact_update_form", requested=None)
    assert _set(result)["new_contact_details"] == "j.mwangi@northclinic.example"
    nothing = _validate(session, settings, conversation, "I need to update my details", form="contact_update_form",
                        requested=None)
    assert "new_contact_details" not in _set(nothing)
