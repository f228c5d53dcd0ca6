"""The deployments, built without a server: names, entrypoints, schedules, triggers, run forms."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from prefect.client.schemas.objects import ConcurrencyLimitStrategy
from prefect.client.schemas.schedules import CronSchedule, IntervalSchedule
from prefect.deployments.runner import RunnerDeployment
from prefect.events import DeploymentEventTrigger

from deployments.build import ROOT, build_deployments
from deployments.forms import parameter_form, unlabelled_parameters
from preclose.names import (
    CHANGE,
    COORDINATE,
    CRM_ID_LABEL,
    FOLLOW_UP,
    PLACE_DUE,
    RECONCILE,
    STATUS_CHANGED_EVENT,
    SYNC,
    closing_resource,
)
from preclose.settings import get_settings


def _by_name(deployments: list[RunnerDeployment]) -> dict[str, RunnerDeployment]:
    return {f"{d.flow_name}/{d.name}": d for d in deployments}


@pytest.fixture
def deployments() -> dict[str, RunnerDeployment]:
    """Every deployment, built with the default settings."""
    return _by_name(build_deployments())


def test_every_flow_has_one_deployment(deployments: dict[str, RunnerDeployment]) -> None:
    """The five flows are deployed once each under the shared names, with descriptions."""
    assert set(deployments) == {COORDINATE, PLACE_DUE, SYNC, FOLLOW_UP, CHANGE, RECONCILE}
    for deployment in deployments.values():
        assert deployment.description and len(deployment.description) > 40
        assert deployment.tags == ["preclose"]
        assert deployment.work_pool_name is None and deployment.storage is None


def test_entrypoints_are_relative_to_the_repository_root(
    deployments: dict[str, RunnerDeployment],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each entrypoint names a file under the repository root, whatever the build's directory."""
    for deployment in deployments.values():
        assert deployment.entrypoint is not None
        path, function = deployment.entrypoint.split(":")
        assert not Path(path).is_absolute() and path.startswith("flows/")
        assert f"def {function}(" in (ROOT / path).read_text()
    monkeypatch.chdir(tmp_path)
    elsewhere = _by_name(build_deployments())
    assert {n: d.entrypoint for n, d in elsewhere.items()} == {
        n: d.entrypoint for n, d in deployments.items()
    }


