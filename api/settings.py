"""The one place configuration is read. Every variable is prefixed ``CONCIERGE_``."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent


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
    rasa_token: str = Field(default="dev-rasa-token", description="Rasa HTTP API auth token.")
    rasa_timeout: float = Field(default=8.0, gt=0, description="Deadline (s) for one Rasa turn.")
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
    whatsapp_retry_base: float = Field(default=1.0, gt=0, description="First retry delay (s); doubles.")
    whatsapp_retry_max: float = Field(default=300.0, gt=0, description="Longest retry delay (s).")
    whatsapp_send_timeout: float = Field(default=10.0, gt=0, description="Deadline (s) of one Twilio call.")

    # content
    default_market: str = "US"
    library_path: Path = Field(default=REPO_ROOT / "knowledge" / "content")
    index_dir: Path | None = Field(default=None, description="Where the faiss index lives (var/index).")

    # webchat
    max_message_chars: int = 4096

    # staff consoles
    secret_key: str = Field(default="dev-insecure-secret-change-me", description="Signs staff sessions.")
    secure_cookies: bool = False

    # redis (scale-out features only)
    redis_url: str = ""

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
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")
