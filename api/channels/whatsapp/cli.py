"""``concierge whatsapp …``: the WhatsApp dead-letter and held queue from the command line.

    concierge whatsapp undeliverable [--status dead|held]   # one JSON line per message
    concierge whatsapp requeue MESSAGE_ID [--actor STAFF_ID]
"""

from __future__ import annotations

import argparse
import json

from api.cli import open_sessions
from api.clock import utcnow
from api.db import unit_of_work
from api.errors import ConciergeError
from api.settings import Settings


def cmd_undeliverable(args: argparse.Namespace) -> int:
    from api.channels.whatsapp import service as wa
    from api.conversations.models import Message

    factory = open_sessions(Settings())
    statuses = (args.status,) if args.status else ("dead", "held")
    with factory() as session:
        for item in wa.list_undeliverable(session, statuses=statuses):
            msg = session.get(Message, item.message_id)
            print(json.dumps({"message_id": item.message_id, "conversation_id": item.conversation_id,
                              "status": item.status, "attempts": item.attempts, "reason": item.last_error,
                              "queued_at": item.created_at.isoformat(),
                              "chars": len(msg.body) if msg is not None else None}))
    return 0


def cmd_requeue(args: argparse.Namespace) -> int:
    from api.channels.whatsapp import service as wa

    factory = open_sessions(Settings())
    try:
        with unit_of_work(factory) as session:
            wa.requeue(session, args.message_id, now=utcnow(), actor_id=args.actor)
    except ConciergeError as exc:
        print(f"error: {exc.message}")
        return 1
    print(f"message {args.message_id} re-queued")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    wa = sub.add_parser("whatsapp", help="WhatsApp channel").add_subparsers(dest="whatsapp_command", required=True)
    p = wa.add_parser("undeliverable", help="list dead-lettered and held WhatsApp messages")
    p.add_argument("--status", choices=("dead", "held"), default=None)
    p.set_defaults(func=cmd_undeliverable)
    p = wa.add_parser("requeue", help="send a dead or held message again (all checks re-run)")
    p.add_argument("message_id", type=int)
    p.add_argument("--actor", default=None, help="staff id recorded in the audit log")
    p.set_defaults(func=cmd_requeue)
