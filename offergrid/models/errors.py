"""Offergrid's error bodies, read in both documented styles."""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator

from offergrid.models._base import ReadModel, parse_money

__all__ = ["ErrorBody"]


class ErrorBody(ReadModel):
    """An error body: framework style {statusCode, message, error} or guide style {error, field}."""

    status_code: int | None = None
    message: str | list[str] | None = None
    error: str | None = None
    field: str | None = None
    retry_after: float | None = Field(None, description="seconds to wait, from a 429 body")

    @field_validator("retry_after", mode="before")
    @classmethod
    def _seconds(cls, value: Any) -> float | None:
        return parse_money(value)

    @field_validator("status_code", mode="before")
    @classmethod
    def _status(cls, value: Any) -> int | None:
        try:
            return int(value) if value is not None else None
        except (TypeError, ValueError):
            return None

    @field_validator("message", mode="before")
    @classmethod
    def _message(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [str(part) for part in value]
        if value is not None and not isinstance(value, str):
            return str(value)
        return value

    @classmethod
    def from_payload(cls, payload: Any) -> ErrorBody:
        """Read whatever JSON an error answer carried; a non-object becomes the message."""
        if isinstance(payload, dict):
            body = dict(payload)
            # Some frameworks nest the error object: {"error": {"message": ..., "field": ...}}.
            nested = body.get("error")
            if isinstance(nested, dict):
                body = {**body, **nested, "error": nested.get("error") or nested.get("code")}
            for key in ("error", "field"):
                if body.get(key) is not None and not isinstance(body[key], str):
                    body[key] = str(body[key])
            return cls.model_validate(body)
        if payload is None:
            return cls()
        return cls(message=str(payload)[:500])

    @property
    def detail(self) -> str | None:
        """The most specific human text: the message (list joined), else the error."""
        if isinstance(self.message, list):
            joined = "; ".join(self.message)
            if joined:
                return joined
        elif self.message:
            return self.message
        return self.error
