"""The scale-out scenario with real processes, shared by ``benchmarks/scale_out.py`` and
``tests/e2e/test_scale_out_scenario.py``.

``Product`` starts ``concierge run --api-processes N --rasa-replicas M --workers K --no-demo-data`` on a
fresh PostgreSQL database (and a fresh Rasa tracker database) with Twilio pointed at a fake served
here. ``drive`` plays the HCPs: each conversation follows its own ``Script`` —

- on the **web chat** (``POST /api/webchat/sessions/<id>/messages``) or on **WhatsApp** (a webhook
  signed as Twilio signs it; the number belongs to a verified HCP, so no verification intake), every
  message to a randomly chosen api process, straight to its port, so consecutive messages of one
  conversation land on different processes; a message a process does not take (killed: connection
  refused, 5xx) is sent again to another one with the same ``client_message_id`` / ``MessageSid``;
- small talk, and in a share of the conversations a **samples form** over several messages (product,
  quantity, delivery address, summary, confirm) and an **adverse-event report** (a patient on one of
  the demo products developed a symptom; its wording is made up here). The form is answered as an HCP
  answers it: reading the bot's question — after a fallback (its Rasa replica died, its lease holder
  was killed) the HCP says the last answer again in other words;
- each message waits for its replies before the next one (web chat: in the response, or from the
  database when the response says ``pending``; WhatsApp: until the replies are stored and sent).

``kill=True`` SIGKILLs ``api-1`` and (M > 1) ``rasa-1`` once a third of the messages are answered
and forms are in progress; the launcher's supervisor restarts them.

``check`` then reads the database, Rasa's SQL tracker store and the fake Twilio: messages lost,
duplicated, reordered; turns Rasa saw twice; every form started has its request with the slots given;
every adverse-event message has a safety case linked to it with day 0 set; every WhatsApp reply went
through Twilio exactly once; and after a kill, how long until everything stored before it was processed.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from api import scratch_db  # noqa: E402
from api.channels.webchat.router import client_message_key  # noqa: E402
from api.channels.whatsapp.fake_twilio import (  # noqa: E402
    ACCOUNT_SID,
    AUTH_TOKEN,
    WHATSAPP_FROM,
    FakeTwilio,
    TwilioSigner,
)
from api.conversations.copy import RASA_FALLBACK  # noqa: E402
from api.threaded_server import ThreadedServer  # noqa: E402
from benchmarks._stack import free_port  # noqa: E402

PUBLIC_URL = "https://concierge.example.com"
INBOUND = "/webhooks/twilio/whatsapp"

# Small talk (numbered per message, so every text of a conversation is its own).
SMALL_TALK = ["hello", "thanks", "are you a bot?", "good morning", "ok", "thank you very much", "hi there",
              "cheers", "tell me a joke", "what's the weather tomorrow"]
# Adverse events, in words of our own: {p} is a demo product.
AE_TEMPLATES = [
    "One of my patients started {p} last month and has since developed a persistent dry cough and swollen ankles.",
    "A 62-year-old man I treat on {p} came in yesterday with a widespread itchy rash after his second week.",
    "My patient taking {p} fainted at home on Sunday and was found to have a very low blood sugar.",
    "Reporting for a patient of mine: after starting {p} she developed severe dizziness and fell twice.",
]
PRODUCTS = ["Glucorel", "Cardiovex", "Respizan"]
PLACES = [("Riverside Medical Centre", "12 Quay Street", "Bristol BS1 4QA"),
          ("Hillview Surgery", "3 Orchard Road", "York YO1 7HH"),
          ("Northgate Health Centre", "45 Castle Way", "Chester CH1 2LA"),
          ("Meadowbank Practice", "8 Station Road", "Derby DE1 2RR")]
NUMBER_WORDS = {2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 8: "eight"}

# What the bot's replies say about the samples form.
ASKS = {
    "product": ("Which product is this about?", "I can only take one of our products"),
    "quantity": ("How many sample packs", "Please give the number of packs"),
    "address": ("Where should we deliver", "doesn't look like a delivery address"),
    "confirm": ("Please check your sample request", "Please choose Confirm"),
    "done": ("sample request is recorded (reference SR-",),
}


def form_state(replies: list[str]) -> str | None:
    """What the form asks now, from this turn's replies (the last that says), or None (a fallback, small talk)."""
    found = None
    for body in replies:
        for state, marks in ASKS.items():
            if any(m in body for m in marks):
                found = state
    return found


