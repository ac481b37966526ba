"""The one place configuration is read. Every variable is prefixed ``CONCIERGE_``."""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from api.timewindows import parse_quiet_hours, parse_timezone, parse_windows

REPO_ROOT = Path(__file__).resolve().parent.parent


def parse_rasa_urls(value: str) -> list[str]:
    """CONCIERGE_RASA_URLS: comma-separated http(s) base URLs, none blank, none twice."""
    if not value.strip():
        return []
    urls: list[str] = []
    for position, raw in enumerate(value.split(","), start=1):
        url = raw.strip().rstrip("/")
        if not url:
            raise ValueError(f"rasa_urls: entry {position} is blank in {value!r} (comma-separated base URLs)")
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 (a port that is not a number raises here)
        except ValueError:
            parts = None
        if parts is None or parts.scheme.lower() not in ("http", "https") or not parts.hostname \
                or any(c.isspace() for c in url):
            raise ValueError(f"rasa_urls: {raw.strip()!r} is not an http(s) base URL such as http://127.0.0.1:5005")
        if url.lower() in (u.lower() for u in urls):
            raise ValueError(f"rasa_urls: {url!r} is listed twice")
        urls.append(url)
    return urls


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CONCIERGE_", extra="ignore")

    # storage
    database_url: str = Field(
        default=f"sqlite:///{REPO_ROOT / 'var' / 'concierge.db'}",
        description="SQLAlchemy URL; SQLite file by default, PostgreSQL in production.",
    )
    var_dir: Path = Field(default=REPO_ROOT / "var", description="Runtime files: DB, index, logs.")

    # rasa
    rasa_url: str = Field(default="http://127.0.0.1:5005", description="Rasa server base URL.")
    rasa_urls: str = Field(
        default="",
        description="Several Rasa replicas (comma-separated base URLs) sharing one SQL tracker store and one "
                    "Redis lock store; turns are spread over them. Empty: CONCIERGE_RASA_URL alone.")
    rasa_replica_backoff_s: float = Field(
        default=5.0, gt=0,
        description="A replica that refused a connection (or did not accept it in time) is skipped this long.")
    rasa_health_interval_s: float = Field(
        default=0.0, ge=0,
        description="With several replicas: probe each replica's /status this often (s) and skip the ones that "
                    "do not answer with a model; 0: only the passive marking of refused connections.")
    rasa_threads: int = Field(
        default=1, ge=0,
        description="Compute threads of each Rasa server it starts: TensorFlow's intra-/inter-op pools "
                    "(TF_INTRA_OP_PARALLELISM_THREADS / TF_INTER_OP_PARALLELISM_THREADS) and the BLAS/OpenMP pools "
                    "of the NLU's numpy maths (OMP_NUM_THREADS, OPENBLAS_NUM_THREADS, MKL_NUM_THREADS), unless "
                    "those are set. With the defaults (a spinning pool per core) Rasa took 58-99 ms CPU per turn on "
                    "2 cores against ~40 with one thread (benchmarks/turn_latency.py); scale with replicas instead. "
                    "0: the libraries' own defaults.")
    rasa_tracker_db: str = Field(
        default="rasa",
        description="`concierge run --rasa-replicas M`: the PostgreSQL database (on CONCIERGE_DATABASE_URL's "
                    "server, created by Rasa on first start) that holds Rasa's SQL tracker store.")
    rasa_token: str = Field(default="dev-rasa-token", description="Rasa HTTP API auth token.")
    rasa_timeout: float = Field(default=8.0, gt=0, description="Deadline (s) for one Rasa turn.")
    reply_wait_margin_s: float = Field(
        default=1.5, ge=0,
        description="Web chat: a message's POST waits for its replies at most the Rasa deadline plus this; "
                    "after that it answers `pending: true` and the replies follow on the message stream.")
    turn_retry_deadline_s: float = Field(
        default=120.0, gt=0,
        description="A turn step failing on a transient database error (outage, lock) is retried with backoff "
                    "this long; then the message stays pending and the inbox sweeper resumes it.")
    inbox_sweep_interval_s: float = Field(
        default=10.0, ge=0,
        description="How often (s) the worker looks for pending inbound messages no turn is working on "
                    "(interrupted by an outage); 0: only at start-up.")
    conversation_lease_s: float = Field(
        default=30.0, gt=0,
        description="PostgreSQL: a conversation's turns run in the one process holding its lease (several api and "
                    "worker processes may share the database). The holder renews it every third of this time; when "
                    "a holder dies, another process takes its conversations over within this time plus "
                    "CONCIERGE_INBOX_SWEEP_INTERVAL_S. Not used on SQLite (one process per database).")
    reply_poll_s: float = Field(
        default=1.0, gt=0,
        description="PostgreSQL: a web chat request waiting for a turn that runs in another process hears of it "
                    "on the relay bus (Redis); it also reads the database this often, so a lost hint (Redis down) "
                    "delays the reply by at most this, never past the wait's deadline.")
    rasa_venv: Path = Field(default=REPO_ROOT / ".venv-rasa", description="Rasa's Python 3.10 virtualenv.")
    rasa_model_cache: Path = Field(
        default=Path.home() / ".cache" / "hcp-concierge" / "rasa-models",
        description="Trained models by content hash; survives fresh clones on the same machine.",
    )
    action_token: str = Field(
        default="dev-action-token",
        description="Shared secret Rasa sends (query param) when calling the action endpoint.",
    )

    # public identity
    public_url: str = Field(default="http://127.0.0.1:8000", description="URL the outside world uses.")
    host: str = "127.0.0.1"
    port: int = 8000

    # twilio
    twilio_account_sid: str = ""
    twilio_auth_token: str = ""
    twilio_api_url: str = Field(default="https://api.twilio.com", description="Override to use a fake.")
    twilio_whatsapp_from: str = ""
    whatsapp_templates: dict[str, str] = Field(
        default_factory=dict,
        description="Approved template Content SID (HX…) per purpose, JSON: medical-inquiry-answered, "
                    "handoff-reply, request-update. Used outside the 24-hour window.",
    )
    whatsapp_max_attempts: int = Field(default=8, ge=1, description="Sends before a message is dead-lettered.")
    whatsapp_idle_poll_s: float = Field(
        default=0.4, ge=0.05,
        description="Longest wait (s) between two looks for stored WhatsApp webhooks while none arrive: the ingester "
                    "looks every 50 ms after work, doubling while idle up to this. A webhook stored by the same "
                    "process wakes it at once; one stored by an api process for a separate `concierge worker` waits "
                    "at most this long. (Every 50 ms cost an idle api process ~100 ms CPU per second.)")
    whatsapp_retry_base: float = Field(default=1.0, gt=0, description="First retry delay (s); doubles.")
    whatsapp_retry_max: float = Field(default=300.0, gt=0, description="Longest retry delay (s).")
    whatsapp_send_timeout: float = Field(default=10.0, gt=0, description="Deadline (s) of one Twilio call.")
    whatsapp_worker: Literal["inline", "process"] = Field(
        default="inline",
        description="Who ingests and processes WhatsApp webhooks after the ack: `inline` — the api process "
                    "itself; `process` — a separate `concierge worker` process (what `concierge run` starts), "
                    "so acks never share a GIL or CPU with the safety screen and turns.",
    )
    worker_nice: int = Field(default=5, ge=0, le=19,
                             description="CPU niceness `concierge worker` gives itself (acks go first).")
    whatsapp_sandbox: bool = Field(
        default=False,
        description="`concierge run` also serves the WhatsApp sandbox (fake Twilio + simulated phone page) "
                    "and points the Twilio settings at it.",
    )
    whatsapp_sandbox_port: int = Field(default=8001, ge=0, le=65535,
                                       description="Loopback port of the WhatsApp sandbox (0: any free port).")

    # content
    default_market: str = "US"
    library_path: Path = Field(default=REPO_ROOT / "knowledge" / "content")
    index_dir: Path | None = Field(default=None, description="Where the faiss index lives (var/index).")
    embed_backend: Literal["torch", "onnx"] = Field(
        default="torch",
        description="Runtime of the single-query MiniLM pass: torch (TorchScript) or onnx (ONNX Runtime, "
                    "model exported into <model dir>/onnx on first use; torch if onnxruntime/onnx are missing).",
    )

    # audit
    audit_key: SecretStr = Field(
        default=SecretStr(""),
        description="Key of the audit chain's HMAC (kept outside the database: without it, nobody with database "
                    "write access can recompute the chain). Empty: the key in CONCIERGE_AUDIT_KEY_FILE.")
    audit_key_file: Path | None = Field(
        default=None, description="File holding the audit key (var/audit.key), created with a random key on first "
                                  "use when CONCIERGE_AUDIT_KEY is not set. Back it up; keep it off the database host.")
    audit_checkpoint_dir: Path | None = Field(
        default=None, description="Where signed checkpoints of the chain head are written (var/audit-checkpoints); "
                                  "point it at write-once storage. `concierge audit verify` checks the chain against "
                                  "the latest one.")
    audit_checkpoint_interval_s: float = Field(
        default=3600.0, ge=0, description="How often the api writes a checkpoint of the audit chain head (0: never; "
                                          "`concierge audit checkpoint` writes one on demand).")

    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="Proxies (addresses or CIDRs, JSON list) whose X-Forwarded-For is believed for the client "
                    "address (rate limits, login throttling); from anyone else the header is ignored.")

    # webchat
    max_message_chars: int = 4096
    rate_limits: bool = Field(default=True, description="Rate-limit the web chat (429 + Retry-After); shared "
                                                        "through Redis when CONCIERGE_REDIS_URL is set.")
    rate_sessions_per_min: float = Field(default=20.0, gt=0,
                                         description="New web chat sessions per client address per minute "
                                                     "(burst 10).")
    rate_messages_per_min: float = Field(default=30.0, gt=0,
                                         description="Messages per web chat session per minute (burst 10).")
    rate_client_messages_per_min: float = Field(default=120.0, gt=0,
                                                description="Messages per client address per minute, all its "
                                                            "sessions together (burst 40).")
    rate_reads_per_min: float = Field(default=240.0, gt=0,
                                      description="Message-list reads and stream opens per session per minute "
                                                  "(burst 60; the page polls every 1.5 s at most).")
    max_request_bytes: int = Field(
        default=1024 * 1024, ge=1024,
        description="Largest request body any route accepts unless it has its own limit (web chat: from "
                    "max_message_chars; Twilio webhooks 64 KB; content uploads; Rasa's action calls 16 MB). "
                    "Refused with 413 while the body streams in.")

    # staff consoles
    secure_cookies: bool = False
    staff_hours: str = Field(
        default="Mon-Fri 08:00-18:00",
        description="When staff answer handoffs, e.g. 'Mon-Fri 08:00-18:00; Sat 09:00-12:00'. Out of hours "
                    "the HCP is told when a person will reply (the SLA starts then) and offered a callback or email.",
    )
    staff_timezone: str = Field(default="Europe/London", description="IANA timezone of CONCIERGE_STAFF_HOURS.")

    @field_validator("rasa_urls")
    @classmethod
    def _check_rasa_urls(cls, value: str) -> str:
        parse_rasa_urls(value)
        return value

    @property
    def rasa_replica_urls(self) -> list[str]:
        """The Rasa replicas turns are spread over: CONCIERGE_RASA_URLS, else CONCIERGE_RASA_URL alone."""
        return parse_rasa_urls(self.rasa_urls) or [self.rasa_url.rstrip("/")]

    @field_validator("trusted_proxies")
    @classmethod
    def _check_trusted_proxies(cls, value: list[str]) -> list[str]:
        from api.net import parse_networks

        parse_networks(value)
        return value

    @property
    def cookies_secure(self) -> bool:
        """Cookies carry the Secure flag when asked to, and always when the public URL is https."""
        return self.secure_cookies or self.public_url.lower().startswith("https://")

    @field_validator("staff_hours")
    @classmethod
    def _check_staff_hours(cls, value: str) -> str:
        parse_windows(value)
        return value

    @field_validator("staff_timezone")
    @classmethod
    def _check_staff_timezone(cls, value: str) -> str:
        parse_timezone(value)
        return value

    # fatigue guard (feedback/fatigue.py): business-initiated WhatsApp messages only, never replies
    fatigue_max_messages: int = Field(
        default=3, ge=1, description="Business-initiated messages per HCP per window, unless the HCP stated a "
                                     "frequency (daily/weekly/monthly/quarterly/less often).")
    fatigue_window_days: int = Field(default=7, ge=1, description="The frequency cap's rolling window (days).")
    quiet_hours: str = Field(
        default="21:00-08:00",
        description="Local time (the HCP's market time zone) when business-initiated messages wait; 'off' for none.")
    market_timezones: dict[str, str] = Field(
        default_factory=dict,
        description="JSON market → IANA time zone for quiet hours, added to the built-in table; unknown markets "
                    "use CONCIERGE_STAFF_TIMEZONE.")

    @field_validator("quiet_hours")
    @classmethod
    def _check_quiet_hours(cls, value: str) -> str:
        parse_quiet_hours(value)
        return value

    @field_validator("market_timezones")
    @classmethod
    def _check_market_timezones(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value.values():
            parse_timezone(name)
        return {k.upper(): v for k, v in value.items()}

    # Blinded AE review queue (api.safety.recall): live recall / precision of the safety screen
    ae_review_sample_rate: float = Field(
        default=0.02, ge=0, le=1, description="Share of inbound messages the screen did NOT flag that go to the "
                                              "blinded AE review queue (every flagged message goes).")
    ae_review_recall_floor: float = Field(
        default=0.95, ge=0, le=1, description="Alert (SLA-style, team safety) when the lower 95 % bound of the "
                                              "screen's live recall drops below this.")

    # Auto-assignment of handoffs (api.handoffs.assign)
    auto_assign: bool = Field(
        default=False,
        description="Offer each queued handoff to one online colleague of its team (market, language, "
                    "territory; round-robin under a capacity) instead of leaving it for a manual claim. Off by "
                    "default: it changes who sees what first, and staff must set their presence and capacity "
                    "before it can work; manual claims always work.")
    assign_offer_timeout_s: float = Field(
        default=180.0, gt=0, description="An offer not accepted within this many seconds moves to the next person.")
    assign_max_open: int = Field(
        default=5, ge=1, description="Open conversations (held + offered) per person unless their own "
                                     "capacity is set; at capacity nobody is offered more and claims are refused.")
    assign_sweep_interval_s: float = Field(
        default=15.0, ge=0, description="Seconds between auto-assignment sweeps in the app (expired offers move "
                                        "on, waiting handoffs are offered; 0: off).")

    # SLA alerts (api.sla): overdue handoffs / requests, adverse-event cases near their deadline
    sla_sweep_interval_s: float = Field(
        default=60.0, ge=0, description="Seconds between SLA sweeps in the app (0: off; `concierge sla sweep` "
                                        "runs one on demand).")
    sla_ae_warning_days: float = Field(
        default=2.0, ge=0, description="An open adverse-event case within this many days of its reporting "
                                       "deadline raises a due-soon alert.")
    sla_alert_webhooks: dict[str, str] = Field(
        default_factory=dict,
        description="JSON team → incoming-webhook URL for SLA alerts (teams: rep, msl, medical_information, "
                    "safety and the request desks; `*` for any other). Empty: alerts are only recorded.")

    @field_validator("sla_alert_webhooks")
    @classmethod
    def _check_sla_alert_webhooks(cls, value: dict[str, str]) -> dict[str, str]:
        for team, url in value.items():
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"sla_alert_webhooks[{team!r}] must be an http(s) URL, not {url!r}")
        return value

    # redis (scale-out features only)
    redis_url: str = ""

    # CX dashboard rollups (feedback.rollups): refreshed in the background every this many seconds
    cx_rollup_interval_s: float = Field(
        default=300.0, ge=0, description="Seconds between CX rollup refreshes in the app (0: off; "
                                         "`concierge feedback rollup` refreshes on demand).")
    cx_rollup_lookback_days: int = Field(
        default=2, ge=0, description="Days before today the CX rollup refresh always recomputes.")

    model_dir: Path | None = Field(
        default=None, description="Trained safety-screen model cache (default var/models)."
    )

    @property
    def resolved_model_dir(self) -> Path:
        return self.model_dir or (self.var_dir / "models")

    @property
    def resolved_index_dir(self) -> Path:
        return self.index_dir or (self.var_dir / "index")

    @property
    def resolved_audit_key_file(self) -> Path:
        return self.audit_key_file or (self.var_dir / "audit.key")

    @property
    def resolved_audit_checkpoint_dir(self) -> Path:
        return self.audit_checkpoint_dir or (self.var_dir / "audit-checkpoints")

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")
