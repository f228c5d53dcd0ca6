"""Settings: defaults, environment variables, `.env`, validation errors and secret hiding."""

from __future__ import annotations

from pathlib import Path

import pytest

from preclose.settings import Settings, SettingsError, get_settings


@pytest.fixture(autouse=True)
def in_tmp_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run each test in an empty working directory, so no real `.env` is read."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_defaults_live_under_the_working_directory(in_tmp_dir: Path) -> None:
    """With nothing set, data, database and Prefect home sit in ./.preclose, resolved absolute."""
    settings = Settings()
    data_dir = (in_tmp_dir / ".preclose").resolve()
    assert settings.data_dir == data_dir
    assert settings.database_url == f"sqlite:///{data_dir / 'preclose.db'}"
    assert settings.prefect_home == data_dir / "prefect"
    assert settings.outbox_path == data_dir / "outbox.jsonl"
    assert settings.offergrid_base_url is None and settings.offergrid_api_key is None
    assert settings.notify_urls == [] and settings.policy_path is None
    assert (settings.catalog_cache_hours, settings.status_cache_minutes) == (3.0, 5.0)
    assert settings.sync_interval_minutes == 15.0
    assert (settings.rate_limit_per_minute, settings.rate_limit_per_hour) == (100, 10_000)
    assert settings.rate_limit_window_scale == 1.0


def test_every_field_has_a_title_and_description() -> None:
    """Each setting documents itself with a title and a description."""
    for name, field in Settings.model_fields.items():
        assert field.title and field.description, name


@pytest.mark.parametrize(
    ("env", "value", "attribute", "expected"),
    [
        ("PRECLOSE_CATALOG_CACHE_HOURS", "1.5", "catalog_cache_hours", 1.5),
        ("PRECLOSE_STATUS_CACHE_MINUTES", "0", "status_cache_minutes", 0.0),
        ("PRECLOSE_SYNC_INTERVAL_MINUTES", "2", "sync_interval_minutes", 2.0),
        ("PRECLOSE_RATE_LIMIT_PER_MINUTE", "50", "rate_limit_per_minute", 50),
        ("PRECLOSE_RATE_LIMIT_PER_HOUR", "500", "rate_limit_per_hour", 500),
        ("PRECLOSE_RATE_LIMIT_WINDOW_SCALE", "0.01", "rate_limit_window_scale", 0.01),
        ("PRECLOSE_OFFERGRID_BASE_URL", "http://127.0.0.1:8000/", "offergrid_base_url",
         "http://127.0.0.1:8000"),
        ("PRECLOSE_DATABASE_URL", "postgresql://u@db/preclose", "database_url",
         "postgresql://u@db/preclose"),
        ("PRECLOSE_NOTIFY_URLS", '["json://a", "mailto://b"]', "notify_urls",
         ["json://a", "mailto://b"]),
    ],
)  # fmt: skip
def test_environment_variables_are_read(
    monkeypatch: pytest.MonkeyPatch, env: str, value: str, attribute: str, expected: object
) -> None:
    """Each PRECLOSE_ variable sets its field."""
    monkeypatch.setenv(env, value)
    assert getattr(Settings(), attribute) == expected


def test_paths_resolve_against_the_working_directory(
    monkeypatch: pytest.MonkeyPatch, in_tmp_dir: Path
) -> None:
    """A relative data directory is made absolute, and what derives from it follows."""
    monkeypatch.setenv("PRECLOSE_DATA_DIR", "var/data")
    monkeypatch.setenv("PRECLOSE_POLICY_PATH", "policy.toml")
    settings = Settings()
    assert settings.data_dir == in_tmp_dir.resolve() / "var" / "data"
    assert settings.database_url == f"sqlite:///{settings.data_dir / 'preclose.db'}"
    assert settings.prefect_home == settings.data_dir / "prefect"
    assert settings.policy_path == in_tmp_dir.resolve() / "policy.toml"