# -- databases ---------------------------------------------------------------------------------------

def admin_url(pg: str, database: str) -> str:
    return make_url(pg).set(database=database).render_as_string(hide_password=False)



# -- the fake Twilio, served here --------------------------------------------------------------------

class FakeTwilioServer(ThreadedServer):
    def __init__(self) -> None:
        self.twilio = FakeTwilio()
        super().__init__(self.twilio.app(), port=free_port(), name="fake-twilio", label="the fake Twilio")


# -- the product -------------------------------------------------------------------------------------

class Product:
    """``concierge run`` with N api processes, M Rasa replicas and K workers on fresh databases."""

    def __init__(self, pg: str, redis: str, api: int, rasa: int, tmp: Path, *, workers: int = 1,
                 twilio_url: str = "", model_dir: Path | None = None,
                 extra_env: dict[str, str] | None = None) -> None:
        tag = uuid.uuid4().hex[:8]
        # The product's database is made at start (api.scratch_db); Rasa's tracker database by the launcher.
        self.pg, self._database_url, self.tracker_db = pg, "", f"rasa_scale_{tag}"
        self.api, self.rasa, self.workers = api, rasa, workers
        self.var = tmp / tag
        self.port = free_port()
        # consecutive ports from these bases (the launcher refuses a clash before starting anything)
        self.api_base = 20000 + random.randrange(0, 2000) * 5
        self.rasa_port = 30000 + random.randrange(0, 2000) * 5
        self.redis = redis
        self.twilio_url = twilio_url
        # The safety screen's model: trained once, shared by every process (and by runs that pass it).
        self.model_dir = model_dir or tmp / "models"
        self.extra_env = extra_env or {}
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def scaled(self) -> bool:
        return self.api > 1 or self.rasa > 1 or self.workers > 1

    @property
    def api_urls(self) -> list[str]:
        if not self.scaled:  # the plain `concierge run`: one api process on the public port
            return [self.front]
        return [f"http://127.0.0.1:{self.api_base + i}" for i in range(self.api)]

    @property
    def front(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def database_url(self) -> str:
        if not self._database_url:
            raise RuntimeError("the product has not been started: it has no database yet")
        return self._database_url

    def start(self, timeout: float = 900) -> None:
        self._database_url = scratch_db.create_database(self.pg, "concierge_scale")
        self.var.mkdir(parents=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("CONCIERGE_")}
        env.update({
            "CONCIERGE_DATABASE_URL": self.database_url, "CONCIERGE_REDIS_URL": self.redis,
            "CONCIERGE_VAR_DIR": str(self.var), "CONCIERGE_PORT": str(self.port), "CONCIERGE_HOST": "127.0.0.1",
            "CONCIERGE_RASA_URL": f"http://127.0.0.1:{self.rasa_port}", "CONCIERGE_RASA_TRACKER_DB": self.tracker_db,
            "CONCIERGE_RATE_LIMITS": "false", "CONCIERGE_PUBLIC_URL": PUBLIC_URL,
            "CONCIERGE_SLA_SWEEP_INTERVAL_S": "0", "CONCIERGE_CX_ROLLUP_INTERVAL_S": "0",
            "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONPATH": str(REPO),
        })
        self.model_dir.mkdir(parents=True, exist_ok=True)
        env["CONCIERGE_MODEL_DIR"] = str(self.model_dir)
        from api.safety.classifier import load_or_train

        load_or_train(self.model_dir)  # here, once, rather than in every process at once
        if self.twilio_url:
            env.update({"CONCIERGE_TWILIO_API_URL": self.twilio_url, "CONCIERGE_TWILIO_ACCOUNT_SID": ACCOUNT_SID,
                        "CONCIERGE_TWILIO_AUTH_TOKEN": AUTH_TOKEN, "CONCIERGE_TWILIO_WHATSAPP_FROM": WHATSAPP_FROM})
        env.update(self.extra_env)
        self.log = open(self.var / "run.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "api.cli", "run", "--api-processes", str(self.api), "--rasa-replicas",
             str(self.rasa), "--workers", str(self.workers), "--api-port-base", str(self.api_base),
             "--no-demo-data"],
            env=env, cwd=REPO, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"concierge run exited {self.proc.returncode}; see {self.var / 'run.log'}:\n"
                                   + self.tail())
            try:
                if all(httpx.get(f"{u}/readyz", timeout=2).status_code == 200 for u in self.api_urls):
                    return
            except httpx.HTTPError:
                pass
            time.sleep(1)
        raise RuntimeError(f"not ready in {timeout:.0f} s; see {self.var / 'run.log'}:\n" + self.tail())

    def tail(self, chars: int = 3000) -> str:
        try:
            return (self.var / "run.log").read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def problems(self, lines: int = 60) -> str:
        """The warnings and errors the processes logged (var/log/*.log), the last ``lines`` of each."""
        out = []
        for log in sorted((self.var / "log").glob("*.log")):
            found = [x for x in log.read_text(errors="replace").splitlines()
                     if " WARNING " in x or " ERROR " in x or "Traceback" in x or "took over" in x]
            if found:
                out.append(f"--- {log.name}: {len(found)} lines\n" + "\n".join(found[-lines:]))
        return "\n".join(out) + "\n--- run.log\n" + self.tail()

    def pid(self, name: str) -> int | None:
        try:
            return int((self.var / f"{name}.pid").read_text().split()[0])
        except (OSError, ValueError):
            return None

    def stop(self, drop: bool = True) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
        if drop:
            for url in (self._database_url, admin_url(self.pg, self.tracker_db)):
                if not url:
                    continue
                try:
                    scratch_db.drop_database(url)
                except Exception as exc:
                    print(f"  (could not drop {make_url(url).database}: {exc})")


