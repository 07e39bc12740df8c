"""The JSON API under /api/v1, authenticated by bearer tokens only."""

from __future__ import annotations

from flask import Blueprint, Flask

bp = Blueprint("api", __name__, url_prefix="/api/v1")


def init_app(app: Flask) -> None:
    """Hook the API's per-app machinery (usage recording) into the app."""
