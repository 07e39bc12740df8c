"""The `vasbox-dash` command line: schema, businesses, users, demo data, serving."""

from __future__ import annotations

import os
import secrets
import sys
from datetime import timedelta
from decimal import Decimal

import click
from flask import Flask
from flask.cli import FlaskGroup, with_appcontext
from sqlalchemy import func, inspect, select

from .accounts import (
    AccountError,
    create_business,
    create_user,
    deactivate_user,
    find_business,
    set_password,
    set_role,
)
from .extensions import db
from .models import ApiToken, Business, Receipt, ReceiptLine, Role, User, utcnow

DEMO_BUSINESS = "Demo Bakery"
DEMO_DOMAIN = "demo.vasbox.example"
ROLE_CHOICES = [r.value for r in Role]


def _fail(message: str) -> None:
    click.echo(f"Error: {message}", err=True)
    sys.exit(2)


def _read_password(password_stdin: bool) -> str:
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            _fail("no password was given on standard input.")
        return password
    return click.prompt("Password", hide_input=True, confirmation_prompt=True)


@click.command("create-business")
@click.argument("name")
@click.option("--timezone", default="Africa/Harare", show_default=True, help="IANA timezone.")
@with_appcontext
def create_business_command(name: str, timezone: str) -> None:
    """Create a business and print its id."""
    try:
        business = create_business(name, timezone)
    except AccountError as error:
        _fail(str(error))
    click.echo(business.id)


@click.command("create-user")
@click.option("--business", "business_name", help="Business name or id (not for support).")
@click.option("--email", required=True)
@click.option("--name", "display_name", required=True, help="Display name.")
@click.option("--role", required=True, help="owner, manager, cashier or support.")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@with_appcontext
def create_user_command(
    business_name: str | None, email: str, display_name: str, role: str, password_stdin: bool
) -> None:
    """Create a user; the password is prompted twice unless --password-stdin is given."""
    business = None
    if business_name is not None:
        business = find_business(business_name)
        if business is None:
            _fail(f"no business named {business_name!r}.")
    if role not in ROLE_CHOICES:
        _fail(f"unknown role {role!r}; choose one of {', '.join(ROLE_CHOICES)}.")
    password = _read_password(password_stdin)
    try:
        user = create_user(
            business=business, email=email, name=display_name, role=role, password=password
        )
    except AccountError as error:
        _fail(str(error))
    click.echo(f"Created {user.role} {user.email} (id {user.id}).")


@click.command("set-role")
@click.argument("email")
@click.argument("role")
@with_appcontext
def set_role_command(email: str, role: str) -> None:
    """Change a user's role."""
    try:
        user = set_role(email, role)
    except AccountError as error:
        _fail(str(error))
    click.echo(f"{user.email} is now {user.role}.")


@click.command("deactivate-user")
@click.argument("email")
@with_appcontext
def deactivate_user_command(email: str) -> None:
    """Deactivate a user, ending their sessions; their API tokens stop working."""
    try:
        user = deactivate_user(email)
    except AccountError as error:
        _fail(str(error))
    click.echo(f"{user.email} is deactivated; their sessions have ended.")


@click.command("set-password")
@click.argument("email")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@with_appcontext
def set_password_command(email: str, password_stdin: bool) -> None:
    """Set a user's password and end their sessions."""
    password = _read_password(password_stdin)
    try:
        user = set_password(email, password)
    except AccountError as error:
        _fail(str(error))
    click.echo(f"Password changed for {user.email}; their sessions have ended.")


DEMO_PASSWORD_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"


def _demo_password() -> str:
    """A random password that is easy to read and type: four groups of four characters."""
    groups = ("".join(secrets.choice(DEMO_PASSWORD_ALPHABET) for _ in range(4)) for _ in range(4))
    return "-".join(groups)


def _schema_ready() -> bool:
    return inspect(db.engine).has_table("businesses")


