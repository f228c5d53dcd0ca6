"""The run forms of the deployments: titles and descriptions for each flow's top-level parameters.

Prefect titles a flow parameter with its Python name ("crm_closing_id") and describes it only from
a docstring's Args section; the nested closing and change models carry their own titles. This
module gives the top-level fields the words a person filling in "Custom run" needs.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from prefect.deployments.runner import RunnerDeployment


class FieldText(NamedTuple):
    """The title and description one top-level parameter shows in the run form."""

    title: str
    description: str


AS_OF = FieldText(
    "As of",
    "Leave empty to use the current time. A simulation passes its own clock: an ISO 8601 time "
    "with its zone, e.g. 2027-03-01T09:00:00-06:00.",
)

REQUEST_ID = FieldText(
    "Stored request ID",
    "Leave empty when filling in the form. The CRM API, a retry and the reconciler pass the ID of "
    "the request they stored instead of its details, so the buyer's data stays in preclose's "
    "tables.",
)

# One entry per parameter name used by any flow; a name means the same thing in every flow.
FIELDS: dict[str, dict[str, FieldText]] = {
    "coordinate closing": {
        "closing": FieldText(
            "Closing",
            "The home purchase: property, buyer, agent, dates and preferences (the JSON a CRM "
            "sends to the closings API).",
        ),
        "as_of": AS_OF,
        "request_id": REQUEST_ID,
    },
    "place due orders": {
        "crm_closing_id": FieldText(
            "CRM closing ID",
            "Place only this closing's due orders; leave empty to place every closing's.",
        ),
        "as_of": AS_OF,
    },
    "sync orders": {"as_of": AS_OF},
    "follow up closing": {
        "crm_closing_id": FieldText(
            "CRM closing ID", "The closing whose orders changed, e.g. CL-2026-0042."
        ),
        "as_of": AS_OF,
    },
    "change closing": {
        "crm_closing_id": FieldText(
            "CRM closing ID", "The closing that changed, e.g. CL-2026-0042."
        ),
        "change": FieldText(
            "Change",
            "What changed: a new closing or move-in date, a fall-through, corrected buyer "
            "contact or address. Fill in only what changed.",
        ),
        "as_of": AS_OF,
        "request_id": REQUEST_ID,
    },
    "reconcile intake": {},
}


def parameter_form(deployment: RunnerDeployment) -> dict[str, Any]:
    """The deployment's parameter schema as Prefect sends it to the server (the run form)."""
    schema: dict[str, Any] = deployment._parameter_openapi_schema.model_dump(exclude_unset=True)
    return schema


def label_parameters(deployment: RunnerDeployment) -> RunnerDeployment:
    """Give the deployment's top-level parameters their form titles and descriptions."""
    texts = FIELDS.get(deployment.flow_name or "", {})
    properties: dict[str, dict[str, Any]] = deployment._parameter_openapi_schema.properties
    for name, field in properties.items():
        # A parameter added to a flow but not here still gets a readable title; the deployment
        # tests insist that every parameter has its own text.
        text = texts.get(name) or FieldText(name.replace("_", " ").capitalize(), "")
        field["title"] = text.title
        # A description from the flow's own docstring (Args section) wins over ours.
        if not field.get("description") and text.description:
            field["description"] = text.description
    return deployment


def unlabelled_parameters(deployment: RunnerDeployment) -> list[str]:
    """The deployment's top-level parameters that have no form text here."""
    texts = FIELDS.get(deployment.flow_name or "", {})
    return [name for name in deployment._parameter_openapi_schema.properties if name not in texts]
