"""Caller keys for the API: made once, stored as a SHA-256, sent in `x-api-key`, scoped.

A key is 32 random bytes, so a plain SHA-256 is enough to store it: there is nothing to guess
that a slow hash would protect. Missing or unknown keys get 401, a key without the scope 403.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from enum import StrEnum
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import APIKeyHeader
from sqlmodel import Session

from models.tables import ApiKey
from preclose.runtime import db_session
from preclose.storage import repository

__all__ = [
    "API_KEY_HEADER",
    "KEY_PREFIX",
    "Scope",
    "hash_api_key",
    "issue_api_key",
    "new_api_key",
    "require",
]

API_KEY_HEADER = "x-api-key"
KEY_PREFIX = "pck_"  # "preclose key": tells a leaked key apart from other secrets in a scan
_SHOWN = 8  # characters after the prefix kept in clear, to tell keys apart in a listing

_header = APIKeyHeader(
    name=API_KEY_HEADER,
    auto_error=False,
    description="A key made with `preclose api-key create NAME [--read-only]`.",
)


class Scope(StrEnum):
    """What a key may do."""

    read = "closings:read"
    write = "closings:write"


def new_api_key() -> str:
    """A fresh random key."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_api_key(key: str) -> str:
    """The hex SHA-256 a key is stored and looked up as."""
    return hashlib.sha256(key.encode()).hexdigest()


def issue_api_key(*, session: Session, name: str, read_only: bool) -> tuple[str, ApiKey]:
    """Make and store a key for `name`; returns the key (to show once) and its stored row."""
    name = name.strip()
    if not 1 <= len(name) <= 100 or not name.isprintable():
        raise ValueError("name: give 1 to 100 printable characters")
    key = new_api_key()
    scopes = [Scope.read] if read_only else [Scope.read, Scope.write]
    row = repository.create_api_key(
        session=session,
        name=name,
        key_hash=hash_api_key(key),
        key_prefix=key[: len(KEY_PREFIX) + _SHOWN],
        scopes=[scope.value for scope in scopes],
    )
    return key, row


def _caller(request: Request, key: str | None) -> ApiKey:
    if not key:
        raise HTTPException(
            401,
            f"missing API key: send it in the {API_KEY_HEADER} header",
            headers={"WWW-Authenticate": "ApiKey"},
        )
    with db_session(request.app.state.settings) as session:
        row = repository.get_api_key_by_hash(session=session, key_hash=hash_api_key(key))
    if row is None or row.revoked_at is not None:
        # The same answer for unknown and revoked keys: never confirm a key once existed.
        raise HTTPException(401, "unknown API key", headers={"WWW-Authenticate": "ApiKey"})
    return row


def require(scope: Scope) -> Callable[..., ApiKey]:
    """A dependency that admits a caller whose key has `scope` (401 or 403 otherwise)."""

    def check(request: Request, key: Annotated[str | None, Security(_header)]) -> ApiKey:
        """The caller's stored key, if it is known, not revoked, and has the scope."""
        caller = _caller(request, key)
        if scope.value not in caller.scope_set:
            raise HTTPException(403, f"this API key lacks the {scope.value} scope")
        return caller

    return check


Reader = Annotated[ApiKey, Depends(require(Scope.read))]
Writer = Annotated[ApiKey, Depends(require(Scope.write))]
