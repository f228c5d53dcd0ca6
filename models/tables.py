"""preclose's database tables (SQLModel): closings, plan lines, placements, items, events, calls."""

# No `from __future__ import annotations`: SQLModel reads the annotations at class creation.

import uuid
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine.interfaces import Dialect
from sqlmodel import Field, SQLModel

from models.closing import ClosingRequest
from models.plan import OfferChoice, OfferSnapshot

__all__ = [
    "JSON_TYPE",
    "ApiCall",
    "ApiKey",
    "Audience",
    "Closing",
    "ClosingBase",
    "ClosingCreate",
    "ClosingPublic",
    "ClosingStatus",
    "CrmRequest",
    "CrmRequestKind",
    "ItemStatusHistory",
    "Notification",
    "OrderItem",
    "Placement",
    "PlacementState",
    "PlanLineBase",
    "PlanLinePublic",
    "PlanLineRow",
    "PlanLineState",
    "RateLimitCall",
    "RateLimitKey",
    "StatusSource",
    "TZDateTime",
    "WebhookEvent",
    "utcnow",
]

# Deterministic constraint names: Alembic needs them to alter tables (batch mode on SQLite), and
# PostgreSQL and SQLite then agree on every name. Set before any table below is defined.
SQLModel.metadata.naming_convention = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


class TZDateTime(sa.types.TypeDecorator[datetime]):
    """A timestamp stored as UTC that always comes back timezone-aware, SQLite included."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Refuse naive datetimes and store everything else as UTC."""
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()}: pass a timezone-aware datetime")
        value = value.astimezone(UTC)
        # SQLite has no time zones; it keeps the UTC wall time as text, which sorts correctly.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Return the stored instant as an aware UTC datetime."""
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


# json on SQLite, jsonb on PostgreSQL (indexable, compact); both hand back plain Python objects.
JSON_TYPE = sa.JSON().with_variant(JSONB(), "postgresql")

# Money: two decimals in the database, floats in Python like the plan models.
MONEY_TYPE = sa.Numeric(12, 2, asdecimal=False)


def _enum_type(enum: type[StrEnum]) -> sa.Enum:
    # A VARCHAR holding the value (not a native PostgreSQL enum), so adding a state later is a
    # code change, not an ALTER TYPE.
    return sa.Enum(
        enum,
        native_enum=False,
        create_constraint=False,
        length=20,
        values_callable=lambda members: [member.value for member in members],
        validate_strings=True,
    )


def _tz(**kwargs: Any) -> Any:
    """A timezone-aware timestamp field."""
    return Field(sa_type=TZDateTime, **kwargs)


class ClosingStatus(StrEnum):
    """Where a closing stands in preclose; preclose.rules.lifecycle owns the moves between them."""

    received = "received"  # accepted, not planned yet
    planned = "planned"  # a plan is stored; nothing ordered yet
    ordering = "ordering"  # orders went out; no service live yet
    active = "active"  # some services are up and running
    fulfilled = "fulfilled"  # every service is up and running
    fell_through = "fell_through"  # the deal is off; orders cancelled where possible
    needs_attention = "needs_attention"  # a run failed for a reason a person must fix


class PlanLineState(StrEnum):
    """Where one plan line stands, from planned to an end state."""

    planned = "planned"
    placing = "placing"
    placed = "placed"
    fulfilled = "fulfilled"
    rejected = "rejected"
    failed = "failed"
    cancelled = "cancelled"
    skipped = "skipped"


class PlacementState(StrEnum):
    """What we know of one order placement: intended, placed, outcome unknown, or failed."""

    intent = "intent"
    placed = "placed"
    unknown = "unknown"
    failed = "failed"


class StatusSource(StrEnum):
    """Where an item status came from."""

    placement = "placement"
    webhook = "webhook"
    sync = "sync"
    cancel = "cancel"


class Audience(StrEnum):
    """Who a notification is for."""

    buyer = "buyer"
    agent = "agent"


# Closing --------------------------------------------------------------------------------------


