"""validate_<form> for the six service-request forms, and the summary they end with.

Rasa's form calls ``validate_<form>`` (the FormValidationAction protocol: the tracker carries the slot
candidates extracted from the latest message as its trailing ``slot`` events; the answer is SlotSet
events, None for a value refused so the form asks again) on activation and after every answer. Here:

- every slot of the form is read from what the HCP already said (a product, "<n> packs", "send them
  to <address>"), not only the one asked for, and cleaned by ``api.requests.slots``;
- a value that is not one (a product not in products.yaml, "3" as a product, a sentence as an address)
  is refused with a hint, and the question is asked again;
- a preference ("by email instead") or a question in the middle of a form is handled as an
  interruption: it is stored / answered by its own action, and the form asks its question again;
- the last slot, ``request_confirmed``, is the summary with Confirm / Edit (``action_ask_request_confirmed``):
  no request is created before the HCP confirms; Edit starts the form again, a typed correction
  ("make it 5 packs") replaces that value and the summary is shown again.
"""

from __future__ import annotations

import re
from typing import Any

from api.rasa.actions import answer_question, set_preference, undo_preference
from api.rasa.actions.protocol import Action, ActionContext, ActionResult, slot_set, text
from api.requests import slots
from feedback import preference_parse

CONFIRM_BUTTONS = [{"title": "Confirm", "payload": "/affirm"}, {"title": "Edit", "payload": "/deny"}]
EDIT_AGAIN = "No problem, let's go through it again."
UPDATED = "Thanks, I've updated that."
NOTED = "Thanks, I've noted that"
PLEASE_CHOOSE = "Please choose Confirm to send the request, or Edit to change it."

_QUESTION_START = re.compile(r"^(?:what|how|why|when|which|who|where|is there|are there|does|do you|is it|can i|"
                             r"could i|should|will)\b")


def looks_like_question(text: str) -> bool:
    low = " ".join(text.lower().split())
    return len(low.split()) >= 3 and (low.endswith("?") or bool(_QUESTION_START.match(low)))


def slot_candidates(tracker: dict[str, Any]) -> dict[str, Any]:
    """The slots extracted from the latest message: the ``slot`` events at the end of the tracker."""
    found: dict[str, Any] = {}
    for event in reversed(tracker.get("events") or []):
        if event.get("event") != "slot":
            break
        found.setdefault(str(event.get("name")), event.get("value"))
    return found


def _interruption(ctx: ActionContext, *, strict: bool) -> ActionResult | None:
    """A preference, an undo or (for a slot with a shape) a question: handled by its own action."""
    intent = ctx.latest_intent
    typed = ctx.latest_text
    if intent == "undo_preference":
        return undo_preference.run(ctx)
    if preference_parse.parse(typed).values and (intent == "set_preference" or strict):
        return set_preference.run(ctx)
    if strict and (intent == "ask_question" or looks_like_question(typed)) and not typed.startswith("/"):
        return answer_question.run(ctx)
    return None


def _hint(slot: str, typed: str) -> str:
    if slot == "sample_quantity":
        n = slots.parse_quantity(typed)
        if n is not None and slots.quantity_problem(n):
            return str(slots.quantity_problem(n))
    if slot == "product":
        names = ", ".join(p.display_name for p in slots.catalogue().products)
        return f"{slots.HINTS['product']} Please choose one of: {names}."
    return slots.HINTS.get(slot, slots.GENERIC_HINT)