# -- what each HCP does ------------------------------------------------------------------------------

@dataclass
class FormPlan:
    product: str
    quantity: int
    place: tuple[str, str, str]

    @property
    def address(self) -> str:
        return ", ".join(self.place)

    def texts(self, state: str, times: int) -> str:
        """The HCP's words for what the form asks, the ``times``-th time it asks it (each one different)."""
        p, q, a = self.product, self.quantity, self.address
        options = {
            "start": [f"Could I get some {p} samples for the practice please", f"I'd like to order {p} sample packs",
                      f"Please send me {p} samples", f"I need {p} samples for my clinic",
                      f"Can I have some {p} samples", f"{p} samples please", f"Samples of {p} please",
                      f"I want to request {p} samples"],
            "product": [p, f"{p} please", f"it's {p}", f"{p}, thanks", f"{p} it is", f"the {p} one",
                        f"{p} again", f"I meant {p}"],
            "quantity": [f"{q} packs", f"{NUMBER_WORDS[q]} packs please", f"{q} packs, thanks",
                         f"I'd like {q} packs", f"{q} packs please", f"{NUMBER_WORDS[q]} packs",
                         f"{q} boxes", f"I'll take {q} packs"],
            "address": [a, f"Please deliver to {a}", f"Deliver to {a}", f"Send them to {a}",
                        f"The address is {a}", f"Address: {a}", f"Please ship them to {a}", f"Post them to {a}"],
            "confirm": ["Yes, confirm", "Confirm please", "yes that's right", "Go ahead", "yes please send it",
                        "Confirm", "looks good", "ok go ahead"],
            # The summary shows something else than the HCP gave: a typed correction.
            "fix_product": [f"Change the product to {p}", f"The product should be {p}", f"Wrong product, it is {p}",
                            f"No, {p} please"],
            "fix_quantity": [f"Make it {q} packs", f"Change the quantity to {q} packs", f"No, {q} packs please",
                             f"The quantity should be {q} packs"],
            "fix_address": [f"Change the address to {a}", f"The address should be {a}", f"No, deliver to {a}",
                            f"Wrong address, send them to {a}"],
        }[state]
        return options[times % len(options)] + ("" if times < len(options) else f" ({times})")

    def wrong_in(self, summary: str) -> str | None:
        """The first value the summary shows differently from what the HCP gave (its fix_ state), or None."""
        if f"Product: {self.product}" not in summary:
            return "fix_product"
        if f"Quantity: {self.quantity} pack" not in summary:
            return "fix_quantity"
        if f"Deliver to: {self.address}" not in summary:
            return "fix_address"
        return None


@dataclass
class Script:
    index: int
    channel: str  # web | whatsapp
    messages: int
    form: FormPlan | None = None
    form_at: int = 0  # the form starts after this many small-talk messages
    ae_text: str | None = None
    ae_at: int = 0  # ... and the adverse event after this many


