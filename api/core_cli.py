"""Core subcommands: run, serve, worker, db upgrade, bot train, audit verify."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from typing import Any

from api.cli import int_at_least
from api.settings import Settings


def _settings() -> Settings:
    return Settings()


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from api.db import make_engine
    from api.migrate import upgrade

    settings = _settings()
    if settings.is_sqlite:
        settings.var_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.database_url)
    upgrade(engine)
    engine.dispose()
    print(f"database at heads: {engine.url.render_as_string(hide_password=True)}")
    return 0


def cmd_bot_train(args: argparse.Namespace) -> int:
    from api.rasa.process import ensure_model

    path = ensure_model(_settings())
    print(path)
    return 0


def cmd_bot_hash(args: argparse.Namespace) -> int:
    from api.rasa.process import model_hash

    print(model_hash())
    return 0


# `concierge audit verify` exit codes: scripts (and monitoring) tell "tampered" from "could not look".
EXIT_INTACT, EXIT_TAMPERED, EXIT_CONFIG, EXIT_DB_BUSY = 0, 1, 2, 3


def cmd_audit_verify(args: argparse.Namespace) -> int:
    from api.audit import checkpoint
    from api.audit.service import configure_from, verify
    from api.db import is_transient, make_engine, make_session_factory

    settings = _settings()
    key = configure_from(settings)
    directory = args.checkpoints or settings.resolved_audit_checkpoint_dir
    try:
        latest = checkpoint.latest(directory, key)
    except checkpoint.CheckpointTampered as exc:
        print(f"audit checkpoint TAMPERED: {exc}", file=sys.stderr)
        return EXIT_TAMPERED
    engine = make_engine(settings.database_url)
    try:
        with make_session_factory(engine)() as session:
            result = verify(session, key)
            anchor = checkpoint.check(session, latest[0]) if latest is not None and result.ok else None
    except Exception as exc:
        if not is_transient(exc):
            raise
        print(f"audit chain NOT CHECKED: the database is busy or unreachable ({type(exc).__name__}); "
              "nothing is concluded about the chain, try again", file=sys.stderr)
        return EXIT_DB_BUSY
    finally:
        engine.dispose()
    if not result.ok:
        where = f" at seq {result.first_bad_seq}" if result.first_bad_seq is not None else ""
        print(f"audit chain BROKEN{where}: {result.reason} ({result.checked} events verified before it)",
              file=sys.stderr)
        return EXIT_TAMPERED
    if anchor is not None:
        print(f"audit chain BROKEN: {anchor}", file=sys.stderr)
        return EXIT_TAMPERED
    against = (f"; matches checkpoint {latest[1].name} (seq {latest[0].seq})" if latest is not None
               else f"; no checkpoint in {directory} yet (run `concierge audit checkpoint`)")
    legacy = f", {result.unkeyed} of them from before the chain was keyed" if result.unkeyed else ""
    print(f"audit chain intact: {result.checked} events{legacy}{against}")
    return EXIT_INTACT


def cmd_audit_checkpoint(args: argparse.Namespace) -> int:
    from api.audit import checkpoint
    from api.audit.service import configure_from, verify
    from api.clock import utcnow
    from api.db import make_engine, make_session_factory

    settings = _settings()
    key = configure_from(settings)
    directory = args.dir or settings.resolved_audit_checkpoint_dir
    engine = make_engine(settings.database_url)
    try:
        with make_session_factory(engine)() as session:
            result = verify(session, key)
            if not result.ok:  # never sign a chain that does not verify
                print(f"not checkpointed: the chain is broken ({result.reason})", file=sys.stderr)
                return EXIT_TAMPERED
            path = checkpoint.write(session, key, directory, utcnow())
    finally:
        engine.dispose()
    print(f"checkpoint written: {path}" if path else f"nothing new to checkpoint (head {result.head_seq})")
    return EXIT_INTACT


def _load_demo_content(settings: Settings) -> None:
    """Load the shipped demo library if the database has none yet."""
    from api.db import make_engine, make_session_factory, unit_of_work
    from knowledge.service import list_items, load_library

    engine = make_engine(settings.database_url)
    try:
        with unit_of_work(make_session_factory(engine)) as session:
            if not list_items(session) and settings.library_path.exists():
                report = load_library(session, settings.library_path, actor="make-run")
                print(f"loaded demo library {settings.library_path}: {report.items} items, "
                      f"{report.products} products")
    finally:
        engine.dispose()


def cmd_serve(args: argparse.Namespace) -> int:
    """The api process alone (Rasa runs elsewhere)."""
    import uvicorn

    from api.app import create_app

    settings = _settings()
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="info",
                    proxy_headers=False)  # X-Forwarded-For: only from CONCIERGE_TRUSTED_PROXIES (api.net)
    return 0


def cmd_front(args: argparse.Namespace) -> int:
    """The round-robin front alone (docker-compose's public port): api.front."""
    import asyncio
    import contextlib
    import logging

    from api.front import parse_backend, serve

    try:
        host, port = parse_backend(args.listen)
        backends = [parse_backend(b) for b in args.backend]
    except ValueError as exc:
        print(f"concierge front: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        await serve(host, port, backends, stop)

    asyncio.run(main())
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    """Ingest and process WhatsApp webhooks after the ack, and send the replies (api/worker_process.py)."""
    from api.worker_process import main

    return main(_settings())


def cmd_run(args: argparse.Namespace) -> int:
    """The whole product on this machine: migrations, demo content, Rasa, api, WhatsApp worker (several of
    each with --api-processes / --rasa-replicas / --workers: api.launcher)."""
    import uvicorn

    from api import launcher
    from api.app import create_app
    from api.rasa import process

    settings = _settings()
    if args.no_rasa and args.rasa_replicas:
        print("concierge run: --no-rasa and --rasa-replicas contradict each other (--rasa-replicas 0 is --no-rasa)",
              file=sys.stderr)
        return launcher.EXIT_USAGE
    rasa_replicas = 0 if args.no_rasa else (1 if args.rasa_replicas is None else args.rasa_replicas)
    scaled = launcher.is_scaled(args.api_processes, rasa_replicas, args.workers)
    plan = None
    if scaled:
        try:  # before anything starts or changes
            plan = launcher.plan(settings, api_processes=args.api_processes, rasa_replicas=rasa_replicas,
                                 api_port_base=args.api_port_base, workers=args.workers,
                                 sandbox=bool(args.whatsapp_sandbox or settings.whatsapp_sandbox))
        except launcher.LaunchError as exc:
            print(f"concierge run: {exc}", file=sys.stderr)
            return launcher.EXIT_USAGE
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    cmd_db_upgrade(args)
    demo_logins = None
    if not args.no_demo_data:
        _load_demo_content(settings)
        from api.demo.cli import seed_database

        # A populated CX dashboard on first start: fictional HCPs, only while the database has none.
        seed_database(settings, hcps=200, days=90, seed=1, only_if_empty=True, themes="minilm")
        from api.staff.demo import ensure_demo_staff

        demo_logins = ensure_demo_staff(settings)
    sandbox = None
    if args.whatsapp_sandbox or settings.whatsapp_sandbox:
        from api.channels.whatsapp.sandbox import PhoneSandbox, loopback_url

        sandbox = PhoneSandbox(webhook_base=loopback_url(settings.host, settings.port),
                               public_url=settings.public_url)
        try:
            sandbox.start(port=settings.whatsapp_sandbox_port)
        except RuntimeError as exc:
            print(f"{exc} (set CONCIERGE_WHATSAPP_SANDBOX_PORT, 0 for any free port)", file=sys.stderr)
            return 2
        # The api talks to the sandbox exactly as to Twilio; real Twilio settings are not used.
        settings = sandbox.configure(settings)
    # Acks in the api, everything after them in a worker process at lower CPU priority.
    settings = settings.model_copy(update={"whatsapp_worker": "process"})
    if plan is not None:
        from api.audit.service import configure_from

        configure_from(settings)  # the audit key file exists before N processes look for it
        model = process.ensure_model(settings) if plan.rasa_replicas else None

        def _stop_scaled(*_: Any) -> None:
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, _stop_scaled)
        return launcher.run_scaled(settings, plan, model=model, demo_logins=demo_logins, sandbox=sandbox)
    supervisor = None
    if rasa_replicas:
        from api.rasa.supervisor import PortTaken, RasaSupervisor

        model = process.ensure_model(settings)
        rasa_port = int(settings.rasa_url.rsplit(":", 1)[-1].split("/")[0])
        log_file = settings.var_dir / "log" / "rasa.log"
        log_file.parent.mkdir(parents=True, exist_ok=True)
        supervisor = RasaSupervisor(
            lambda: process.start_rasa(settings, model, port=rasa_port,
                                       action_url=f"http://127.0.0.1:{settings.port}/rasa/webhook",
                                       log_file=log_file),
            url=settings.rasa_url, token=settings.rasa_token, pidfile=settings.var_dir / "rasa.pid")
        try:
            supervisor.start()
        except PortTaken as exc:
            print(f"Cannot start Rasa: {exc}", file=sys.stderr)
            if sandbox is not None:
                sandbox.stop()
            return 2
        print(f"Rasa starting on {settings.rasa_url} (model {model.name}, log {log_file}; restarted if it dies)")

    def _stop(*_: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)
    base = f"http://{settings.host}:{settings.port}"
    print("\n  HCP Concierge")
    print(f"  web chat      {base}/")
    print(f"  consoles      {base}/console" + (f"   (demo logins: {demo_logins})" if demo_logins else ""))
    print(f"  health        {base}/healthz   readiness {base}/readyz")
    print(f"  api docs      {base}/docs")
    if sandbox is not None:
        print(f"  whatsapp      {sandbox.url}/   (sandbox: a simulated phone over a fake Twilio, no account)")
    print("  Ctrl-C stops everything.\n")
    from api import worker_process

    worker = worker_process.start(settings)
    print(f"WhatsApp worker started (pid {worker.pid}, nice +{settings.worker_nice})")
    try:
        if supervisor is not None:
            if supervisor.wait_ready(420):
                print("Rasa ready.")
            else:
                print("Rasa is not ready yet; the api answers with its fallback until it is.", file=sys.stderr)
        uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="info",
                    proxy_headers=False)  # X-Forwarded-For: only from CONCIERGE_TRUSTED_PROXIES (api.net)
    except KeyboardInterrupt:
        pass
    finally:
        worker.terminate()
        worker.join(timeout=30)
        print("WhatsApp worker stopped.")
        if supervisor is not None:
            supervisor.stop()
            print("Rasa stopped.")
        if sandbox is not None:
            sandbox.stop()
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("run", help="start the whole product (api + rasa)")
    p.add_argument("--no-rasa", action="store_true", help="do not start Rasa (it runs elsewhere)")
    p.add_argument("--api-processes", type=int_at_least(1), default=1, metavar="N",
                   help="api processes behind a round-robin front on the public port (N > 1 needs PostgreSQL "
                        "and Redis: CONCIERGE_DATABASE_URL, CONCIERGE_REDIS_URL)")
    p.add_argument("--rasa-replicas", type=int_at_least(0), default=None, metavar="M",
                   help="Rasa replicas sharing a SQL tracker store (PostgreSQL) and a Redis lock store (M > 1 "
                        "needs both; 0: like --no-rasa); default 1")
    p.add_argument("--workers", type=int_at_least(1), default=1, metavar="K",
                   help="WhatsApp worker processes (K > 1 needs PostgreSQL and Redis, like N or M > 1); default 1")
    p.add_argument("--api-port-base", type=int_at_least(1), default=None, metavar="PORT",
                   help="with several api processes: the first one's port, the others follow "
                        "(default CONCIERGE_PORT + 10)")
    p.add_argument("--no-demo-data", action="store_true",
                   help="do not load the demo library, fictional HCPs or demo staff accounts")
    p.add_argument("--whatsapp-sandbox", action="store_true",
                   help="also serve the WhatsApp sandbox: a simulated phone over a fake Twilio on loopback "
                        "(same as CONCIERGE_WHATSAPP_SANDBOX=1)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("serve", help="start the api process only")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("front", help="round-robin TCP front for several api processes (one per connection)")
    p.add_argument("--listen", default="0.0.0.0:8000", metavar="HOST:PORT",
                   help="where to listen (default %(default)s)")
    p.add_argument("--backend", action="append", required=True, metavar="HOST:PORT",
                   help="an api process; repeat for several, or a host name that resolves to all of them")
    p.set_defaults(func=cmd_front)

    p = sub.add_parser("worker", help="ingest and process WhatsApp webhooks after the ack, send the replies "
                                      "(beside `serve` with CONCIERGE_WHATSAPP_WORKER=process)")
    p.set_defaults(func=cmd_worker)

    db = sub.add_parser("db", help="database").add_subparsers(dest="db_command", required=True)
    p = db.add_parser("upgrade", help="apply migrations")
    p.set_defaults(func=cmd_db_upgrade)

    bot = sub.add_parser("bot", help="the Rasa project").add_subparsers(dest="bot_command", required=True)
    p = bot.add_parser("train", help="train (or reuse the cached) model; prints its path")
    p.set_defaults(func=cmd_bot_train)
    p = bot.add_parser("hash", help="print the hash of the training sources")
    p.set_defaults(func=cmd_bot_hash)

    audit = sub.add_parser("audit", help="the audit log").add_subparsers(dest="audit_command", required=True)
    p = audit.add_parser("verify", help="check the keyed hash chain and the latest signed checkpoint; exit 0 "
                                        "intact, 1 tampered, 3 database busy or unreachable (nothing concluded)")
    p.add_argument("--checkpoints", type=Path, default=None,
                   help="directory of checkpoints (default CONCIERGE_AUDIT_CHECKPOINT_DIR)")
    p.set_defaults(func=cmd_audit_verify)
    p = audit.add_parser("checkpoint", help="write a signed checkpoint of the chain head (for write-once storage)")
    p.add_argument("--dir", type=Path, default=None, help="where (default CONCIERGE_AUDIT_CHECKPOINT_DIR)")
    p.set_defaults(func=cmd_audit_checkpoint)


