"""Custom actions Rasa calls on the api. One module per action."""

from __future__ import annotations

from api.rasa.actions import (
    answer_question,
    ask_form_slot,
    ask_medical_information,
    check_verification,
    fallback,
    give_score,
    out_of_scope,
    rate_answer,
    rating_reason,
    record_comment,
    request_handoff,
    set_preference,
    submit_access,
    submit_contact_update,
    submit_literature,
    submit_meeting,
    submit_patient_support,
    submit_samples,
    submit_verification,
    undo_preference,
    validate_forms,
)
from api.rasa.actions.protocol import Action

REGISTRY: dict[str, Action] = {
    module.NAME: module.run
    for module in (
        answer_question, fallback, request_handoff, check_verification,
        ask_medical_information, give_score, out_of_scope, rate_answer, rating_reason, record_comment,
        set_preference, submit_access, submit_contact_update, submit_literature, submit_meeting,
        submit_patient_support, submit_samples, submit_verification, undo_preference,
    )
}
REGISTRY.update(ask_form_slot.ACTIONS)
REGISTRY.update(validate_forms.ACTIONS)
