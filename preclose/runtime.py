"""Factories tasks and flows use to open their own resources: Offergrid client, database, policy."""

from __future__ import annotations

import atexit
import hashlib
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

import httpx
from pydantic import SecretStr
from sqlalchemy import Engine
from sqlmodel import Session

from offergrid import OffergridClient
from offergrid.client import CallRecord
from preclose.rules.policy import Policy, load_policy
from preclose.settings import Settings, get_settings
from preclose.storage.db import get_engine, session_scope
from preclose.storage.ratelimit import (
    RateLimiter,
    get_rate_limiter,
    key_fingerprint,
    rate_limited_http_client,
)
from preclose.storage.repository import record_api_call

logger = logging.getLogger(__name__)

# Where `preclose sandbox` listens by default: the embedded local Offergrid, used when no base URL
# is configured, with its documented (sandbox-only) reseller key.
LOCAL_OFFERGRID_URL = "http://127.0.0.1:8765"
LOCAL_RESELLER_KEY = "og_sandbox_reseller"

# Connect fast, read patiently: Offergrid's own examples use a 10 s client timeout.
OFFERGRID_TIMEOUT = httpx.Timeout(10.0, connect=5.0)


def offergrid_endpoint(settings: Settings | None = None) -> tuple[str, SecretStr]:
    """The Offergrid base URL and API key to use: configured ones, or the local Offergrid's."""
    settings = settings or get_settings()
    if settings.offergrid_base_url is None:
        key = settings.offergrid_api_key or SecretStr(LOCAL_RESELLER_KEY)
        return LOCAL_OFFERGRID_URL, key
    if settings.offergrid_api_key is None:
        from offergrid.errors import ConfigurationError

        raise ConfigurationError(
            "api_key: PRECLOSE_OFFERGRID_BASE_URL is set but no key is: "
            "set PRECLOSE_OFFERGRID_API_KEY (or OFFERGRID_API_KEY)"
        )
    return settings.offergrid_base_url, settings.offergrid_api_key


def endpoint_fingerprint(settings: Settings | None = None) -> str:
    """A short, key-free name for the Offergrid endpoint in use, for cache keys."""
    base_url, key = offergrid_endpoint(settings)
    raw = f"{base_url}|{key.get_secret_value()}".encode()
    return hashlib.sha256(raw).hexdigest()[:12]


def engine(settings: Settings | None = None) -> Engine:
    """The process's migrated database engine for the configured URL."""
    return get_engine((settings or get_settings()).database_url)


@contextmanager
def db_session(settings: Settings | None = None) -> Iterator[Session]:
    """A session on the configured database that commits at the end of the block."""
    with session_scope(engine(settings)) as session:
        yield session


_limiters: dict[tuple[object, ...], RateLimiter] = {}


def rate_limiter(settings: Settings | None = None) -> RateLimiter:
    """The limiter every process shares for the configured API key (one object per process)."""
    settings = settings or get_settings()
    _, key = offergrid_endpoint(settings)
    identity = (
        settings.database_url,
        key_fingerprint(key),
        settings.rate_limit_per_minute,
        settings.rate_limit_per_hour,
        settings.rate_limit_window_scale,
    )
    limiter = _limiters.get(identity)
    if limiter is None:
        limiter = _limiters[identity] = get_rate_limiter(
            key, settings=settings, engine=engine(settings)
        )
    return limiter


def _recorder(settings: Settings) -> Callable[[CallRecord], None]:
    def record(call: CallRecord) -> None:
        # Health figures are best effort: a failed write must never fail the Offergrid call.
        try:
            with db_session(settings) as session:
                record_api_call(
                    session=session,
                    endpoint=call.endpoint,
                    method=call.method,
                    status_code=call.status_code,
                    latency_ms=call.latency_s * 1000,
                    error_type=call.error_type,
                )
        except Exception:
            logger.warning(
                "Could not record an Offergrid call for the health figures", exc_info=True
            )

    return record


_http_clients: dict[tuple[str, int], httpx.Client] = {}


def _shared_http_client(base_url: str, limiter: RateLimiter) -> httpx.Client:
    """One pooled, rate-limited httpx client per process, endpoint and limiter.

    Building a client loads the CA bundle (about 17 ms) and opens fresh connections, which cost
    more than most Offergrid calls; httpx clients are safe to share between task threads.
    """
    identity = (base_url, id(limiter))
    http = _http_clients.get(identity)
    if http is None or http.is_closed:
        # Plain HTTP (the local Offergrid) needs no TLS context at all.
        verify = not base_url.startswith("http://")
        http = _http_clients[identity] = rate_limited_http_client(
            limiter, timeout=OFFERGRID_TIMEOUT, verify=verify
        )
    return http


@atexit.register
def _close_http_clients() -> None:
    for http in _http_clients.values():
        http.close()
    _http_clients.clear()


@contextmanager
def offergrid_client(settings: Settings | None = None) -> Iterator[OffergridClient]:
    """A rate-limited Offergrid client for the configured endpoint that records every call."""
    settings = settings or get_settings()
    base_url, key = offergrid_endpoint(settings)
    http = _shared_http_client(base_url, rate_limiter(settings))
    # The shared httpx client outlives this block: OffergridClient closes only a client it made.
    with OffergridClient(
        api_key=key,
        base_url=base_url,
        timeout=OFFERGRID_TIMEOUT,
        http_client=http,
        on_call=_recorder(settings),
    ) as client:
        yield client


@lru_cache(maxsize=4)
def _policy(path: Path | None) -> Policy:
    return load_policy(path)


def policy(settings: Settings | None = None) -> Policy:
    """The recommendation policy: the user's file when configured, else the shipped default."""
    return _policy((settings or get_settings()).policy_path)