def scripts(conversations: int, messages: int, seed: int = 16) -> list[Script]:
    """Half on WhatsApp; a samples form in half of each channel's conversations; an AE in every third."""
    rng = random.Random(seed)
    out = []
    for i in range(conversations):
        channel = "whatsapp" if i % 2 else "web"
        script = Script(i, channel, messages)
        small_talk = messages
        if (i // 2) % 2 == 0 and messages >= 5:
            script.form = FormPlan(rng.choice(PRODUCTS), rng.choice(sorted(NUMBER_WORDS)), rng.choice(PLACES))
            small_talk -= 4
        if i % 3 == 0 and small_talk >= 1:
            script.ae_text = rng.choice(AE_TEMPLATES).format(p=rng.choice(PRODUCTS))
            small_talk -= 1
            script.ae_at = rng.randint(0, small_talk)
        script.form_at = rng.randint(0, small_talk)
        out.append(script)
    return out


@dataclass
class Sent:
    """One conversation as the client saw it."""

    script: Script
    conversation_id: str | None = None
    address: str | None = None  # WhatsApp number
    texts: list[str] = field(default_factory=list)
    form_started: bool = False
    form_seen_done: bool = False
    corrections: list[str] = field(default_factory=list)  # values the HCP had to correct at the summary
    unanswered: int = 0  # a message whose replies did not come within the wait


@dataclass
class Load:
    label: str
    turns: int = 0
    wall_s: float = 0.0
    latencies: list[float] = field(default_factory=list)
    fallbacks: int = 0
    retries: int = 0
    sent: list[Sent] = field(default_factory=list)
    killed: list[str] = field(default_factory=list)
    killed_at: datetime | None = None
    forms_in_progress_at_kill: int = 0


class Driver:
    def __init__(self, product: Product, twilio: FakeTwilio | None, load: Load, *, reply_wait_s: float = 180,
                 seed: int = 16) -> None:
        self.product = product
        self.twilio = twilio
        self.load = load
        self.signer = TwilioSigner(PUBLIC_URL)
        self.rng = random.Random(seed)
        self.reply_wait_s = reply_wait_s
        self.engine = create_engine(product.database_url, pool_size=20, max_overflow=10)
        self.in_form: set[int] = set()

    def close(self) -> None:
        self.engine.dispose()

    # -- sending -------------------------------------------------------------------------------------
    async def _post(self, client: httpx.AsyncClient, path: str, **kwargs: Any) -> httpx.Response:
        """To a random api process; on a transport error or a 5xx, again (same id) to another one."""
        deadline = time.monotonic() + 180
        urls = self.product.api_urls
        url = self.rng.choice(urls)
        while True:
            try:
                r = await client.post(url + path, **kwargs)
                if r.status_code < 500:
                    r.raise_for_status()
                    return r
            except httpx.TransportError:
                pass
            self.load.retries += 1
            if time.monotonic() > deadline:
                raise RuntimeError(f"POST {path} not accepted by any api process in 180 s")
            await asyncio.sleep(0.5)
            url = self.rng.choice([u for u in urls if u != url] or urls)

    def _replies_of(self, key: str, channel: str) -> list[str] | None:
        """The replies to the message stored under ``key`` once its turn is done and (WhatsApp) they
        were handed to Twilio; None while not."""
        with self.engine.connect() as conn:
            row = conn.execute(text(
                "SELECT m.id, i.status FROM message m JOIN inbox i ON i.message_id = m.id "
                "WHERE m.channel = :ch AND m.channel_message_id = :k"), {"ch": channel, "k": key}).first()
            if row is None or row[1] == "pending":
                return None
            replies = conn.execute(text(
                "SELECT body, status FROM message WHERE in_reply_to = :m AND direction = 'out' ORDER BY id"),
                {"m": row[0]}).all()
        if channel == "whatsapp" and any(r[1] == "queued" for r in replies):
            return None
        return [r[0] for r in replies]

    async def _wait_replies(self, key: str, channel: str) -> list[str] | None:
        deadline = time.monotonic() + self.reply_wait_s
        while time.monotonic() < deadline:
            found = await asyncio.to_thread(self._replies_of, key, channel)
            if found is not None:
                return found
            await asyncio.sleep(0.2)
        return None

    async def _say(self, client: httpx.AsyncClient, sent: Sent, body: str, session: str | None) -> list[str]:
        n = len(sent.texts)
        sent.texts.append(body)
        started = time.perf_counter()
        replies: list[str] | None
        if sent.script.channel == "web":
            assert session is not None and sent.conversation_id is not None
            cmid = f"m{n}"
            r = await self._post(client, f"/api/webchat/sessions/{session}/messages",
                                 json={"text": body, "client_message_id": cmid})
            got = r.json()
            replies = [str(m["text"]) for m in got.get("messages") or []]
            if got.get("pending") or not replies:  # the turn outlasted the wait (a takeover): from the database
                replies = await self._wait_replies(client_message_key(sent.conversation_id, cmid), "webchat")
        else:
            assert sent.address is not None
            sid = self.signer.next_sid()
            req = self.signer.request(INBOUND, self.signer.inbound(sent.address, body, sid=sid))
            await self._post(client, req.path_and_query, content=req.body, headers=req.headers)
            replies = await self._wait_replies(sid, "whatsapp")
        self.load.latencies.append((time.perf_counter() - started) * 1000)
        self.load.turns += 1
        if replies is None:
            sent.unanswered += 1
            return []
        if any(RASA_FALLBACK in b for b in replies):
            self.load.fallbacks += 1
        return replies

    # -- one conversation ----------------------------------------------------------------------------
    async def conversation(self, client: httpx.AsyncClient, script: Script, sem: asyncio.Semaphore) -> None:
        async with sem:
            sent = Sent(script)
            self.load.sent.append(sent)
            session = None
            if script.channel == "web":
                r = await self._post(client, "/api/webchat/sessions")
                data = r.json()
                session = str(data["session_id"])
                sent.conversation_id = str(data["stream_url"]).rstrip("/").rsplit("/", 1)[-1]
            else:
                sent.address = f"whatsapp:+4477{uuid.uuid4().int % 10**8:08d}"
                await asyncio.to_thread(bind_verified_hcp, self.engine, sent.address)
            chat = iter(itertools.cycle(SMALL_TALK))
            small = script.messages - (4 if script.form else 0) - (1 if script.ae_text else 0)
            for k in range(small + 1):
                if script.ae_text and k == script.ae_at:
                    await self._say(client, sent, script.ae_text, session)
                if script.form and k == script.form_at:
                    await self._form(client, sent, script.form, session)
                if k < small:
                    await self._say(client, sent, f"{next(chat)} ({len(sent.texts) + 1})", session)

    async def _form(self, client: httpx.AsyncClient, sent: Sent, form: FormPlan, session: str | None) -> None:
        """Answer what the bot asks until the request is recorded (at most 14 messages)."""
        sent.form_started = True
        self.in_form.add(sent.script.index)
        asked: dict[str, int] = {}
        state = "start"
        try:
            for _ in range(14):
                times = asked.get(state, 0)
                asked[state] = times + 1
                replies = await self._say(client, sent, form.texts(state, times), session)
                now = form_state(replies)
                if now == "done":
                    sent.form_seen_done = True
                    return
                if now is None:  # a fallback: the same answer again, in other words, a moment later
                    await asyncio.sleep(1.0)
                elif now == "confirm" and (summary := next((b for b in replies if ASKS["confirm"][0] in b), None)) \
                        and (wrong := form.wrong_in(summary)) is not None:
                    # A careful HCP reads the summary before confirming.
                    sent.corrections.append(f"{wrong.removeprefix('fix_')} in: {summary!r}")
                    state = wrong
                else:
                    state = now
        finally:
            self.in_form.discard(sent.script.index)

    # -- the run -------------------------------------------------------------------------------------
    async def run(self, plan: list[Script], concurrency: int, kill: bool) -> None:
        sem = asyncio.Semaphore(concurrency)
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=0)  # a new connection each time
        started = time.perf_counter()
        async with httpx.AsyncClient(timeout=60, limits=limits) as client:
            tasks = [asyncio.create_task(self.conversation(client, s, sem)) for s in plan]
            if kill:
                await self._kill_when_due(plan, tasks)
            await asyncio.gather(*tasks)
        self.load.wall_s = time.perf_counter() - started

    async def _kill_when_due(self, plan: list[Script], tasks: list[asyncio.Task[None]]) -> None:
        total = sum(s.messages for s in plan)
        while self.load.turns < total // 3 and not all(t.done() for t in tasks):
            await asyncio.sleep(0.1)
        waited = time.monotonic()  # a moment more for forms in progress (up to 20 s)
        while len(self.in_form) < 2 and time.monotonic() - waited < 20 and not all(t.done() for t in tasks):
            await asyncio.sleep(0.1)
        self.load.forms_in_progress_at_kill = len(self.in_form)
        self.load.killed_at = datetime.now(UTC)
        victims = ["api-1"] + (["rasa-1"] if self.product.rasa > 1 else [])
        for name in victims:
            pid = self.product.pid(name)
            if pid is not None:
                try:
                    os.kill(pid, signal.SIGKILL)
                    self.load.killed.append(f"{name} (pid {pid}) after {self.load.turns} turns")
                except ProcessLookupError:
                    pass


