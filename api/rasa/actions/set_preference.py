"""action_set_preference: channel, language, best time, frequency, topics, opt-out — stored now."""

from __future__ import annotations

from api.rasa.actions.protocol import ActionContext, ActionResult, text
from api.safety import service as safety
from feedback import preference_parse
from feedback import service as feedback
from feedback.models import PreferenceName

NAME = "action_set_preference"

ASK = ("I can change how we keep in touch: channel, language, best time to reach you, how often we "
       "message you, or the topics you hear about. What would you like?")
ASK_BUTTONS = [
    {"title": "Once a month is enough", "payload": '/set_preference{"frequency": "monthly"}'},
    {"title": "Email instead", "payload": '/set_preference{"channel": "email"}'},
    {"title": "Mornings are best", "payload": '/set_preference{"best_time": "morning"}'},
]
DONE = "Done — I've updated your preferences ({changes}). You can change them at any time."
UNDO_BUTTON = {"title": "Undo", "payload": "/undo_preference"}
UNCHANGED = "That's already how your preferences are set ({changes})."


def _requested(ctx: ActionContext) -> tuple[dict[str, str], dict[str, str]]:
    """{name: value} wanted and {name: value turned down} ("email instead of WhatsApp")."""
    parsed = preference_parse.parse(ctx.latest_text)
    found = dict(parsed.values)
    for name in PreferenceName:
        value = ctx.entity(str(name))
        if value:
            found[str(name)] = value
    return found, dict(parsed.instead_of)


def run(ctx: ActionContext) -> ActionResult:
    wanted, instead_of = _requested(ctx)
    if not wanted:
        return ActionResult(responses=[text(ASK, ASK_BUTTONS)])
    changed = []
    for name, value in wanted.items():
        change = feedback.set_preference(ctx.session, ctx.conversation, name=name, value=value,
                                         message_id=ctx.message_id, now=ctx.now)
        if change is not None:
            changed.append(name)
        if name == PreferenceName.opt_out and change is not None:
            conv = ctx.conversation
            safety.record_consent(
                ctx.session, channel=conv.channel, address=conv.address or f"conversation:{conv.id}",
                hcp_id=conv.hcp_id, purpose=value if value in ("marketing", "service", "medical") else "marketing",
                action="opt_out", source="bot", message_id=ctx.message_id, now=ctx.now)
    described = ", ".join(feedback.describe(n, v, instead_of.get(n)) for n, v in wanted.items())
    reply = DONE if changed else UNCHANGED
    # Undo: offered for what this message changed; never for an opt-out (consenting again is explicit)
    undoable = [n for n in changed if n != PreferenceName.opt_out]
    buttons = [dict(UNDO_BUTTON)] if undoable else []
    return ActionResult(responses=[text(reply.format(changes=described), buttons, preferences=sorted(wanted))])
