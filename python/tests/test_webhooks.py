"""inloop.webhooks.verify_webhook: the Standard Webhooks check of the core, from Python."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

import pytest

from inloop import InloopError, InvalidArgument
from inloop.webhooks import verify_webhook

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def sign(secret: str, msg_id: str, ts: int, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def test_the_specification_vector_verifies() -> None:
    headers = {
        "webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
        "webhook-timestamp": "1614265330",
        "webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
    }
    body = b'{"test": 2432232314}'
    verify_webhook(SECRET, headers, body, tolerance_secs=10**10)
    # ... but it is years old: refused with the default tolerance.
    with pytest.raises(InloopError) as e:
        verify_webhook(SECRET, headers, body)
    assert e.value.code == "unauthorized"


def test_fresh_requests_verify_and_tampering_is_refused() -> None:
    now = int(time.time())
    body = b'{"type": "task.created"}'
    sig = sign(SECRET, "dlv_1", now, body)
    headers = {"Webhook-Id": "dlv_1", "Webhook-Timestamp": str(now), "Webhook-Signature": sig}
    verify_webhook(SECRET, headers, body)
    verify_webhook(SECRET, headers, body.decode())
    for bad_body, bad_headers in [
        (b'{"type": "task.ended"}', headers),
        (body, {**headers, "Webhook-Id": "dlv_2"}),
        (body, {**headers, "Webhook-Timestamp": str(now - 600)}),
        (body, {k: v for k, v in headers.items() if k != "Webhook-Signature"}),
    ]:
        with pytest.raises(InloopError) as e:
            verify_webhook(SECRET, bad_headers, bad_body)
        assert e.value.code == "unauthorized", e.value
    with pytest.raises(InvalidArgument):
        verify_webhook("hunter2", headers, body)