def validate(ctx: ActionContext, form: str) -> ActionResult:
    spec = slots.FORMS[form]
    requested = ctx.slot("requested_slot")
    typed = ctx.latest_text.strip()
    candidates = slot_candidates(ctx.tracker)
    cat = slots.catalogue()
    out: dict[str, Any] = {}
    result = ActionResult()

    if requested == slots.CONFIRM_SLOT:
        if slots.CONFIRM_SLOT not in candidates:
            return result    # nothing extracted (a person or an adverse event): the form's rules take over
        decision = slots.parse_confirmation(typed)
        if decision is None and len(typed.split()) <= 4:
            decision = {"affirm": "confirm", "deny": "edit"}.get(ctx.latest_intent or "")
        corrections = _corrections(typed, spec.slots) if decision != "confirm" else {}
        out[slots.CONFIRM_SLOT] = None
        if decision == "confirm":
            out[slots.CONFIRM_SLOT] = slots.CONFIRMED
        elif corrections:
            out.update(corrections)
            result.responses.append(text(UPDATED))
        elif decision == "edit":
            out.update({name: None for name in spec.slots})
            result.responses.append(text(EDIT_AGAIN))
        else:
            handled = _interruption(ctx, strict=True)
            if handled is not None:
                result.responses.extend(handled.responses)
                result.events.extend(handled.events)
            else:
                result.responses.append(text(PLEASE_CHOOSE))
        result.events.extend(slot_set(k, v) for k, v in out.items())
        return result

    if requested is None:
        # activation: never carry a confirmation over from an abandoned form
        out[slots.CONFIRM_SLOT] = None
    # slots extracted without being asked (the product entity, values carried over): clean or drop
    for name, value in candidates.items():
        if name in spec.slots and name != requested:
            out[name] = slots.clean(name, value, cat)
    if requested is None and typed and not typed.startswith("/"):
        # activation: what the request itself names wins over a value carried over from an earlier turn
        # (the product of an adverse-event report or of a question about another medicine)
        out.update(slots.read_unprompted(typed, spec.slots, cat))
    current = {name: out.get(name, ctx.slot(name)) for name in spec.slots}

    if requested in spec.slots:
        if requested not in candidates:
            # nothing taken from this message for the slot asked (a request for a person, an adverse
            # event): no events at all, so the form rejects and its rules take over
            return ActionResult(events=[slot_set(k, v) for k, v in out.items() if k in candidates])
        strict = requested in slots.STRICT_SLOTS
        value = slots.clean(requested, typed, cat)
        if value is None and candidates.get(requested) != typed:
            value = slots.clean(requested, candidates.get(requested), cat)
        interrupt_first = (strict and looks_like_question(typed)) or (
            not strict and ctx.latest_intent in ("set_preference", "undo_preference")
            and _interruption_is_likely(ctx))
        if value is not None and not interrupt_first:
            out[requested] = value
        else:
            out[requested] = None
            handled = _interruption(ctx, strict=strict)
            if handled is not None:
                result.responses.extend(handled.responses)
                result.events.extend(handled.events)
            else:
                # Not an answer to this question: it may answer another of the form's ("Harbor Clinic,
                # 12 Main St …" when asked for the product). Keep that, say so, and ask this one again.
                others = [n for n in spec.slots if n != requested and current.get(n) is None]
                bare = slots.read_unprompted(typed, others, cat, bare=True) if typed and not typed.startswith("/") \
                    else {}
                if bare:
                    out.update(bare)
                    noted = ", ".join(slots.LABELS.get(n, n).lower() for n in bare)
                    result.responses.append(text(f"{NOTED} ({noted})."))
                else:
                    result.responses.append(text(_hint(requested, typed)))
        current[requested] = out[requested]

    # anything else the message states for the form's other empty slots
    empty = [name for name in spec.slots if name != requested and current.get(name) is None]
    if typed and not typed.startswith("/"):
        out.update(slots.read_unprompted(typed, empty, cat))
    result.events.extend(slot_set(k, v) for k, v in out.items())
    return result


def _interruption_is_likely(ctx: ActionContext) -> bool:
    return ctx.latest_intent == "undo_preference" or bool(preference_parse.parse(ctx.latest_text).values)


def _corrections(typed: str, form_slots: tuple[str, ...]) -> dict[str, Any]:
    """At the summary: values the message states for the form's slots ("make it 5 packs", a new address)."""
    found = slots.read_unprompted(typed, form_slots, slots.catalogue())
    if "sample_quantity" in form_slots and "sample_quantity" not in found:
        n = slots.parse_quantity(typed)
        if n is not None and slots.quantity_problem(n) is None and re.search(r"\b(make it|quantity|packs?|boxes)\b",
                                                                             typed.lower()):
            found["sample_quantity"] = n
    if "delivery_address" in form_slots and "delivery_address" not in found:
        address = slots.parse_address(typed)
        if address:
            found["delivery_address"] = address
    return found


def ask_confirmation(ctx: ActionContext) -> ActionResult:
    """action_ask_request_confirmed: the summary of the active form with Confirm / Edit."""
    form = str((ctx.tracker.get("active_loop") or {}).get("name") or "")
    if form not in slots.FORMS:
        form = next((f for f, spec in slots.FORMS.items() if all(ctx.slot(s) for s in spec.slots)), "samples_form")
    values = {name: ctx.slot(name) for name in slots.FORMS[form].slots}
    return ActionResult(responses=[text(slots.summary(form, values), list(CONFIRM_BUTTONS),
                                         asks=slots.CONFIRM_SLOT)])


def _make(form: str) -> Action:
    def run(ctx: ActionContext) -> ActionResult:
        return validate(ctx, form)

    return run


ACTIONS: dict[str, Action] = {f"validate_{form}": _make(form) for form in slots.FORMS}
ACTIONS["action_ask_request_confirmed"] = ask_confirmation
