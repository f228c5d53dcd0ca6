"""What shapes one local Offergrid: keys, clock, limits, faults, simulated providers, webhooks."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr

Role = Literal["reseller", "provider", "hybrid"]

# The documented local keys. They are sandbox-only and printed on start; they guard nothing real.
RESELLER_KEY = "og_sandbox_reseller"
PROVIDER_KEY = "og_sandbox_provider"  # acts for every simulated provider team
HYBRID_KEY = "og_sandbox_hybrid"
RESELLER_TEAM = "team-sandbox-reseller"


class ApiKeyConfig(BaseModel):
    """One API key, the team it belongs to and the team's role."""

    key: SecretStr
    team_id: str
    role: Role


class RateLimitConfig(BaseModel):
    """Per-key limits; the windows can be shortened so a benchmark runs the same shape faster."""

    enabled: bool = True
    model: Literal["rolling", "token_bucket"] = "rolling"
    per_minute: int = Field(100, ge=1)
    per_hour: int = Field(10_000, ge=1)
    minute_seconds: float = Field(
        60.0, gt=0, description="length of the short window, real seconds"
    )
    hour_seconds: float = Field(3600.0, gt=0, description="length of the long window, real seconds")


class FaultConfig(BaseModel):
    """Switches that make the sandbox misbehave like a real service on a bad day."""

    error_rate: float = Field(0.0, ge=0, le=1, description="share of requests answered 5xx")
    latency_ms: int = Field(0, ge=0, description="added to every response")
    timeout_rate: float = Field(
        0.0, ge=0, le=1, description="share of requests that hang past the client timeout"
    )
    timeout_seconds: float = Field(30.0, ge=0, description="how long a 'timeout' request hangs")
    committed_then_failed_rate: float = Field(
        0.0, ge=0, le=1, description="share of order placements created but answered 5xx or dropped"
    )
    committed_then_failed_mode: Literal["5xx", "drop"] = "5xx"
    ignore_idempotency_key: bool = Field(
        False,
        description="accept Idempotency-Key but never honour it, as a real service may: every "
        "POST /reseller/orders creates a new order",
    )


class SimulationConfig(BaseModel):
    """How the simulated providers behave; delays are in sandbox-clock hours."""

    enabled: bool = True
    review_hours: tuple[float, float] = (2.0, 24.0)  # pending -> submitted/accepted or rejected
    schedule_hours: tuple[float, float] = (2.0, 12.0)  # accepted -> scheduled
    install_lead_days: tuple[float, float] = (5.0, 10.0)  # acceptance -> installation date
    install_hours: tuple[float, float] = (2.0, 6.0)  # in_progress -> completed
    activation_hours: tuple[float, float] = (1.0, 24.0)  # completed -> active
    rejection_rate: float = Field(0.05, ge=0, le=1)
    failure_rate: float = Field(0.03, ge=0, le=1)
    instant_activation_categories: list[str] = ["insurance"]


class WebhookConfig(BaseModel):
    """Where reseller events go, how they are signed, and how delivery misbehaves."""

    url: str | None = None
    secret: SecretStr = SecretStr("whsec_sandbox")
    timeout_seconds: float = 5.0
    max_attempts: int = 8
    # First retry after ~11 min of sandbox time, doubling: 8 attempts span about a day (contract).
    backoff_seconds: float = 680.0
    drop_rate: float = Field(0.0, ge=0, le=1)
    duplicate_rate: float = Field(0.0, ge=0, le=1)
    delay_seconds: float = Field(0.0, ge=0)
    reorder: bool = False


class SandboxConfig(BaseModel):
    """One local Offergrid's settings; every field has a default that runs."""

    seed: int = 7
    clock: Literal["real", "virtual"] = "real"
    start_time: datetime | None = None  # virtual clock start; now when absent
    extra_keys: list[ApiKeyConfig] = []
    rate_limit: RateLimitConfig = RateLimitConfig()
    faults: FaultConfig = FaultConfig()
    simulation: SimulationConfig = SimulationConfig()
    webhooks: WebhookConfig = WebhookConfig()
    idempotency_hours: float = 24.0
    max_body_bytes: int = 1_000_000
    # Where orders, items and offers are kept across restarts; None keeps them in memory only.
    state_file: Path | None = None
