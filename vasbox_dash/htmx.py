"""Small htmx helpers: tell fragments from full pages, and set HX-* response headers."""

from __future__ import annotations

from flask import Response, request


def is_htmx() -> bool:
    """True for an htmx request that wants a fragment (not a history restore)."""
    return (
        request.headers.get("HX-Request") == "true"
        and request.headers.get("HX-History-Restore-Request") != "true"
    )


def hx_redirect(response: Response, url: str) -> Response:
    """Make htmx do a full-page navigation to url."""
    response.headers["HX-Redirect"] = url
    return response


def hx_trigger(response: Response, event: str) -> Response:
    """Fire a client-side event after the swap."""
    response.headers["HX-Trigger"] = event
    return response


def hx_retarget(response: Response, selector: str, swap: str = "innerHTML") -> Response:
    """Send the response to another element than the one the request named."""
    response.headers["HX-Retarget"] = selector
    response.headers["HX-Reswap"] = swap
    return response


def vary_on_htmx(response: Response) -> Response:
    """Caches must key on HX-Request, since one URL returns a page or a fragment."""
    response.vary.add("HX-Request")
    return response
