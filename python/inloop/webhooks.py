"""Verifying the webhooks ``inloop serve`` sends (``notify=["webhook:NAME"]``).

Each request carries Standard Webhooks headers (``webhook-id``, ``webhook-timestamp``,
``webhook-signature``) signed with the endpoint's own ``whsec_...`` secret; see
``docs/channels.md``. The check itself is the core's; this module only reads the headers::

    from inloop.webhooks import verify_webhook

    verify_webhook(secret, request.headers, await request.body())  # raises if forged
    event = json.loads(body)                 # then deduplicate on headers["webhook-id"]
"""

from __future__ import annotations

from collections.abc import Mapping

from . import _native


def _header(headers: Mapping[str, str], name: str) -> str:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return ""


def verify_webhook(
    secret: str,
    headers: Mapping[str, str],
    body: bytes | str,
    *,
    tolerance_secs: int = 300,
) -> None:
    """Checks a webhook request's signature and timestamp (within ``tolerance_secs``).

    ``body`` must be the raw request body, exactly as received. Raises
    :class:`inloop.InloopError` with ``code == "unauthorized"`` when the request does not
    verify (forged, altered, stale, or missing headers), and :class:`inloop.InvalidArgument`
    when ``secret`` is not a ``whsec_`` secret.
    """
    raw = body.encode() if isinstance(body, str) else bytes(body)
    _native.verify_webhook(
        secret,
        _header(headers, "webhook-id"),
        _header(headers, "webhook-timestamp"),
        _header(headers, "webhook-signature"),
        raw,
        tolerance_secs,
    )


__all__ = ["verify_webhook"]