class ClosingBase(SQLModel):
    """The closing's columns that an API may show: identity, status and the key facts."""

    crm_closing_id: str = Field(max_length=64, title="CRM closing ID")
    status: ClosingStatus = Field(
        default=ClosingStatus.received, sa_type=_enum_type(ClosingStatus), title="Status"
    )
    property_type: str = Field(max_length=40, title="Property type")
    occupancy: str = Field(max_length=40, title="Occupancy")
    zip_code: str = Field(max_length=10, title="ZIP code")
    state: str = Field(max_length=2, title="State")
    time_zone: str = Field(max_length=64, title="Time zone")
    closing_date: date = Field(title="Closing date")
    move_in_date: date = Field(
        title="Move-in date", description="The effective move-in: the closing date when not given."
    )
    test_mode: bool = Field(default=False, title="Test mode")
    attention_reason: str | None = Field(
        default=None,
        sa_type=sa.Text,
        title="Needs attention because",
        description="Why a person must act (set with the needs_attention status), in plain words.",
    )
    attention_at: datetime | None = _tz(default=None, title="Needs attention since")


class Closing(ClosingBase, table=True):
    """One closing preclose coordinates; `request` holds the full closing request."""

    __tablename__ = "closing"
    __table_args__ = (
        sa.UniqueConstraint("crm_closing_id"),
        sa.Index(None, "status", "closing_date"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    request: dict[str, Any] = Field(sa_type=JSON_TYPE)
    created_at: datetime = _tz(default_factory=utcnow)
    updated_at: datetime = _tz(default_factory=utcnow)
    version: int = Field(default=1, description="Bumped on every update (optimistic concurrency).")

    def closing_request(self) -> ClosingRequest:
        """The stored request as the validated model."""
        return ClosingRequest.model_validate(self.request)


class ClosingCreate(ClosingBase):
    """A new closing's columns, derived from a closing request."""

    request: dict[str, Any]

    @classmethod
    def from_request(cls, closing_in: ClosingRequest) -> "ClosingCreate":
        """Copy the query columns out of `closing_in` and keep the whole request as JSON."""
        address = closing_in.property.address
        return cls(
            crm_closing_id=closing_in.crm_closing_id,
            property_type=str(closing_in.property.property_type),
            occupancy=str(closing_in.property.occupancy),
            zip_code=address.zip_code,
            state=address.state,
            time_zone=closing_in.time_zone,
            closing_date=closing_in.closing_date,
            move_in_date=closing_in.effective_move_in,
            test_mode=closing_in.test_mode,
            request=closing_in.model_dump(mode="json"),
        )


class ClosingPublic(ClosingBase):
    """A closing as an API shows it (the request with its personal data is left out)."""

    id: uuid.UUID
    created_at: datetime
    updated_at: datetime
    version: int


# Plan line ------------------------------------------------------------------------------------


class PlanLineBase(SQLModel):
    """One category of a closing's plan: the pick, its dates and its state."""

    category: str = Field(max_length=32, title="Category")
    importance: str = Field(max_length=20, title="Importance")
    offer_id: str | None = Field(default=None, max_length=100, title="Offer ID")
    offer_name: str | None = Field(default=None, max_length=200, title="Offer name")
    provider_name: str | None = Field(default=None, max_length=200, title="Provider")
    monthly_price: float | None = Field(default=None, sa_type=MONEY_TYPE, title="Monthly price")
    first_year_cost: float | None = Field(default=None, sa_type=MONEY_TYPE, title="First-year cost")
    reason: str = Field(default="", sa_type=sa.Text, title="Why")
    problem: str | None = Field(default=None, sa_type=sa.Text, title="Problem")
    service_date: date = Field(title="Service date")
    service_window_end: date | None = Field(default=None, title="Service window end")
    placement_date: date = Field(title="Placement date")
    lead_business_days: int | None = Field(default=None, title="Lead time (business days)")
    state: PlanLineState = Field(
        default=PlanLineState.planned, sa_type=_enum_type(PlanLineState), title="State"
    )
    at_risk: bool = Field(default=False, title="At risk")
    risk_reason: str | None = Field(default=None, sa_type=sa.Text, title="Risk")
    attempt: int = Field(
        default=1, ge=1, title="Attempt", description="1, then +1 for each re-pick after a failure."
    )


class PlanLineRow(PlanLineBase, table=True):
    """A plan line as stored; earlier attempts of a category stay as history."""

    __tablename__ = "plan_line"
    __table_args__ = (
        sa.UniqueConstraint("closing_id", "category", "attempt"),
        sa.Index(None, "state", "placement_date"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    closing_id: uuid.UUID = Field(foreign_key="closing.id", ondelete="CASCADE")
    offer_snapshot: dict[str, Any] | None = Field(default=None, sa_type=JSON_TYPE)
    runners_up: list[dict[str, Any]] = Field(default_factory=list, sa_type=JSON_TYPE)
    created_at: datetime = _tz(default_factory=utcnow)
    updated_at: datetime = _tz(default_factory=utcnow)

    def offer_choice(self) -> OfferChoice | None:
        """The chosen offer as the plan model, or None when the line has no pick."""
        if self.offer_id is None:
            return None
        return OfferChoice(
            offer_id=self.offer_id,
            offer_name=self.offer_name or "",
            provider_name=self.provider_name,
            monthly_price=self.monthly_price,
            first_year_cost=self.first_year_cost,
            snapshot=OfferSnapshot.model_validate(
                self.offer_snapshot or {"name": self.offer_name or ""}
            ),
        )

    def runner_up_choices(self) -> list[OfferChoice]:
        """The runners-up as plan models, best first."""
        return [OfferChoice.model_validate(item) for item in self.runners_up]


class PlanLinePublic(PlanLineBase):
    """A plan line as an API shows it."""

    id: uuid.UUID
    closing_id: uuid.UUID
    offer_snapshot: dict[str, Any] | None = None
    runners_up: list[dict[str, Any]] = []
    created_at: datetime
    updated_at: datetime


# Orders ---------------------------------------------------------------------------------------


class Placement(SQLModel, table=True):
    """One Offergrid order we intend to place or placed; the intent is stored before any call."""

    __tablename__ = "placement"
    __table_args__ = (
        sa.UniqueConstraint("intent_key"),
        sa.UniqueConstraint("offergrid_order_id"),
        sa.Index(None, "closing_id"),
        sa.Index(None, "state"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    closing_id: uuid.UUID = Field(foreign_key="closing.id", ondelete="CASCADE")
    intent_key: str = Field(
        max_length=120, description="The Idempotency-Key, made once before the first attempt."
    )
    due_date: date
    state: PlacementState = Field(default=PlacementState.intent, sa_type=_enum_type(PlacementState))
    offergrid_order_id: str | None = Field(default=None, max_length=100)
    last_error: str | None = Field(default=None, sa_type=sa.Text)
    attempts: int = Field(
        default=0,
        description="Order calls tried; after the first, look the order up before another.",
    )
    claimed_until: datetime | None = _tz(
        default=None, description="A placer holds the placement until then (a lease, not a lock)."
    )
    created_at: datetime = _tz(default_factory=utcnow)
    placed_at: datetime | None = _tz(default=None)
    updated_at: datetime = _tz(default_factory=utcnow)


class OrderItem(SQLModel, table=True):
    """One item of a placement: the plan line it fulfils and Offergrid's latest word on it."""

    __tablename__ = "order_item"
    __table_args__ = (
        sa.UniqueConstraint("plan_line_id"),
        sa.UniqueConstraint("offergrid_item_id"),
        sa.Index(None, "placement_id"),
        sa.Index(None, "status"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    placement_id: uuid.UUID = Field(foreign_key="placement.id", ondelete="CASCADE")
    # No cascade: a line that has an order item must never be deleted.
    plan_line_id: uuid.UUID = Field(foreign_key="plan_line.id")
    offergrid_item_id: str | None = Field(default=None, max_length=100)
    offer_id: str = Field(max_length=100)
    status: str | None = Field(
        default=None,
        max_length=40,
        description="Offergrid's item status; None until the order is placed; unknown values kept.",
    )
    scheduled_for: datetime | None = _tz(default=None)
    account_number: str | None = Field(default=None, max_length=100)
    provider_notes: str | None = Field(default=None, sa_type=sa.Text)
    status_at: datetime | None = _tz(
        default=None, description="When the event that set `status` happened (at Offergrid)."
    )
    updated_at: datetime = _tz(default_factory=utcnow)


class ItemStatusHistory(SQLModel, table=True):
    """Every status an item took, where we learnt it, and when it happened."""

    __tablename__ = "item_status_history"
    __table_args__ = (sa.Index(None, "order_item_id", "at"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    order_item_id: uuid.UUID = Field(foreign_key="order_item.id", ondelete="CASCADE")
    status: str = Field(max_length=40)
    at: datetime = _tz()
    source: StatusSource = Field(sa_type=_enum_type(StatusSource))
    notes: str | None = Field(default=None, sa_type=sa.Text)
    recorded_at: datetime = _tz(default_factory=utcnow)


# Events, calls, notifications -----------------------------------------------------------------


class WebhookEvent(SQLModel, table=True):
    """One webhook delivery as received; `dedupe_key` is set only for verified deliveries."""

    __tablename__ = "webhook_event"
    __table_args__ = (
        sa.UniqueConstraint("dedupe_key"),
        sa.Index(None, "offergrid_item_id"),
        sa.Index(None, "received_at"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    dedupe_key: str | None = Field(default=None, max_length=128)
    event_type: str | None = Field(default=None, max_length=64)
    offergrid_order_id: str | None = Field(default=None, max_length=100)
    offergrid_item_id: str | None = Field(default=None, max_length=100)
    raw_body: str = Field(sa_type=sa.Text)
    signature_ok: bool
    received_at: datetime = _tz(default_factory=utcnow)
    processed_at: datetime | None = _tz(default=None)
    outcome: str | None = Field(default=None, max_length=200)


class WebhookRefusal(SQLModel, table=True):
    """How many deliveries were refused for one reason in one hour: nothing else of them is kept.

    A refused delivery is unverified (or unusable), so neither its body nor its headers are
    stored: a flood of forged posts grows one counter, not the database.
    """

    __tablename__ = "webhook_refusal"
    __table_args__ = (sa.UniqueConstraint("reason", "hour"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    reason: str = Field(max_length=40)
    hour: datetime = _tz(description="The start of the UTC hour the refusals were received in.")
    count: int = Field(default=0)
    last_at: datetime = _tz(default_factory=utcnow)


class ApiCall(SQLModel, table=True):
    """One call to Offergrid, for latency and error figures."""

    __tablename__ = "api_call"
    __table_args__ = (sa.Index(None, "at"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    endpoint: str = Field(max_length=200)
    method: str = Field(max_length=10)
    status_code: int | None = Field(default=None, description="None when no response came back.")
    latency_ms: float
    error_type: str | None = Field(default=None, max_length=100)
    at: datetime = _tz(default_factory=utcnow)


class Notification(SQLModel, table=True):
    """One message to the buyer or agent; the dedupe key makes each milestone told once."""

    __tablename__ = "notification"
    __table_args__ = (
        sa.UniqueConstraint("dedupe_key"),
        sa.Index(None, "closing_id"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    closing_id: uuid.UUID = Field(foreign_key="closing.id", ondelete="CASCADE")
    audience: Audience = Field(sa_type=_enum_type(Audience))
    milestone: str = Field(max_length=64)
    channel: str = Field(max_length=32)
    body: str = Field(sa_type=sa.Text)
    dedupe_key: str = Field(max_length=200)
    created_at: datetime = _tz(default_factory=utcnow)
    sent_at: datetime | None = _tz(default=None)


class PublishedArtifact(SQLModel, table=True):
    """What was last published to Prefect under an artifact key, shared by every process.

    `digest` is a hash of the facts the artifact shows; a key whose facts have not changed is not
    touched. `artifact_id` is the Prefect artifact kept current under the key: it is updated in
    place (one write, no events), where each new version cost Prefect's server a write and two
    events.
    """

    __tablename__ = "published_artifact"

    key: str = Field(primary_key=True, max_length=100)
    digest: str = Field(max_length=64)
    published_at: datetime = _tz(default_factory=utcnow)
    artifact_id: uuid.UUID | None = Field(default=None)


# CRM API: caller keys and the requests CRMs sent -----------------------------------------------


class CrmRequestKind(StrEnum):
    """What a CRM asked about a closing: to start coordinating it, or to change it."""

    start = "start"
    change = "change"
    retry = "retry"


class ApiKey(SQLModel, table=True):
    """A key a CRM calls the API with; only its SHA-256 is stored, the key itself is shown once."""

    __tablename__ = "api_key"
    __table_args__ = (
        sa.UniqueConstraint("name"),
        sa.UniqueConstraint("key_hash"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    name: str = Field(max_length=100, description="Who holds the key, e.g. the CRM's name.")
    key_hash: str = Field(max_length=64, description="Hex SHA-256 of the key.")
    key_prefix: str = Field(
        max_length=16, description="The key's first characters, to tell keys apart in a listing."
    )
    scopes: str = Field(
        max_length=200, description="Space-separated scopes, e.g. 'closings:read closings:write'."
    )
    created_at: datetime = _tz(default_factory=utcnow)
    revoked_at: datetime | None = _tz(default=None)

    @property
    def scope_set(self) -> frozenset[str]:
        """The key's scopes as a set."""
        return frozenset(self.scopes.split())


class CrmRequest(SQLModel, table=True):
    """One request a CRM sent about a closing, stored (and committed) before its run is started."""

    __tablename__ = "crm_request"
    __table_args__ = (
        sa.UniqueConstraint("idempotency_key"),
        sa.Index(None, "closing_id", "received_at"),
        sa.Index(None, "finished_at"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    closing_id: uuid.UUID = Field(foreign_key="closing.id", ondelete="CASCADE")
    kind: CrmRequestKind = Field(sa_type=_enum_type(CrmRequestKind))
    idempotency_key: str = Field(
        max_length=200, description="Made once per logical request; a resend finds this row."
    )
    body: dict[str, Any] | None = Field(
        default=None, sa_type=JSON_TYPE, description="A change as sent; None for a start."
    )
    flow_run_id: uuid.UUID | None = Field(
        default=None, description="The Prefect flow run started for it; None until started."
    )
    received_at: datetime = _tz(default_factory=utcnow)
    started_at: datetime | None = _tz(default=None)
    last_error: str | None = Field(
        default=None, sa_type=sa.Text, description="Why the run could not be started, if so."
    )
    attempt: int = Field(default=1, description="Runs started for it so far (restarts add one).")
    finished_at: datetime | None = _tz(
        default=None, description="When a run finished it (done, refused, or needs attention)."
    )
    outcome: str | None = Field(default=None, max_length=200, description="How it finished.")


# The rate limiter's sliding log (preclose/storage/ratelimit.py) ---------------------------------


class RateLimitKey(SQLModel, table=True):
    """One API key's shared limiter state; its row is the lock every acquisition takes."""

    __tablename__ = "rate_limit_key"

    key_fingerprint: str = Field(primary_key=True, max_length=64)
    paused_until: float = Field(
        default=0.0,
        sa_type=sa.Double,
        description="Epoch seconds before which no call may go (a 429's Retry-After).",
    )
    attempts: int = Field(default=0, description="Acquisition attempts, a measure of contention.")


class RateLimitCall(SQLModel, table=True):
    """One admitted call, kept while it is inside the longer window."""

    __tablename__ = "rate_limit_call"
    __table_args__ = (sa.Index("ix_rate_limit_call_key_fingerprint_at", "key_fingerprint", "at"),)

    # An integer key: this is a high-churn log, and SQLite keeps it as its compact rowid.
    id: int | None = Field(default=None, primary_key=True)
    key_fingerprint: str = Field(
        foreign_key="rate_limit_key.key_fingerprint", ondelete="CASCADE", max_length=64
    )
    # Epoch seconds as a float: the limiter does arithmetic on it, and both backends agree on it.
    at: float = Field(sa_type=sa.Double)
