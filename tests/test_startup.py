"""What `preclose serve` and the CLI check at start, each mistake one line; the Prefect server
record that stops a left-behind server and lets the CRM functions find the running one."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prefect.settings import PREFECT_API_URL, temporary_settings

from offergrid_sandbox.config import PROVIDER_KEY, RESELLER_KEY
from preclose.app import checks, cli, crm
from preclose.prefect_api import (
    NoPrefectApiError,
    RecordedServer,
    find_prefect_api,
    read_server,
    record_server,
    stop_recorded_server,
)
from preclose.settings import Settings, get_settings
from preclose.storage.db import dispose_engines
from tests.fixtures_planning import closing_data
from tests.fixtures_sandbox import free_port, live_sandbox, live_sandbox_url, sandbox_config

__all__ = ["live_sandbox", "live_sandbox_url", "sandbox_config"]  # fixtures used below


def _run_cli(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *argv: str
) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["preclose", *argv])
    with pytest.raises(SystemExit) as exit_:
        cli.main()
    captured = capsys.readouterr()
    return int(exit_.value.code or 0), captured.err + captured.out


@pytest.mark.parametrize("port", ["99999", "0", "-1"])
def test_a_port_out_of_range_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], port: str
) -> None:
    """`preclose sandbox --port 99999` names the option and the range, before any banner."""
    code, text = _run_cli(monkeypatch, capsys, "sandbox", "--port", port)
    assert code == 2
    assert text.strip() == (
        f"preclose: --port {port} is not a TCP port: give a number from 1 to 65535"
    )


def test_a_dead_database_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A PRECLOSE_DATABASE_URL naming a server that is not there is one line, password hidden."""
    url = f"postgresql://preclose:hunter2@127.0.0.1:{free_port()}/nowhere"
    monkeypatch.setenv("PRECLOSE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("PRECLOSE_DATABASE_URL", url)
    get_settings.cache_clear()
    code, text = _run_cli(monkeypatch, capsys, "api-key", "list")
    dispose_engines()
    assert code == 2 and len(text.strip().splitlines()) == 1
    assert "PRECLOSE_DATABASE_URL" in text and "start that database server" in text
    assert "hunter2" not in text


def test_an_unwritable_data_dir_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A data directory that cannot be made is one line naming PRECLOSE_DATA_DIR."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("PRECLOSE_DATA_DIR", str(blocker / "data"))
    get_settings.cache_clear()
    code, text = _run_cli(monkeypatch, capsys, "api-key", "list")
    assert code == 2 and len(text.strip().splitlines()) == 1
    assert "PRECLOSE_DATA_DIR: cannot write to" in text


@pytest.mark.parametrize(
    ("key", "needle"),
    [("og_wrong", "refused the key (401)"), (PROVIDER_KEY, "not a reseller key (403)")],
)
def test_offergrid_key_is_checked_at_start(live_sandbox_url: str, key: str, needle: str) -> None:
    """A refused or non-reseller key is found by one request at start, named by its variable."""
    with pytest.raises(checks.StartupError, match="PRECLOSE_OFFERGRID_API_KEY") as err:
        checks.check_offergrid(live_sandbox_url, key)
    assert needle in str(err.value) and key not in str(err.value)
    checks.check_offergrid(live_sandbox_url, RESELLER_KEY)  # the right key passes


def test_a_dead_offergrid_is_found_at_start() -> None:
    """An Offergrid URL nobody answers at is one line naming PRECLOSE_OFFERGRID_BASE_URL."""
    with pytest.raises(checks.StartupError, match="PRECLOSE_OFFERGRID_BASE_URL: cannot reach"):
        checks.check_offergrid(f"http://127.0.0.1:{free_port()}", RESELLER_KEY)


def test_serving_real_offergrid_needs_a_webhook_secret(tmp_path: Path) -> None:
    """Without a webhook secret every delivery would be refused, so serve refuses to start."""
    with pytest.raises(checks.StartupError, match="PRECLOSE_OFFERGRID_WEBHOOK_SECRET"):
        checks.check_webhook_secret(Settings(data_dir=tmp_path))


def _fake_server() -> subprocess.Popen[bytes]:
    # A process that looks like a Prefect server (its command line says so) and leads its group.
    process = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(120)", "prefect", "server"],
        start_new_session=True,
    )
    cmdline = Path(f"/proc/{process.pid}/cmdline")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and b"prefect" not in cmdline.read_bytes():
        time.sleep(0.02)  # until it has exec'd (Linux; elsewhere the record is trusted)
    return process


def test_a_server_left_by_an_earlier_serve_is_stopped_at_the_next_start(tmp_path: Path) -> None:
    """The recorded server (left after a kill -9 of serve) is stopped and its record removed."""
    settings = Settings(data_dir=tmp_path)
    left = _fake_server()
    try:
        record_server(settings, RecordedServer(pid=left.pid, api_url="http://127.0.0.1:1/api"))
        assert stop_recorded_server(settings, timeout=10) == left.pid
        assert left.wait(timeout=10) is not None
        assert read_server(settings) is None
    finally:
        left.kill()


def test_a_record_whose_process_is_gone_is_only_forgotten(tmp_path: Path) -> None:
    """A record naming a finished process stops nothing and is removed."""
    settings = Settings(data_dir=tmp_path)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    time.sleep(0.1)
    record_server(settings, RecordedServer(pid=gone.pid, api_url="http://127.0.0.1:1/api"))
    assert stop_recorded_server(settings) is None
    assert read_server(settings) is None


def test_crm_functions_say_what_to_set_without_a_prefect_server(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """With no PREFECT_API_URL and no serve running, start_closing says what to run or set."""
    monkeypatch.setenv("PRECLOSE_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()
    soon = (datetime.now(UTC) + timedelta(days=40)).date().isoformat()
    closing: Any = crm.ClosingRequest.model_validate(closing_data(closing_date=soon))
    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        with pytest.raises(NoPrefectApiError):
            find_prefect_api()
        with pytest.raises(crm.RunNotStartedError, match="preclose serve") as err:
            crm.start_closing(closing)
    assert "PREFECT_API_URL" in str(err.value)
    dispose_engines()


def test_crm_functions_find_the_server_serve_recorded(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, prefect_harness: None
) -> None:
    """The API URL recorded in the data dir's Prefect home is used when PREFECT_API_URL is unset."""
    running_api = str(PREFECT_API_URL.value())
    settings = Settings(data_dir=tmp_path)
    record_server(settings, RecordedServer(pid=1, api_url=running_api))
    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        assert find_prefect_api(settings) == running_api


def test_a_dead_prefect_api_url_is_one_line() -> None:
    """A PREFECT_API_URL nobody answers at is named, with the way out (unset it)."""
    with pytest.raises(checks.StartupError, match="PREFECT_API_URL: no Prefect server answers"):
        checks.check_prefect_api(f"http://127.0.0.1:{free_port()}/api")
