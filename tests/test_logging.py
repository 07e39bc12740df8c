"""Secrets never reach the logs (defence in depth behind not logging them at all)."""

from __future__ import annotations

import logging

from vasbox_dash import RedactTokens

TOKEN = "vbx_k7q2m9xd" + "A" * 43 + "abcdef"


def test_redaction_filter_masks_anything_shaped_like_a_token():
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "got %s here", (TOKEN,), None)
    assert RedactTokens().filter(record) is True
    assert TOKEN not in record.getMessage()
    assert "vbx_[REDACTED]" in record.getMessage()


def test_the_app_installs_the_filter_on_the_root_handlers(app):
    handlers = logging.getLogger().handlers
    assert handlers
    assert all(any(isinstance(f, RedactTokens) for f in h.filters) for h in handlers)


def test_a_token_inside_an_exception_is_redacted_for_handlers_added_later(app, caplog):
    log = logging.getLogger("vasbox_dash.test")
    try:
        raise ValueError(f"bad value {TOKEN}")
    except ValueError:
        log.exception("while handling %s", TOKEN)
    assert TOKEN not in caplog.text
    assert caplog.text.count("vbx_[REDACTED]") >= 2
    assert "ValueError" in caplog.text
