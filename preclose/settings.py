"""preclose's configuration: one settings class read from `PRECLOSE_*` variables and `.env`."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

ENV_PREFIX = "PRECLOSE_"

# A comma separates two notification URLs only when a new `scheme://` follows it, because apprise
# URLs themselves carry commas (for example `mailto://...?to=a@x.org,b@x.org`).
_URL_SPLIT = re.compile(r"\s+|,\s*(?=[A-Za-z][A-Za-z0-9+.-]*://)")


class SettingsError(ValueError):
    """A configuration value is invalid; the message names the environment variable to fix."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        """Join the (environment variable, message) pairs into one message."""
        self.env_vars = [name for name, _ in problems]
        super().__init__("; ".join(f"{name}: {message}" for name, message in problems))


class Settings(BaseSettings):
    """Everything preclose reads from its environment, with a default that runs locally."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
        validate_default=True,
        # Inputs can be passwords or keys: keep them out of every error message.
        hide_input_in_errors=True,
    )

    data_dir: Path = Field(
        default=Path(".preclose"),
        title="Data directory",
        description="Where the local database, outbox and Prefect home live; relative paths are "
        "resolved against the working directory.",
    )
    database_url: str = Field(
        default_factory=lambda data: _default_database_url(data.get("data_dir")),
        title="Database URL",
        description="SQLAlchemy URL of the database (sqlite:///... or postgresql://...); empty "
        "means sqlite:///<data_dir>/preclose.db.",
    )
    offergrid_base_url: str | None = Field(
        default=None,
        title="Offergrid base URL",
        description="Base URL of the Offergrid API; unset means the embedded local Offergrid.",
    )
    offergrid_api_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices(f"{ENV_PREFIX}OFFERGRID_API_KEY", "OFFERGRID_API_KEY"),
        title="Offergrid API key",
        description="Reseller API key sent as x-api-key; also read from OFFERGRID_API_KEY.",
    )
    offergrid_webhook_secret: SecretStr | None = Field(
        default=None,
        title="Offergrid webhook secret",
        description="Shared secret that verifies the HMAC signature of Offergrid webhooks.",
    )
    catalog_cache_hours: float = Field(
        default=3.0,
        ge=1,
        le=6,
        title="Catalog cache hours",
        description="How long a fetched catalog (offers by ZIP and category) is reused.",
    )
    status_cache_minutes: float = Field(
        default=5.0,
        ge=0,
        title="Status cache minutes",
        description="How long a fetched order status is reused before asking Offergrid again.",
    )
    sync_interval_minutes: float = Field(
        default=15.0,
        gt=0,
        title="Sync interval minutes",
        description="How often the periodic bulk sync of open orders runs.",
    )
    max_attempts_per_category: int = Field(
        default=3,
        ge=1,
        le=10,
        title="Attempts per category",
        description="Orders tried per service (re-picks after rejections or failed installs) "
        "before a person is asked to choose.",
    )
    reconcile_stale_minutes: float = Field(
        default=15.0,
        gt=0,
        title="Reconcile: stale run minutes",
        description="A request's run still running after this long is taken as lost (its runner "
        "was killed) and started again by the reconciler.",
    )
    max_run_attempts: int = Field(
        default=5,
        ge=1,
        le=20,
        title="Runs per request",
        description="Runs the reconciler starts for one accepted request before it asks a person.",
    )
    reconcile_interval_minutes: float = Field(
        default=5.0,
        gt=0,
        title="Reconcile interval minutes",
        description="How often the reconciler looks for accepted requests no run will finish.",
    )
    notify_urls: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        title="Notification URLs",
        description="Apprise URLs (JSON list, or separated by spaces or commas); empty means the "
        "local outbox file in the data directory.",
    )
    policy_path: Path | None = Field(
        default=None,
        title="Policy path",
        description="TOML recommendation policy to use instead of the shipped default.",
    )
    rate_limit_per_minute: int = Field(
        default=100,
        ge=1,
        title="Rate limit per minute",
        description="Offergrid requests allowed in any rolling minute.",
    )
    rate_limit_per_hour: int = Field(
        default=10_000,
        ge=1,
        title="Rate limit per hour",
        description="Offergrid requests allowed in any rolling hour.",
    )
    rate_limit_window_scale: float = Field(
        default=1.0,
        gt=0,
        title="Rate limit window scale",
        description="Factor applied to the rate-limit windows; benchmarks shrink them below 1.",
    )
    public_url: str = Field(
        default="http://127.0.0.1:8000",
        title="Public URL",
        description="Where people reach the HTTP app; the closing-page links in messages start "
        "with it.",
    )
    page_link_secret: SecretStr | None = Field(
        default=None,
        title="Page link secret",
        description="Signs the closing-page links in messages; change it to revoke every link "
        "made before. Unset: a secret generated once into <data_dir>/page-link-secret.",
    )
    page_link_days: int = Field(
        default=120,
        ge=1,
        le=3650,
        title="Page link lifetime (days)",
        description="How long a closing-page link in a message stays valid.",
    )
    prefect_home: Path = Field(
        default_factory=lambda data: _data_dir_or_default(data.get("data_dir")) / "prefect",
        title="Prefect home",
        description="PREFECT_HOME for local runs; unset means <data_dir>/prefect.",
    )

    def __init__(self, **values: Any) -> None:
        """Read the environment and validate, naming the variable behind any bad value."""
        try:
            super().__init__(**values)
        except ValidationError as err:
            raise SettingsError(_problems(err)) from err

    @field_validator("data_dir", "policy_path", "prefect_home")
    @classmethod
    def _absolute(cls, value: Path | None) -> Path | None:
        # Resolved once, so a later chdir cannot move the database.
        return None if value is None else value.expanduser().resolve()

    @field_validator("public_url")
    @classmethod
    def _web_url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if not value.startswith(("http://", "https://")) or value[-3:] == "://":
            raise ValueError("must be the app's address, starting with http:// or https://")
        return value

    @field_validator("database_url")
    @classmethod
    def _parseable_url(cls, value: str, info: ValidationInfo) -> str:
        value = value.strip()
        if not value:
            return _default_database_url(info.data.get("data_dir"))
        try:
            make_url(value)
        except ArgumentError as err:
            # The URL may carry a password: say what is wrong, never echo it.
            raise ValueError("not a database URL (expected e.g. sqlite:///path)") from err
        return value

    @field_validator("offergrid_base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip().rstrip("/")
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value

    @field_validator("notify_urls", mode="before")
    @classmethod
    def _split_urls(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [part for part in _URL_SPLIT.split(text) if part]
        return value

    @field_validator("notify_urls")
    @classmethod
    def _urls_have_scheme(cls, value: list[str]) -> list[str]:
        for index, url in enumerate(value):
            if "://" not in url:
                raise ValueError(f"item {index} is not an apprise URL (expected scheme://...)")
        return value

    @property
    def outbox_path(self) -> Path:
        """The file notifications go to when no apprise URL is configured."""
        return self.data_dir / "outbox.jsonl"

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        """Fields for repr and str, with passwords and notification tokens masked."""
        for name, value in super().__repr_args__():
            if name == "database_url" and isinstance(value, str):
                yield name, _mask_database_url(value)
            elif name == "notify_urls" and isinstance(value, list):
                yield name, [_mask_notify_url(url) for url in value]
            else:
                yield name, value


def _data_dir_or_default(data_dir: Any) -> Path:
    # Called while validating: data_dir is already resolved unless it was itself invalid.
    return data_dir if isinstance(data_dir, Path) else Path(".preclose").resolve()


def _default_database_url(data_dir: Any) -> str:
    return f"sqlite:///{_data_dir_or_default(data_dir) / 'preclose.db'}"


def _mask_database_url(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "***"


def _mask_notify_url(url: str) -> str:
    # Apprise URLs carry tokens and passwords anywhere after the scheme.
    scheme, _, _ = url.partition("://")
    return f"{scheme}://***"


def _env_var_for(field_name: str) -> str:
    return f"{ENV_PREFIX}{field_name.upper()}"


def _problems(err: ValidationError) -> list[tuple[str, str]]:
    """Each error as (environment variable, message), without echoing secret inputs."""
    by_alias = {}
    for name, field in Settings.model_fields.items():
        by_alias[name] = name
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            for choice in alias.choices:
                if isinstance(choice, str):
                    by_alias[choice] = name
    problems: list[tuple[str, str]] = []
    for error in err.errors(include_input=False, include_url=False):
        if error["type"] == "default_factory_not_called":
            continue  # a consequence of another error, which is reported on its own
        loc = error["loc"]
        key = str(loc[0]) if loc else ""
        field_name = by_alias.get(key, key)
        env_var = _env_var_for(field_name) if field_name else ENV_PREFIX + "*"
        if field_name == "offergrid_api_key":
            env_var = f"{env_var} (or OFFERGRID_API_KEY)"
        where = "".join(f"[{part}]" for part in loc[1:])
        message = error["msg"].removeprefix("Value error, ")
        problems.append((env_var + where, message))
    return problems


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once; tests call `get_settings.cache_clear()`."""
    return Settings()