def test_notify_urls_split_on_spaces_and_commas_between_urls(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A plain list splits between URLs but keeps commas inside one (apprise mailto lists)."""
    monkeypatch.setenv(
        "PRECLOSE_NOTIFY_URLS", "mailto://u:p@x.org?to=a@b.org,c@d.org, json://h/path tgram://t/c"
    )
    assert Settings().notify_urls == [
        "mailto://u:p@x.org?to=a@b.org,c@d.org",
        "json://h/path",
        "tgram://t/c",
    ]


def test_api_key_falls_back_to_offergrid_api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """OFFERGRID_API_KEY is read when PRECLOSE_OFFERGRID_API_KEY is not set, never over it."""
    monkeypatch.setenv("OFFERGRID_API_KEY", "og_plain")
    key = Settings().offergrid_api_key
    assert key is not None and key.get_secret_value() == "og_plain"
    monkeypatch.setenv("PRECLOSE_OFFERGRID_API_KEY", "og_prefixed")
    key = Settings().offergrid_api_key
    assert key is not None and key.get_secret_value() == "og_prefixed"


def test_constructor_arguments_win(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests and callers can build their own settings by field name, over the environment."""
    monkeypatch.setenv("PRECLOSE_CATALOG_CACHE_HOURS", "2")
    settings = Settings(catalog_cache_hours=4, offergrid_api_key="og_arg")
    assert settings.catalog_cache_hours == 4
    assert settings.offergrid_api_key is not None
    assert settings.offergrid_api_key.get_secret_value() == "og_arg"


def test_dotenv_file_is_read(in_tmp_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A .env file in the working directory is read, and the environment overrides it."""
    (in_tmp_dir / ".env").write_text(
        "PRECLOSE_SYNC_INTERVAL_MINUTES=7\nPRECLOSE_RATE_LIMIT_PER_MINUTE=9\nUNRELATED=1\n"
    )
    monkeypatch.setenv("PRECLOSE_RATE_LIMIT_PER_MINUTE", "11")
    settings = Settings()
    assert (settings.sync_interval_minutes, settings.rate_limit_per_minute) == (7.0, 11)


@pytest.mark.parametrize(
    ("env", "value", "message"),
    [
        ("PRECLOSE_CATALOG_CACHE_HOURS", "9", "less than or equal to 6"),
        ("PRECLOSE_CATALOG_CACHE_HOURS", "0.5", "greater than or equal to 1"),
        ("PRECLOSE_CATALOG_CACHE_HOURS", "soon", "valid number"),
        ("PRECLOSE_STATUS_CACHE_MINUTES", "-1", "greater than or equal to 0"),
        ("PRECLOSE_SYNC_INTERVAL_MINUTES", "0", "greater than 0"),
        ("PRECLOSE_RATE_LIMIT_PER_MINUTE", "0", "greater than or equal to 1"),
        ("PRECLOSE_RATE_LIMIT_PER_HOUR", "many", "valid integer"),
        ("PRECLOSE_RATE_LIMIT_WINDOW_SCALE", "0", "greater than 0"),
        ("PRECLOSE_OFFERGRID_BASE_URL", "api.offergrid.io", "http:// or https://"),
        ("PRECLOSE_DATABASE_URL", "not a url", "not a database URL"),
        ("PRECLOSE_NOTIFY_URLS", "slack", "not an apprise URL"),
        ("PRECLOSE_PUBLIC_URL", "preclose.example.com", "http:// or https://"),
        ("PRECLOSE_PAGE_LINK_DAYS", "0", "greater than or equal to 1"),
    ],
)
def test_bad_values_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, env: str, value: str, message: str
) -> None:
    """A bad value fails with an error that names the environment variable and the problem."""
    monkeypatch.setenv(env, value)
    with pytest.raises(SettingsError) as caught:
        Settings()
    assert env in str(caught.value) and message in str(caught.value)
    assert caught.value.env_vars[0].startswith(env)
    assert isinstance(caught.value, ValueError)


def test_several_bad_values_are_all_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every bad variable is named at once, so one run shows everything to fix."""
    monkeypatch.setenv("PRECLOSE_CATALOG_CACHE_HOURS", "9")
    monkeypatch.setenv("PRECLOSE_RATE_LIMIT_PER_HOUR", "0")
    with pytest.raises(SettingsError) as caught:
        Settings()
    assert caught.value.env_vars == [
        "PRECLOSE_CATALOG_CACHE_HOURS",
        "PRECLOSE_RATE_LIMIT_PER_HOUR",
    ]


def test_secrets_never_show(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keys, secrets, database password and notification tokens stay out of repr/str."""
    monkeypatch.setenv("OFFERGRID_API_KEY", "og_live_SECRET1")
    monkeypatch.setenv("PRECLOSE_OFFERGRID_WEBHOOK_SECRET", "whsec_SECRET2")
    monkeypatch.setenv("PRECLOSE_DATABASE_URL", "postgresql://app:SECRET3@db:5432/preclose")
    monkeypatch.setenv("PRECLOSE_NOTIFY_URLS", "tgram://SECRET4/chat mailto://u:SECRET5@x.org")
    monkeypatch.setenv("PRECLOSE_PAGE_LINK_SECRET", "SECRET6")
    settings = Settings()
    for shown in (repr(settings), str(settings)):
        for secret in ("SECRET1", "SECRET2", "SECRET3", "SECRET4", "SECRET5", "SECRET6"):
            assert secret not in shown
    assert "postgresql://app:***@db:5432/preclose" in repr(settings)
    assert settings.database_url.endswith("app:SECRET3@db:5432/preclose")  # usable, just hidden


def test_bad_secret_bearing_values_are_not_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    """An invalid value that may hold a password is not repeated in the error or its cause."""
    monkeypatch.setenv("PRECLOSE_DATABASE_URL", "::SECRET6::")
    with pytest.raises(SettingsError) as caught:
        Settings()
    assert "SECRET6" not in str(caught.value)
    assert "SECRET6" not in str(caught.value.__cause__)


def test_get_settings_is_cached_until_cleared(monkeypatch: pytest.MonkeyPatch) -> None:
    """get_settings reads the environment once; cache_clear makes it read again."""
    monkeypatch.setenv("PRECLOSE_SYNC_INTERVAL_MINUTES", "3")
    first = get_settings()
    monkeypatch.setenv("PRECLOSE_SYNC_INTERVAL_MINUTES", "4")
    assert get_settings() is first and first.sync_interval_minutes == 3
    get_settings.cache_clear()
    assert get_settings().sync_interval_minutes == 4
