"""API docs work offline on both apps, and the local Offergrid's OpenAPI says what it answers."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi import FastAPI
from starlette.testclient import TestClient

from offergrid_sandbox.app import create_app
from preclose.app.api import create_api
from preclose.settings import Settings


def _apps(tmp_path: Path) -> dict[str, FastAPI]:
    return {
        "preclose": create_api(Settings(data_dir=tmp_path)),
        "offergrid": create_app(),
    }


@pytest.mark.parametrize("which", ["preclose", "offergrid"])
@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_load_every_asset_from_the_app_itself(tmp_path: Path, which: str, page: str) -> None:
    """The docs pages name no outside host, and every script and style they load is served."""
    http = TestClient(_apps(tmp_path)[which])
    html = http.get(page)
    assert html.status_code == 200
    assert "cdn" not in html.text and "fonts.googleapis" not in html.text
    assets = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html.text)
    assert any(a.endswith(".js") for a in assets)
    for asset in assets:
        assert asset.startswith("/"), asset
        response = http.get(asset)
        assert response.status_code == 200 and len(response.content) > 100, asset


def test_local_offergrid_documents_its_key_bodies_and_errors() -> None:
    """x-api-key guards reseller and provider routes; bodies are typed; no phantom 422."""
    spec = TestClient(create_app()).get("/openapi.json").json()
    scheme = spec["components"]["securitySchemes"]["api-key"]
    assert (scheme["type"], scheme["in"], scheme["name"]) == ("apiKey", "header", "x-api-key")
    place = spec["paths"]["/reseller/orders"]["post"]
    assert place["security"] == [{"api-key": []}]
    body = place["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/CreateOrderDto"}
    assert {"400", "401", "403", "429"} <= set(place["responses"])
    status = spec["paths"]["/provider/orders/{item_id}/status"]["patch"]
    assert {"400", "404", "409"} <= set(status["responses"])
    assert "422" not in status["responses"]
    assert "security" not in spec["paths"]["/sandbox/reset"]["post"]