def bind_verified_hcp(engine: Engine, address: str) -> None:
    """The number belongs to a verified HCP (what verification leaves behind)."""
    from sqlalchemy.orm import Session

    from api.hcps.models import ChannelIdentity, Hcp, VerificationStatus

    now = datetime.now(UTC)
    with Session(engine) as s, s.begin():
        hcp = Hcp(name=f"Dr Scale {address[-7:]}", specialty="general practice", licence_id=f"GMC{address[-7:]}",
                  country="GB", verification_status=VerificationStatus.verified, created_at=now)
        s.add(hcp)
        s.flush()
        s.add(ChannelIdentity(channel="whatsapp", address=address, hcp_id=hcp.id, created_at=now))


# -- the checks --------------------------------------------------------------------------------------

@dataclass
class Findings:
    lost: int = 0
    duplicated: int = 0
    reordered: int = 0
    turns_twice: int = 0
    tracker_checked: bool = False
    turns_rerun: int = 0  # inbox rows that took more than one attempt (a takeover after a kill)
    forms_started: int = 0
    forms_completed: int = 0  # the request row exists with every slot the HCP gave
    forms_seen_done: int = 0  # ... and the HCP saw the confirmation
    summaries_corrected: list[str] = field(default_factory=list)  # a summary showed another value than given
    ae_reports: int = 0
    ae_cases: int = 0  # an adverse-event case linked to the report's message, day 0 set
    wa_replies: int = 0
    wa_sent_twice: int = 0  # a Twilio message no stored part accounts for
    wa_unsent: int = 0  # a stored reply with no Twilio message
    unanswered: int = 0
    recovered_s: float | None = None  # after a kill: everything stored before it processed by then
    problems: list[str] = field(default_factory=list)  # what a failed form or AE check found

    @property
    def bad(self) -> int:
        return (self.lost + self.duplicated + self.reordered + (self.forms_started - self.forms_completed)
                + (self.ae_reports - self.ae_cases) + self.wa_sent_twice + self.wa_unsent)