def test_sync_runs_on_the_configured_interval(
    deployments: dict[str, RunnerDeployment], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`sync orders` runs every 15 minutes by default, or every PRECLOSE_SYNC_INTERVAL_MINUTES."""
    (schedule,) = deployments[SYNC].schedules
    assert isinstance(schedule.schedule, IntervalSchedule)
    assert schedule.schedule.interval == timedelta(minutes=15)
    assert schedule.active
    options = deployments[SYNC].concurrency_options
    assert deployments[SYNC].concurrency_limit == 1 and options is not None
    assert options.collision_strategy == ConcurrencyLimitStrategy.CANCEL_NEW

    monkeypatch.setenv("PRECLOSE_SYNC_INTERVAL_MINUTES", "5")
    get_settings.cache_clear()
    (schedule,) = _by_name(build_deployments())[SYNC].schedules
    assert isinstance(schedule.schedule, IntervalSchedule)
    assert schedule.schedule.interval == timedelta(minutes=5)


def test_place_due_orders_runs_daily_for_all_closings(
    deployments: dict[str, RunnerDeployment],
) -> None:
    """`place due orders` runs at 08:00 Central every day, with no closing (all of them)."""
    (schedule,) = deployments[PLACE_DUE].schedules
    assert isinstance(schedule.schedule, CronSchedule)
    assert schedule.schedule.cron == "0 8 * * *"
    assert schedule.schedule.timezone == "America/Chicago"
    assert not schedule.parameters and not deployments[PLACE_DUE].parameters
    for name in (COORDINATE, FOLLOW_UP, CHANGE):
        assert deployments[name].schedules == []


def test_follow_up_is_triggered_by_status_change_events(
    deployments: dict[str, RunnerDeployment],
) -> None:
    """FOLLOW_UP has the one trigger: status-changed events of any closing, its CRM ID passed."""
    (trigger,) = deployments[FOLLOW_UP].triggers
    assert isinstance(trigger, DeploymentEventTrigger)
    assert trigger.expect == {STATUS_CHANGED_EVENT}
    assert trigger.match.model_dump() == {"prefect.resource.id": "preclose.closing.*"}
    assert trigger.parameters == {
        "crm_closing_id": "{{ event.resource['preclose.app.crm-closing-id'] }}"
    }
    assert trigger.threshold == 1 and trigger.enabled
    # The resource the webhook receiver emits matches the pattern and carries the label.
    resource = closing_resource("CL-2026-0042")
    assert resource["prefect.resource.id"].startswith("preclose.closing.")
    assert resource[CRM_ID_LABEL] == "CL-2026-0042"
    for name in (COORDINATE, PLACE_DUE, SYNC, CHANGE):
        assert deployments[name].triggers == []


def _definition(form: dict[str, Any], ref: str) -> dict[str, Any]:
    definition: dict[str, Any] = form["definitions"][ref.rsplit("/", 1)[-1]]
    return definition


def test_every_form_field_has_a_title_and_description(
    deployments: dict[str, RunnerDeployment],
) -> None:
    """Every top-level parameter has its own title and description, in signature order."""
    for name, deployment in deployments.items():
        assert unlabelled_parameters(deployment) == [], name
        form = parameter_form(deployment)
        fields = form["properties"]
        for key, field in fields.items():
            assert field["title"] != key and field["title"][0].isupper(), (name, key)
            assert field.get("description"), (name, key)
        assert [f["position"] for f in fields.values()] == list(range(len(fields)))
        # The simulation's clock comes last of what a person fills in (a machine's ID after it).
        filled = [key for key in fields if key != "request_id"]
        assert not filled or filled[-1] == "as_of"


def test_coordinate_form_is_the_closing_request(
    deployments: dict[str, RunnerDeployment],
) -> None:
    """The coordinate form asks for a closing whose sections, dates and enums render as a form."""
    form = parameter_form(deployments[COORDINATE])
    # Optional: a machine passes a stored request's ID instead of the closing.
    assert form.get("required", []) == []
    assert list(form["properties"]) == ["closing", "as_of", "request_id"]
    closing = _definition(form, form["properties"]["closing"]["anyOf"][0]["$ref"])
    assert list(closing["properties"])[:5] == [
        "crm_closing_id",
        "property",
        "buyer",
        "agent",
        "closing_date",
    ]
    assert closing["properties"]["closing_date"]["format"] == "date"
    # Left empty, the time zone comes from the ZIP code.
    assert closing["properties"]["time_zone"].get("default") is None
    assert "ZIP code" in closing["properties"]["time_zone"]["description"]
    for field in closing["properties"].values():
        assert field.get("title") or "$ref" in field
    # Enums are dropdowns: a definition with the allowed values.
    property_info = _definition(form, closing["properties"]["property"]["$ref"])
    property_type = _definition(form, property_info["properties"]["property_type"]["$ref"])
    assert "single_family" in property_type["enum"] and "condo" in property_type["enum"]
    occupancy = property_info["properties"]["occupancy"]
    assert occupancy["default"] == "owner_occupied"
    assert _definition(form, occupancy["$ref"])["enum"] == [
        "owner_occupied",
        "rental",
        "second_home",
    ]


def test_place_and_follow_up_forms(deployments: dict[str, RunnerDeployment]) -> None:
    """Place due orders takes an optional CRM ID (all closings when empty); follow-up needs one."""
    place = parameter_form(deployments[PLACE_DUE])
    assert place.get("required", []) == []
    assert place["properties"]["crm_closing_id"]["default"] is None
    follow_up = parameter_form(deployments[FOLLOW_UP])
    assert follow_up["required"] == ["crm_closing_id"]
    change = parameter_form(deployments[CHANGE])
    assert change.get("required", []) == []
    assert set(change["properties"]) == {"crm_closing_id", "change", "as_of", "request_id"}


def test_pool_deployments_run_from_the_repository(tmp_path: Path) -> None:
    """Built for a work pool, every deployment pulls from the repository root, same schedules."""
    served = _by_name(build_deployments())
    pooled = _by_name(build_deployments(work_pool_name="preclose-pool"))
    assert set(pooled) == set(served)
    for name, deployment in pooled.items():
        assert deployment.work_pool_name == "preclose-pool"
        assert deployment.storage is not None
        assert deployment.storage.to_pull_step() == {
            "prefect.deployments.steps.set_working_directory": {"directory": str(ROOT)}
        }
        assert deployment.entrypoint == served[name].entrypoint
        assert [s.schedule for s in deployment.schedules] == [
            s.schedule for s in served[name].schedules
        ]
        assert (
            parameter_form(deployment)["properties"] == parameter_form(served[name])["properties"]
        )
