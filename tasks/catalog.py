"""The catalog task: offers at a ZIP, cached per ZIP and category by Prefect."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from prefect import task
from prefect.context import TaskRunContext

from offergrid.models import Offer
from preclose.runtime import endpoint_fingerprint, offergrid_client
from preclose.settings import get_settings
from tasks.policies import OFFERGRID_TASK_OPTIONS


def catalog_cache_key(context: TaskRunContext, parameters: dict[str, Any]) -> str:
    """One cache entry per Offergrid endpoint, ZIP and category (never the key itself)."""
    category = parameters.get("category") or "all"
    return f"offergrid-catalog-{endpoint_fingerprint()}-{parameters['zip_code']}-{category}"


@task(
    name="fetch offers",
    cache_key_fn=catalog_cache_key,
    cache_expiration=timedelta(hours=3),
    persist_result=True,
    task_run_name="offers at {zip_code}",
    **OFFERGRID_TASK_OPTIONS,
)
def fetch_offers(zip_code: str, category: str | None = None) -> list[Offer]:
    """Every offer Offergrid lists at a ZIP (optionally one category)."""
    with offergrid_client() as client:
        return client.list_offers(zip_code=zip_code, category=category)


def cached_fetch_offers() -> Any:
    """`fetch_offers` with the configured cache lifetime (1 to 6 hours, per the docs' advice)."""
    hours = get_settings().catalog_cache_hours
    return fetch_offers.with_options(cache_expiration=timedelta(hours=hours))