def wait_settled(engine: Engine, settle_s: float = 180) -> None:
    deadline = time.monotonic() + settle_s
    with engine.connect() as conn:
        while time.monotonic() < deadline:
            pending = conn.execute(text(
                "SELECT (SELECT count(*) FROM inbox WHERE status = 'pending') + "
                "(SELECT count(*) FROM whatsapp_inbound WHERE status = 'pending') + "
                "(SELECT count(*) FROM outbox WHERE status IN ('pending', 'sending'))")).scalar_one()
            if not pending:
                return
            conn.rollback()
            time.sleep(1)


def check(product: Product, load: Load, twilio: FakeTwilio | None, settle_s: float = 180) -> Findings:
    found = Findings()
    engine = create_engine(product.database_url)
    wait_settled(engine, settle_s)
    with engine.connect() as conn:
        for sent in load.sent:
            found.unanswered += sent.unanswered
            if sent.conversation_id is None and sent.address is not None:
                sent.conversation_id = conn.execute(text(
                    "SELECT conversation_id FROM whatsapp_thread WHERE address = :a"), {"a": sent.address}).scalar()
            cid = sent.conversation_id
            expected = sent.texts
            if cid is None:
                found.lost += len(expected)
                continue
            rows = conn.execute(text(
                "SELECT m.id, m.body, m.processed_at, i.status, i.attempts FROM message m "
                "LEFT JOIN inbox i ON i.message_id = m.id "
                "WHERE m.conversation_id = :c AND m.direction = 'in' ORDER BY m.id"), {"c": cid}).all()
            bodies = [r[1] for r in rows]
            found.lost += sum(1 for t in expected if t not in bodies)
            found.lost += sum(1 for r in rows if r[3] != "done")
            found.duplicated += len(bodies) - len(set(bodies))
            found.turns_rerun += sum(1 for r in rows if (r[4] or 0) > 1)
            done = [r for r in rows if r[2] is not None]
            order_ok = [b for b in bodies if b in expected] == [t for t in expected if t in bodies]
            processed_ok = all(a[2] <= b[2] for a, b in itertools.pairwise(done))
            replies = conn.execute(text(
                "SELECT in_reply_to FROM message WHERE conversation_id = :c AND direction = 'out' "
                "AND in_reply_to IS NOT NULL ORDER BY id"), {"c": cid}).scalars().all()
            answered_ok = all(a <= b for a, b in itertools.pairwise(replies))
            if not (order_ok and processed_ok and answered_ok):
                found.reordered += 1
            # The form: its request, with what the HCP gave.
            form = sent.script.form
            if form is not None and sent.form_started:
                found.forms_started += 1
                found.forms_seen_done += sent.form_seen_done
                found.summaries_corrected += [f"{cid}: {c}" for c in sent.corrections]
                requests = conn.execute(text(
                    "SELECT product, details FROM service_request WHERE conversation_id = :c AND kind = 'samples'"),
                    {"c": cid}).all()
                if any(p == form.product.lower() and d.get("sample_quantity") == form.quantity
                       and d.get("delivery_address") == form.address for p, d in requests):
                    found.forms_completed += 1
                else:
                    found.problems.append(f"form of {sent.script.channel} conversation {cid}: asked for "
                                          f"{form.product.lower()}, {form.quantity}, {form.address!r}; recorded "
                                          f"{requests}; sent {sent.texts}")
            # The adverse event: a case linked to the message, day 0 set.
            if sent.script.ae_text is not None and sent.script.ae_text in expected:
                found.ae_reports += 1
                linked = conn.execute(text(
                    "SELECT count(*) FROM adverse_event_message l JOIN adverse_event a ON a.id = l.adverse_event_id "
                    "JOIN message m ON m.id = l.message_id WHERE m.conversation_id = :c AND m.body = :b "
                    "AND a.conversation_id = :c AND a.day0_at IS NOT NULL"),
                    {"c": cid, "b": sent.script.ae_text}).scalar_one()
                found.ae_cases += linked >= 1
                if not linked:
                    found.problems.append(f"no case for the adverse event in {cid}: {sent.script.ae_text!r}")
            # WhatsApp: every reply through Twilio once.
            if sent.address is not None and twilio is not None:
                parts = conn.execute(text(
                    "SELECT m.id, p.sid FROM message m LEFT JOIN whatsapp_part p ON p.message_id = m.id "
                    "WHERE m.conversation_id = :c AND m.direction = 'out'"), {"c": cid}).all()
                part_sids = {sid for _, sid in parts if sid is not None}
                found.wa_replies += len({mid for mid, _ in parts})
                found.wa_unsent += len({mid for mid, sid in parts if sid is None})
                to_number = [r.sid for r in twilio.sent if r.to == sent.address]
                found.wa_sent_twice += sum(1 for s in to_number if s not in part_sids)
                found.wa_unsent += sum(1 for s in part_sids if s not in to_number)
        if load.killed_at is not None:
            last = conn.execute(text(
                "SELECT max(processed_at) FROM message WHERE direction = 'in' AND created_at <= :k"),
                {"k": load.killed_at}).scalar()
            if last is not None:
                if isinstance(last, str):
                    last = datetime.fromisoformat(last)
                if last.tzinfo is None:
                    last = last.replace(tzinfo=UTC)
                found.recovered_s = max(0.0, (last - load.killed_at).total_seconds())
    engine.dispose()
    # Rasa's own record: one user event per message it was sent.
    try:
        tracker = create_engine(admin_url(product.pg, product.tracker_db))
        with tracker.connect() as conn:
            for sent in load.sent:
                if sent.conversation_id is None:
                    continue
                n = conn.execute(text("SELECT count(*) FROM events WHERE sender_id = :c AND type_name = 'user'"),
                                 {"c": sent.conversation_id}).scalar_one()
                found.turns_twice += max(0, n - len(sent.texts))
        found.tracker_checked = True
        tracker.dispose()
    except Exception:
        found.tracker_checked = False
    return found


def run_scenario(product: Product, twilio: FakeTwilio | None, plan: list[Script], *, concurrency: int,
                 kill: bool, label: str) -> Load:
    load = Load(label=label)
    driver = Driver(product, twilio, load)
    try:
        asyncio.run(driver.run(plan, concurrency, kill))
    finally:
        driver.close()
    return load
