"""The `vasbox-dash` command line (issue 2)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from vasbox_dash.cli import main
from vasbox_dash.models import ApiToken, AuditEvent, Business, Receipt, User

GOOD_PASSWORD = "a long and unusual passphrase"


@pytest.fixture
def cli_env(fresh_database_url, tmp_path):
    return {
        "VASBOX_DATABASE_URL": fresh_database_url,
        "VASBOX_SECRET_KEY": "cli-secret-" + "k" * 40,
        "VASBOX_TOKEN_PEPPER": "cli-pepper-" + "p" * 40,
    }


@pytest.fixture
def run(cli_env):
    runner = CliRunner()

    def invoke(*args, input=None):
        return runner.invoke(main, list(args), env=cli_env, input=input, catch_exceptions=False)

    assert invoke("db", "upgrade").exit_code == 0
    return invoke


@pytest.fixture
def session(cli_env):
    engine = create_engine(cli_env["VASBOX_DATABASE_URL"])
    with Session(engine) as s:
        yield s
    engine.dispose()


def test_console_script_upgrades_an_empty_database_and_creates_a_business(cli_env):
    script = Path(sys.executable).with_name("vasbox-dash")
    env = {**os.environ, **cli_env}
    upgrade = subprocess.run([script, "db", "upgrade"], env=env, capture_output=True, text=True)
    assert upgrade.returncode == 0, upgrade.stderr
    created = subprocess.run(
        [script, "create-business", "Harare Bakery"], env=env, capture_output=True, text=True
    )
    assert created.returncode == 0, created.stderr
    assert created.stdout.strip().isdigit()


def test_create_business_prints_the_new_id_and_keeps_the_timezone(run, session):
    result = run("create-business", "Bulawayo Butchery", "--timezone", "Africa/Johannesburg")
    assert result.exit_code == 0
    business = session.get(Business, int(result.output.strip()))
    assert business.name == "Bulawayo Butchery" and business.timezone == "Africa/Johannesburg"


def test_create_business_defaults_to_harare_time(run, session):
    business_id = int(run("create-business", "Mutare Market").output.strip())
    assert session.get(Business, business_id).timezone == "Africa/Harare"


@pytest.mark.parametrize(
    "args, message",
    [
        (["create-business", "Acme", "--timezone", "Mars/Olympus"], "Unknown timezone"),
        (["create-business", "  "], "1 to 120 characters"),
    ],
)
def test_create_business_rejects_bad_input(run, args, message):
    result = run(*args)
    assert result.exit_code != 0
    assert message in result.output


def test_duplicate_business_name_is_refused(run):
    run("create-business", "Acme")
    result = run("create-business", "ACME")
    assert result.exit_code != 0 and "already exists" in result.output


def test_create_user_reads_the_password_from_stdin(run, session):
    run("create-business", "Acme")
    result = run(
        "create-user",
        "--business",
        "Acme",
        "--email",
        "Owner@Acme.example",
        "--name",
        "Ann",
        "--role",
        "owner",
        "--password-stdin",
        input=GOOD_PASSWORD + "\n",
    )
    assert result.exit_code == 0, result.output
    user = session.scalar(select(User))
    assert user.email == "owner@acme.example" and user.role == "owner"
    assert user.password_hash.startswith("$argon2id$")
    assert GOOD_PASSWORD not in result.output


def test_create_user_prompts_twice_without_password_stdin(run, session):
    run("create-business", "Acme")
    result = run(
        "create-user",
        "--business",
        "Acme",
        "--email",
        "m@acme.example",
        "--name",
        "Mo",
        "--role",
        "manager",
        input=f"{GOOD_PASSWORD}\n{GOOD_PASSWORD}\n",
    )
    assert result.exit_code == 0, result.output
    assert "Password:" in result.output and "Repeat for confirmation:" in result.output
    assert session.scalar(select(User)).role == "manager"


def test_support_user_has_no_business(run, session):
    result = run(
        "create-user",
        "--email",
        "agent@vasbox.example",
        "--name",
        "Sam",
        "--role",
        "support",
        "--password-stdin",
        input=GOOD_PASSWORD + "\n",
    )
    assert result.exit_code == 0, result.output
    assert session.scalar(select(User)).business_id is None


@pytest.mark.parametrize(
    "args, password, message",
    [
        (["--business", "Nope", "--role", "owner"], GOOD_PASSWORD, "no business named 'Nope'"),
        (["--business", "Acme", "--role", "boss"], GOOD_PASSWORD, "unknown role 'boss'"),
        (["--business", "Acme", "--role", "support"], GOOD_PASSWORD, "omit --business"),
        (["--role", "cashier"], GOOD_PASSWORD, "must belong to a business"),
        (["--business", "Acme", "--role", "owner"], "short-pw", "at least 12 characters"),
        (["--business", "Acme", "--role", "owner"], "password1234", "commonly used"),
        (["--business", "Acme", "--role", "owner"], "sunshine2024!", "commonly used"),
    ],
)
def test_create_user_rejects_bad_input_with_a_clear_message(run, session, args, password, message):
    run("create-business", "Acme")
    result = run(
        "create-user",
        "--email",
        "x@acme.example",
        "--name",
        "X",
        *args,
        "--password-stdin",
        input=password + "\n",
    )
    assert result.exit_code != 0
    assert message in result.output
    assert session.scalar(select(User)) is None


def test_duplicate_email_is_refused_case_insensitively(run, session):
    run("create-business", "Acme")
    base = [
        "create-user",
        "--business",
        "Acme",
        "--name",
        "A",
        "--role",
        "owner",
        "--password-stdin",
    ]
    assert run(*base, "--email", "a@acme.example", input=GOOD_PASSWORD + "\n").exit_code == 0
    result = run(*base, "--email", "A@ACME.example", input=GOOD_PASSWORD + "\n")
    assert result.exit_code != 0 and "already exists" in result.output


def add_acme_cashier(run) -> None:
    """Create the business Acme with the cashier c@acme.example."""
    run("create-business", "Acme")
    result = run(
        "create-user",
        "--business",
        "Acme",
        "--email",
        "c@acme.example",
        "--name",
        "C",
        "--role",
        "cashier",
        "--password-stdin",
        input=GOOD_PASSWORD + "\n",
    )
    assert result.exit_code == 0, result.output


def test_set_role_changes_the_role_and_is_audited(run, session):
    add_acme_cashier(run)
    result = run("set-role", "C@acme.example", "manager")
    assert result.exit_code == 0, result.output
    assert session.scalar(select(User.role)) == "manager"
    event = session.scalar(select(AuditEvent).where(AuditEvent.action == "user.role_changed"))
    assert event.details["from"] == "cashier" and event.details["to"] == "manager"


@pytest.mark.parametrize(
    "args, message",
    [
        (["set-role", "nobody@acme.example", "owner"], "No user with the email"),
        (["set-role", "c@acme.example", "emperor"], "Unknown role"),
        (["set-role", "c@acme.example", "support"], "omit --business"),
        (["deactivate-user", "nobody@acme.example"], "No user with the email"),
    ],
)
def test_user_commands_reject_bad_input(run, args, message):
    add_acme_cashier(run)
    result = run(*args)
    assert result.exit_code != 0
    assert message in result.output


def test_deactivate_user_marks_them_inactive(run, session):
    add_acme_cashier(run)
    result = run("deactivate-user", "c@acme.example")
    assert result.exit_code == 0
    assert session.scalar(select(User.active)) is False


def test_demo_creates_four_people_and_sample_data_and_prints_passwords_once(run, session):
    result = run("demo")
    assert result.exit_code == 0, result.output
    for role in ("owner", "manager", "cashier", "support"):
        assert f"{role}@demo.vasbox.example" in result.output
    roles = sorted(session.scalars(select(User.role)))
    assert roles == ["cashier", "manager", "owner", "support"]
    assert session.scalar(select(Business.name)) == "Demo Bakery"
    assert len(session.scalars(select(ApiToken)).all()) == 3
    assert session.scalars(select(Receipt)).first() is not None
    assert "vbx_" not in result.output  # sample tokens' secrets are never printed


def test_demo_refuses_without_harm_when_demo_data_exists(run, session):
    run("demo")
    hashes = sorted(session.scalars(select(User.password_hash)))
    again = run("demo")
    assert again.exit_code != 0
    assert "already exists" in again.output
    session.expire_all()
    assert sorted(session.scalars(select(User.password_hash))) == hashes


def test_demo_if_empty_is_a_quiet_no_op_on_a_database_with_data(run):
    run("create-business", "Someone Else")
    result = run("demo", "--if-empty")
    assert result.exit_code == 0 and "not added" in result.output


def test_serve_rejects_a_bad_port(run):
    result = run("serve", "--port", "99999")
    assert result.exit_code != 0 and "99999" in result.output
