"""Signed deliveries, built the way OpenAI sends them, for every section.

Bodies come from :func:`flask_openai_webhooks.samples.make_event`, encoded
as compact UTF-8 JSON like OpenAI's. Signatures use the library's own
:func:`~flask_openai_webhooks.verify.sign`, which the test-suite checks
against the ``openai`` SDK and ``standardwebhooks``.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import secrets
import time
import typing as t

from flask_openai_webhooks import samples
from flask_openai_webhooks import verify

#: A ``whsec_`` secret with a 32-byte key, the size OpenAI issues.
SECRET = "whsec_" + base64.b64encode(b"flask-openai-webhooks-bench-key!").decode()

#: Where the blueprint receives deliveries, and where the bare app listens.
URL = "/webhooks/openai"

#: The event types of section 1, by label: a known type, one this version
#: does not model, and the largest realistic body (16 SIP headers).
KNOWN = "batch.completed"
UNKNOWN = "video.completed"
SIP = "realtime.call.incoming"
SIP_HEADERS = 16


def new_webhook_id() -> str:
    """A fresh id shaped like OpenAI's (``wh_`` and 32 hex digits)."""
    return "wh_" + secrets.token_hex(16)


def encode(payload: t.Mapping[str, t.Any]) -> bytes:
    """Compact UTF-8 JSON, as OpenAI sends it."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def make_body(event_type: str) -> bytes:
    """A realistic body of ``event_type``; the SIP event gets 16 headers."""
    if event_type == SIP:
        payload = samples.make_event(
            SIP, data={"sip_headers": samples.sip_headers(SIP_HEADERS)}
        )
    else:
        payload = samples.make_event(event_type, allow_unknown=event_type == UNKNOWN)
    return encode(payload)


@dataclasses.dataclass(frozen=True)
class Delivery:
    """One signed delivery: the body and its three ``webhook-*`` headers."""

    body: bytes
    headers: dict[str, str]

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]


def sign(
    body: bytes, *, webhook_id: str | None = None, timestamp: int | None = None
) -> Delivery:
    """Sign ``body`` for :data:`SECRET` with a fresh id and the current time,
    unless given.
    """
    webhook_id = new_webhook_id() if webhook_id is None else webhook_id
    stamp = int(time.time()) if timestamp is None else timestamp
    signature = verify.sign(body, secret=SECRET, webhook_id=webhook_id, timestamp=stamp)
    return Delivery(
        body,
        {
            "webhook-id": webhook_id,
            "webhook-timestamp": str(stamp),
            "webhook-signature": signature,
        },
    )
