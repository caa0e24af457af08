"""All configuration, read in one place: ``LIGHTRELAY_*`` environment variables
and an optional ``.env``-style file named by ``LIGHTRELAY_CONFIG_FILE``.

No other module reads the environment. Build a ``Settings`` with
``load_settings()`` and hand it down.
"""

from __future__ import annotations

import os
import secrets
from functools import cached_property
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from zoneinfo import ZoneInfo

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from lightrelay.errors import ConfigError

DEFAULT_MODELS = ("gpt-3.5-turbo-1106", "gpt-3.5-turbo-16k", "gpt-4", "gpt-4-1106-preview")
WEAK_SECRETS = {"", "changeme", "secret", "dev", "lightrelay", "please-change-me"}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LIGHTRELAY_", extra="ignore")

    # where things live
    data_dir: Path = Path("./data")
    database_url: str | None = None  # default: sqlite+aiosqlite:///<data_dir>/lightrelay.db
    redis_url: str | None = None
    redis_prefix: str = "lr:"  # keys and the invalidation channel; lets several relays share one Redis
    redis_timeout: float = 1.0  # seconds for a Redis command before it counts as down
    redis_fail_open: bool = False  # Redis down: False = calls get 503; True = admitted uncounted
    # set by `serve --workers N` (prometheus-client multiprocess mode); read here like everything else
    prometheus_multiproc_dir: str | None = Field(default=None, validation_alias="PROMETHEUS_MULTIPROC_DIR")

    # serving
    host: str = "127.0.0.1"
    port: int = 8080
    env: str = "production"  # "dev" allows weak secrets
    secret_key: SecretStr | None = None
    max_body_bytes: int = 8 * 1024 * 1024
    max_messages: int = 2048

    # accounts and quota
    timezone: str = "Asia/Shanghai"
    default_daily_limit: int | None = 10  # None = unlimited
    default_image_limit: int | None = 5  # images per account per day (accounts without their own); None = unlimited
    default_model: str = "gpt-3.5-turbo-1106"
    default_models: tuple[str, ...] = DEFAULT_MODELS
    gpt4_prefix: str = "gpt-4"  # models whose name starts with this need GPT-4 access
    auth_cache_ttl: float = 3.0  # seconds a token lookup is trusted before the database is asked again

    # upstreams
    upstream_connect_timeout: float = 5.0
    upstream_first_byte_timeout: float = 60.0
    upstream_idle_timeout: float = 60.0
    upstream_total_timeout: float = 600.0
    channel_failures_to_cool: int = 3  # failures within the window (and at least the ratio) open the breaker
    channel_cooldown_seconds: float = 30.0
    channel_failure_window_seconds: float = 60.0  # the breaker counts a channel's calls over this window
    channel_failure_ratio: float = Field(0.5, ge=0, le=1)  # share of the window's calls that failed
    anthropic_max_tokens: int = 4096  # max_tokens sent to Anthropic when the caller gave none (it is required)
    azure_api_version: str = "2024-10-21"  # an Azure channel's api-version unless it has its own

    # built-in local model
    local_model: str = "auto"  # auto: serve the default names when no channel exists; off: never
    local_model_path: str | None = None
    local_max_queue: int = 8
    local_max_tokens: int = 256
    local_start_attempts: int = 3  # failed starts in a row before the local model is marked unavailable

    # usage recording
    usage_flush_seconds: float = 0.5
    usage_batch_size: int = 500

    # mail
    smtp_url: str | None = None
    mail_from: str = "lightrelay@localhost"

    # web console
    console_registration: bool = True  # False: only the CLI makes accounts
    console_session_days: int = 14
    console_secure_cookies: bool = False  # set when the console is served over HTTPS
    code_ttl_seconds: int = 600  # an emailed code is valid this long
    code_max_tries: int = 5
    code_resend_seconds: int = 60
    rate_login: str = "10/300"  # attempts / seconds, per client address and per email
    rate_register: str = "5/3600"  # sign-ups per client address
    rate_mail: str = "5/3600"  # codes mailed per email address
    rate_bad_token: str = "20/60"  # unknown API tokens per client address / seconds, then 429 for a while
    rate_redeem: str = "10/600"  # redemption attempts per account and per client address / seconds
    trusted_proxies: str = ""  # CIDRs whose X-Forwarded-For is believed (the caller's address for --ips)
    invite_reward_calls: int = 0  # extra calls credited to both accounts of an invite sign-up (0 = off)

    log_level: str = "INFO"
    shutdown_grace_seconds: float = 30.0  # on SIGTERM, running calls may finish for this long
    header_timeout_seconds: float = 10.0  # a connection must send a request's headers within this long
    keepalive_timeout_seconds: float = 5.0  # an idle kept-alive connection is closed after this long
    max_connections: int = 0  # open connections per process before new ones get 503; 0 = from the open-file limit

    # the CLI as a client of a running relay (`lightrelay chat`)
    url: str | None = None  # default http://<host>:<port>
    token: SecretStr | None = None

    @field_validator("default_daily_limit", "default_image_limit", mode="before")
    @classmethod
    def _unlimited(cls, v: object) -> object:
        if isinstance(v, str) and v.strip().lower() in {"unlimited", "none", "-1"}:
            return None
        return v

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        ZoneInfo(v)  # raises on an unknown zone
        return v

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, v: str) -> str:
        for item in (x.strip() for x in v.split(",")):
            if item:
                ip_network(item, strict=False)  # raises on a bad CIDR, naming it
        return v

    @cached_property
    def trusted_networks(self) -> tuple[IPv4Network | IPv6Network, ...]:
        return tuple(ip_network(x.strip(), strict=False) for x in self.trusted_proxies.split(",") if x.strip())

    @cached_property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def db_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'lightrelay.db').resolve()}"

    @property
    def is_sqlite(self) -> bool:
        return self.db_url.startswith("sqlite")

    @property
    def outbox_dir(self) -> Path:
        return self.data_dir / "outbox"

    @property
    def local_status_file(self) -> Path:
        """Where a serving relay writes its local model's state, for ``lightrelay channel list``."""
        return self.data_dir / "local-model.json"

    def secret(self) -> str:
        """The relay's secret. Embedded default: generated once into the data dir.

        Outside dev mode a weak secret is refused; with a shared database
        (not SQLite) the secret must come from the environment, since every host
        must use the same one.
        """
        if self.secret_key is not None:
            value = self.secret_key.get_secret_value()
            if self.env != "dev" and (value.lower() in WEAK_SECRETS or len(value) < 16):
                raise ConfigError(
                    "LIGHTRELAY_SECRET_KEY is weak: use at least 16 random characters "
                    "(or set LIGHTRELAY_ENV=dev for local experiments)"
                )
            return value
        if not self.is_sqlite:
            raise ConfigError("LIGHTRELAY_SECRET_KEY must be set when the database is shared (not SQLite): "
                              "set it to the same long random value on every host, e.g. "
                              "LIGHTRELAY_SECRET_KEY=$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')")
        path = self.data_dir / "secret.key"
        if path.exists():
            return path.read_text().strip()
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        value = secrets.token_urlsafe(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(value)
        return value


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment (and LIGHTRELAY_CONFIG_FILE), with overrides on top."""
    config_file = os.environ.get("LIGHTRELAY_CONFIG_FILE")
    if config_file and not Path(config_file).is_file():
        raise ConfigError(f"LIGHTRELAY_CONFIG_FILE names {config_file}, which is not a file")
    try:
        if config_file:
            return Settings(_env_file=config_file, **overrides)  # type: ignore[call-arg]
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:  # one line naming each bad variable
        problems = "; ".join(f"LIGHTRELAY_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}"
                             for e in exc.errors())
        raise ConfigError(problems) from None


__all__ = ["DEFAULT_MODELS", "Settings", "load_settings"]
