"""Configuration from VASBOX_* variables, and failing loudly (issue 2)."""

from __future__ import annotations

import stat

import pytest

from vasbox_dash.config import ConfigError, load_config


def test_local_secrets_are_generated_once_and_kept_private(tmp_path):
    first = load_config(str(tmp_path), environ={})
    second = load_config(str(tmp_path), environ={})
    assert first["SECRET_KEY"] == second["SECRET_KEY"]
    assert first["TOKEN_PEPPERS"] == second["TOKEN_PEPPERS"]
    assert first["SECRET_KEY"] != first["TOKEN_PEPPERS"][1]
    for name in ("secret_key", "token_pepper"):
        mode = stat.S_IMODE((tmp_path / name).stat().st_mode)
        assert mode == 0o600


def test_defaults_use_sqlite_in_the_instance_folder_and_memory_rate_limits(tmp_path):
    config = load_config(str(tmp_path), environ={})
    assert config["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{tmp_path / 'vasbox.sqlite3'}"
    assert config["RATELIMIT_STORAGE_URI"] == "memory://"
    assert config["SESSION_IDLE_SECONDS"] == 30 * 60
    assert config["SESSION_ABSOLUTE_SECONDS"] == 12 * 3600
    assert config["SESSION_COOKIE_SECURE"] is False


def test_environment_variables_configure_the_app(tmp_path):
    env = {
        "VASBOX_DATABASE_URL": "postgresql+psycopg://app@db/vasbox",
        "VASBOX_SECRET_KEY": "k" * 40,
        "VASBOX_TOKEN_PEPPER": "p" * 40,
        "VASBOX_RATELIMIT_STORAGE_URL": "redis://cache:6379/1",
        "VASBOX_SESSION_IDLE_MINUTES": "10",
        "VASBOX_SESSION_ABSOLUTE_HOURS": "4",
        "VASBOX_COOKIE_SECURE": "true",
    }
    config = load_config(str(tmp_path), environ=env)
    assert config["SQLALCHEMY_DATABASE_URI"] == env["VASBOX_DATABASE_URL"]
    assert config["SECRET_KEY"] == "k" * 40
    assert config["TOKEN_PEPPERS"] == {1: "p" * 40}
    assert config["RATELIMIT_STORAGE_URI"] == "redis://cache:6379/1"
    assert config["SESSION_IDLE_SECONDS"] == 600
    assert config["SESSION_ABSOLUTE_SECONDS"] == 4 * 3600
    assert config["SESSION_COOKIE_SECURE"] is True


def test_pepper_rotation_keeps_previous_versions(tmp_path):
    env = {
        "VASBOX_TOKEN_PEPPER": "new" * 12,
        "VASBOX_TOKEN_PEPPER_VERSION": "2",
        "VASBOX_TOKEN_PEPPER_PREVIOUS": "1:" + "old" * 12,
    }
    config = load_config(str(tmp_path), environ=env)
    assert config["TOKEN_PEPPER_VERSION"] == 2
    assert config["TOKEN_PEPPERS"] == {1: "old" * 12, 2: "new" * 12}


@pytest.mark.parametrize(
    "env, message",
    [
        ({}, "VASBOX_SECRET_KEY is missing"),
        ({"VASBOX_SECRET_KEY": "changeme", "VASBOX_TOKEN_PEPPER": "p" * 40}, "placeholder"),
        ({"VASBOX_SECRET_KEY": "short", "VASBOX_TOKEN_PEPPER": "p" * 40}, "too short"),
        ({"VASBOX_SECRET_KEY": "k" * 40}, "VASBOX_TOKEN_PEPPER is missing"),
        ({"VASBOX_SECRET_KEY": "k" * 40, "VASBOX_TOKEN_PEPPER": "k" * 40}, "must differ"),
    ],
)
def test_production_refuses_to_start_with_missing_or_weak_secrets(tmp_path, env, message):
    with pytest.raises(ConfigError, match=message):
        load_config(str(tmp_path), environ={"VASBOX_ENV": "production", **env})
    assert not (tmp_path / "secret_key").exists()  # production never invents secrets


def test_production_with_strong_secrets_turns_on_secure_cookies_and_hsts(tmp_path):
    env = {
        "VASBOX_ENV": "production",
        "VASBOX_SECRET_KEY": "k" * 40,
        "VASBOX_TOKEN_PEPPER": "p" * 40,
    }
    config = load_config(str(tmp_path), environ=env)
    assert config["SESSION_COOKIE_SECURE"] is True
    assert config["HSTS"] is True


@pytest.mark.parametrize(
    "env, message",
    [
        ({"VASBOX_SESSION_IDLE_MINUTES": "soon"}, "whole number"),
        ({"VASBOX_SESSION_ABSOLUTE_HOURS": "0"}, "greater than zero"),
        ({"VASBOX_COOKIE_SECURE": "maybe"}, "true or false"),
        ({"VASBOX_ENV": "staging"}, "VASBOX_ENV"),
        ({"VASBOX_TOKEN_PEPPER_PREVIOUS": "nonsense"}, "VASBOX_TOKEN_PEPPER_PREVIOUS"),
    ],
)
def test_bad_settings_fail_with_a_clear_message(tmp_path, env, message):
    with pytest.raises(ConfigError, match=message):
        load_config(str(tmp_path), environ=env)