@click.command("demo")
@click.option("--if-empty", is_flag=True, help="Do nothing (exit 0) if any business exists.")
@with_appcontext
def demo_command(if_empty: bool) -> None:
    """Create a demo business with four users and sample data; prints passwords once."""
    if not _schema_ready():
        _fail("the database has no schema yet; run `vasbox-dash db upgrade` first.")
    if if_empty and db.session.scalar(select(func.count()).select_from(Business)):
        click.echo("The database already has data; demo data was not added.")
        return
    if find_business(DEMO_BUSINESS) is not None:
        _fail(
            f"the demo business {DEMO_BUSINESS!r} already exists; nothing was changed. "
            "Use `vasbox-dash set-password EMAIL` to reset a demo password."
        )
    business = create_business(DEMO_BUSINESS, "Africa/Harare")
    people = [
        ("owner", "Tendai Moyo", Role.OWNER),
        ("manager", "Rudo Chikwanha", Role.MANAGER),
        ("cashier", "Farai Ndlovu", Role.CASHIER),
        ("support", "Sam from VasBox Support", Role.SUPPORT),
    ]
    created = []
    for local, name, role in people:
        password = _demo_password()
        user = create_user(
            business=None if role == Role.SUPPORT else business,
            email=f"{local}@{DEMO_DOMAIN}",
            name=name,
            role=role.value,
            password=password,
        )
        created.append((user, password))
    _add_sample_data(business, created[0][0])
    click.echo(f"Created the demo business {DEMO_BUSINESS!r} (id {business.id}).")
    click.echo("Demo sign-ins (passwords are shown only now; keep them):")
    for user, password in created:
        click.echo(f"  {user.role:<8} {user.email:<32} {password}")


def _add_sample_data(business: Business, owner: User) -> None:
    from .tokens import issue_token

    now = utcnow()
    accounting, _ = issue_token(owner, "Accounting Software")
    pos, _ = issue_token(owner, "POS System - Branch 1")
    issue_token(owner, "Reporting Script")
    accounting = db.session.get(ApiToken, accounting.id)
    accounting.last_used_at = now - timedelta(hours=2)
    accounting.last_used_ip = "203.0.113.10"
    accounting.last_used_user_agent = "LedgerSync/4.2"
    items = [("White loaf", "2", "1.20"), ("Meat pie", "1", "2.50"), ("Fanta 500ml", "3", "0.90")]
    for day in range(5):
        for branch in ("Harare CBD", "Avondale"):
            lines = [
                ReceiptLine(
                    position=i,
                    description=d,
                    quantity=Decimal(q),
                    unit_price=Decimal(p),
                    line_total=(Decimal(q) * Decimal(p)).quantize(Decimal("0.01")),
                )
                for i, (d, q, p) in enumerate(items)
            ]
            db.session.add(
                Receipt(
                    business_id=business.id,
                    branch=branch,
                    currency="USD",
                    payment_method="cash",
                    issued_at=now - timedelta(days=day, hours=3),
                    total=sum((line.line_total for line in lines), Decimal("0")),
                    token_id=pos.id,
                    created_by_id=owner.id,
                    lines=lines,
                )
            )
    db.session.commit()


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 64))
def serve_command(host: str, port: int, workers: int) -> None:
    """Serve the app with gunicorn."""
    args = [
        sys.executable,
        "-m",
        "gunicorn",
        "--bind",
        f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
        "--workers",
        str(workers),
        "--access-logfile",
        "-",
        # %(U)s is the path without the query string, so a token pasted into a URL by
        # mistake never reaches the access log.
        "--access-logformat",
        '%(h)s %(t)s "%(m)s %(U)s" %(s)s %(b)s %(M)sms "%(a)s"',
        "--graceful-timeout",
        "10",
        "vasbox_dash:create_app()",
    ]
    os.execv(sys.executable, args)


@click.command("prune-usage")
@click.option(
    "--days",
    default=90,
    show_default=True,
    type=click.IntRange(1, 36500),
    help="Keep this many days of API usage records.",
)
@with_appcontext
def prune_usage_command(days: int) -> None:
    """Delete API usage records older than --days days; run it daily from cron."""
    from .usage import prune

    removed = prune(days)
    click.echo(f"Removed {removed} API usage record(s) older than {days} days.")


COMMANDS = [
    create_business_command,
    create_user_command,
    set_role_command,
    deactivate_user_command,
    set_password_command,
    demo_command,
    prune_usage_command,
]


def register_flask_commands(app: Flask) -> None:
    """Make the commands available as `flask …` too."""
    for command in COMMANDS:
        app.cli.add_command(command)


def _create_app(*_args) -> Flask:
    from . import create_app

    app = create_app()
    with app.app_context():
        engines = list(db.engines.values())
    context = click.get_current_context(silent=True)
    if context is not None:
        # Close pooled connections when the command ends rather than at garbage collection.
        context.call_on_close(lambda: [engine.dispose() for engine in engines])
    return app


@click.group(cls=FlaskGroup, create_app=_create_app, add_default_commands=False)
def main() -> None:
    """VasBox Dash administration."""


from flask_migrate.cli import db as db_group  # noqa: E402

main.add_command(db_group)
main.add_command(serve_command)
