"""WSGI entry point: `gunicorn wsgi:app` (or `vasbox-dash serve`)."""

from vasbox_dash import create_app

app = create_app()
