"""API keys, teams and roles: who is calling, and whether their role opens the route.

Keys are compared in constant time, every key against the one presented, so timing does not tell
which key (or how much of one) matched. Keys never appear in a repr, a log line or an error.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from offergrid_sandbox.catalog import ProviderInfo
from offergrid_sandbox.config import (
    HYBRID_KEY,
    PROVIDER_KEY,
    RESELLER_KEY,
    RESELLER_TEAM,
    Role,
    SandboxConfig,
)
from offergrid_sandbox.schemas import SandboxError, error_body

OPERATOR_TEAM = "team-sandbox-operator"
PRINCIPAL_SCOPE_KEY = "offergrid_sandbox.principal"
PROVIDER_KEY_PREFIX = "og_provider_"


@dataclass(frozen=True)
class Principal:
    """The team behind an API key, its role, and whether it is the sandbox operator."""

    key_id: str  # a stable label for the key (rate-limit bucket), never the key itself
    team_id: str
    role: Role
    operator: bool = False  # the sandbox operator acts for every provider team

    @property
    def can_resell(self) -> bool:
        """Whether the reseller routes are open to this key."""
        return self.role in ("reseller", "hybrid")

    @property
    def can_provide(self) -> bool:
        """Whether the provider routes are open to this key."""
        return self.role in ("provider", "hybrid")

    @property
    def provider_scope(self) -> str | None:
        """The provider team this key acts for on provider routes; None means every team."""
        return None if self.operator else self.team_id


@dataclass(frozen=True)
class _Entry:
    digest: bytes
    principal: Principal
    documented: dict[str, Any] | None  # shown by GET /sandbox/keys; None for configured keys


def _digest(key: str) -> bytes:
    # Comparing fixed-length digests keeps the comparison time independent of the key's length.
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


class KeyRing:
    """Every key the sandbox accepts: the documented local keys, one per provider, and extras."""

    def __init__(self, config: SandboxConfig, providers: Iterable[ProviderInfo]) -> None:
        self._entries: list[_Entry] = []
        self._add(RESELLER_KEY, Principal("reseller", RESELLER_TEAM, "reseller"), "reseller")
        self._add(
            PROVIDER_KEY,
            Principal("provider", OPERATOR_TEAM, "provider", operator=True),
            "sandbox operator: provider role, acts for every provider",
        )
        self._add(
            HYBRID_KEY,
            Principal("hybrid", RESELLER_TEAM, "hybrid", operator=True),
            "hybrid: the reseller team plus the sandbox operator",
        )
        for provider in providers:
            self._add(
                f"{PROVIDER_KEY_PREFIX}{provider.id}",
                Principal(f"provider:{provider.id}", provider.id, "provider"),
                f"provider {provider.name} only",
                provider_name=provider.name,
            )
        for i, extra in enumerate(config.extra_keys):
            principal = Principal(f"extra:{i}:{extra.team_id}", extra.team_id, extra.role)
            self._entries.append(_Entry(_digest(extra.key.get_secret_value()), principal, None))

    def _add(
        self, key: str, principal: Principal, note: str, *, provider_name: str | None = None
    ) -> None:
        shown: dict[str, Any] = {
            "key": key,
            "teamId": principal.team_id,
            "role": principal.role,
            "note": note,
        }
        if provider_name is not None:
            shown["providerName"] = provider_name
        self._entries.append(_Entry(_digest(key), principal, shown))

    def authenticate(self, presented: str | None) -> Principal | None:
        """The principal whose key equals `presented`, or None."""
        if not presented:
            return None
        candidate = _digest(presented)
        found: Principal | None = None
        for entry in self._entries:
            if hmac.compare_digest(entry.digest, candidate) and found is None:
                found = entry.principal
        return found

    def documented_keys(self) -> list[dict[str, Any]]:
        """The sandbox's own local keys (not configured extras), for GET /sandbox/keys."""
        return [dict(e.documented) for e in self._entries if e.documented is not None]

    def __repr__(self) -> str:
        return f"KeyRing({len(self._entries)} keys)"


UNAUTHORIZED_BODY = error_body(401, "Unauthorized - invalid API key")


def forbidden_body(role: str) -> dict[str, Any]:
    """The documented 403 body for a key whose role does not open the route."""
    return error_body(403, f"Forbidden - {role} role required")


def required_role(path: str) -> str | None:
    """The role a path needs ("Reseller", "Provider"), or None for open paths."""
    if path == "/reseller" or path.startswith("/reseller/"):
        return "Reseller"
    if path == "/provider" or path.startswith("/provider/"):
        return "Provider"
    return None


def allows(principal: Principal, role: str) -> bool:
    """Whether `principal` may use routes needing `role`."""
    return principal.can_resell if role == "Reseller" else principal.can_provide


def request_principal(request: Request) -> Principal:
    """The principal the gateway authenticated for this request (401 if none)."""
    principal = request.scope.get(PRINCIPAL_SCOPE_KEY)
    if not isinstance(principal, Principal):
        raise SandboxError(401, UNAUTHORIZED_BODY["message"])
    return principal
