"""Realistic sample payloads for every event type, for tests, examples and
benchmarks.

Nothing here imports Flask. The payloads are plain dicts, ready for
:func:`json.dumps`; they are not signed.
"""

from __future__ import annotations

import copy
import difflib
import json
import secrets
import string
import time
import typing as t

from .models import EVENT_TYPES

__all__ = [
    "KNOWN_EVENT_TYPES",
    "encode_body",
    "make_event",
    "new_webhook_id",
    "sip_headers",
]

KNOWN_EVENT_TYPES: tuple[str, ...] = tuple(sorted(EVENT_TYPES))
"""Every event type :func:`make_event` builds without ``allow_unknown``."""

_BASE62 = string.ascii_letters + string.digits


def _hex_id(prefix: str, length: int = 32) -> str:
    return prefix + secrets.token_hex(length // 2)


def _base62_id(prefix: str, length: int = 24) -> str:
    return prefix + "".join(secrets.choice(_BASE62) for _ in range(length))


def sip_headers(n: int) -> list[dict[str, str]]:
    """Return ``n`` realistic headers of a SIP INVITE, as OpenAI sends them
    in ``data.sip_headers``: no authorization headers, order kept. Values
    are freshly random on each call but consistent with each other within
    one list.

    The first 16 are the headers of a typical INVITE from a carrier. Past
    16, ``X-`` custom headers are added, as a SIP trunk can pass any.

    :param n: How many headers to return, 0 or more.
    :raises ValueError: ``n`` is negative.
    """
    if n < 0:
        raise ValueError(f"n must be 0 or more, not {n}")

    caller = f"+1415555{secrets.randbelow(10_000):04d}"
    callee = f"+1800555{secrets.randbelow(10_000):04d}"
    gateway = f"54.172.60.{secrets.randbelow(254) + 1}"
    branch = _hex_id("z9hG4bK", 24)
    headers = [
        ("Via", f"SIP/2.0/TLS {gateway}:5061;branch={branch};rport"),
        ("Max-Forwards", "69"),
        (
            "From",
            f'"Caller" <sip:{caller}@{gateway}:5061>;tag={secrets.token_hex(4)}',
        ),
        ("To", f"<sip:{callee}@sip.api.openai.com;transport=tls>"),
        ("Call-ID", f"{secrets.token_hex(16)}@0.0.0.0"),
        ("CSeq", "1 INVITE"),
        ("Contact", f"<sip:{caller}@{gateway}:5061;transport=tls>"),
        ("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS, NOTIFY, REFER, UPDATE"),
        ("Supported", "timer, replaces"),
        ("Session-Expires", "1800;refresher=uac"),
        ("Min-SE", "90"),
        ("User-Agent", "Twilio Gateway"),
        ("P-Asserted-Identity", f"<sip:{caller}@{gateway}>"),
        ("X-Twilio-CallSid", _hex_id("CA")),
        ("Content-Type", "application/sdp"),
        ("Content-Length", str(300 + secrets.randbelow(400))),
    ]

    for i in range(len(headers), n):
        headers.append((f"X-Custom-Header-{i - 15}", secrets.token_hex(8)))

    return [{"name": name, "value": value} for name, value in headers[:n]]


_DEFAULT_SIP_HEADERS = 8


def _batch() -> dict[str, t.Any]:
    return {"id": _hex_id("batch_")}


def _response() -> dict[str, t.Any]:
    return {"id": _hex_id("resp_", 48)}


def _eval_run() -> dict[str, t.Any]:
    return {"id": _hex_id("evalrun_")}


def _fine_tuning_job() -> dict[str, t.Any]:
    return {"id": _base62_id("ftjob-")}


def _realtime_call_incoming() -> dict[str, t.Any]:
    return {
        "call_id": _hex_id("rtc_"),
        "sip_headers": sip_headers(_DEFAULT_SIP_HEADERS),
        "sip_media_security": "srtp",
    }


def _live_call_incoming() -> dict[str, t.Any]:
    return {
        "session_id": _hex_id("live_"),
        "sip_headers": sip_headers(_DEFAULT_SIP_HEADERS),
        "sip_media_security": "srtp",
    }


def _live_transport_incoming() -> dict[str, t.Any]:
    return {
        "session_id": _hex_id("live_"),
        "sip_headers": sip_headers(_DEFAULT_SIP_HEADERS),
        "type": "sip",
        "sip_media_security": "srtp",
    }


def _live_transport_connected() -> dict[str, t.Any]:
    return {"session_id": _hex_id("live_"), "type": "webrtc"}


def _agent_environment() -> dict[str, t.Any]:
    return {"id": _hex_id("env_")}


def _agent_session_created() -> dict[str, t.Any]:
    session_id = _hex_id("sess_")
    return {
        "id": session_id,
        "environment_type": "self_hosted",
        "connect": {
            "remote_url": f"wss://api.openai.com/v1/agents/connect/{session_id}"
        },
        "environment_id": _hex_id("env_"),
    }


def _agent_session() -> dict[str, t.Any]:
    return {
        "id": _hex_id("sess_"),
        "environment_type": "openai_hosted",
        "environment_id": _hex_id("env_"),
    }


def _agent_session_action_required() -> dict[str, t.Any]:
    return {
        "id": _hex_id("sess_"),
        "required_action": {"type": "mcp_approval_request"},
    }


def _safety_alert() -> dict[str, t.Any]:
    return {"id": _hex_id("alert_")}


def _safety_case() -> dict[str, t.Any]:
    return {"id": _hex_id("case_")}


def _safety_identifier_blocked() -> dict[str, t.Any]:
    return {
        "safety_category": "cyber",
        "safety_identifier": _hex_id("user_", 64),
        "model": "gpt-5",
        "project_id": _base62_id("proj_"),
        "request_id": _hex_id("req_"),
    }


_DATA: dict[str, t.Callable[[], dict[str, t.Any]]] = {
    "agent.environment.expired": _agent_environment,
    "agent.environment.failed": _agent_environment,
    "agent.environment.ready": _agent_environment,
    "agent.environment.suspended": _agent_environment,
    "agent.session.action_required": _agent_session_action_required,
    "agent.session.created": _agent_session_created,
    "agent.session.failed": _agent_session,
    "agent.session.idle": _agent_session,
    "agent.session.in_progress": _agent_session,
    "batch.cancelled": _batch,
    "batch.completed": _batch,
    "batch.expired": _batch,
    "batch.failed": _batch,
    "eval.run.canceled": _eval_run,
    "eval.run.failed": _eval_run,
    "eval.run.succeeded": _eval_run,
    "fine_tuning.job.cancelled": _fine_tuning_job,
    "fine_tuning.job.failed": _fine_tuning_job,
    "fine_tuning.job.succeeded": _fine_tuning_job,
    "live.call.incoming": _live_call_incoming,
    "live.transport.connected": _live_transport_connected,
    "live.transport.incoming": _live_transport_incoming,
    "realtime.call.incoming": _realtime_call_incoming,
    "response.cancelled": _response,
    "response.completed": _response,
    "response.failed": _response,
    "response.incomplete": _response,
    "safety.alert.created": _safety_alert,
    "safety.deactivation_issued": _safety_case,
    "safety.org_alert.created": _safety_alert,
    "safety.warning_issued": _safety_case,
    "safety_identifier.blocked": _safety_identifier_blocked,
}


def make_event(
    event_type: str, *, allow_unknown: bool = False, **overrides: t.Any
) -> dict[str, t.Any]:
    """Build a realistic payload of the given type, with a fresh random
    event ``id`` and the current time as ``created_at``.

    .. code-block:: python

        body = json.dumps(make_event("batch.completed", data={"id": "batch_1"}))

    :param event_type: One of :data:`KNOWN_EVENT_TYPES`.
    :param allow_unknown: Allow an ``event_type`` this package does not
        model, e.g. ``video.completed``. Its payload has the common
        fields and ``data: {"id": "video_..."}``, the prefix being the
        first dotted part of the type.
    :param overrides: Top-level fields to set. Dicts are merged into the
        sample recursively, so ``data={"id": "batch_1"}`` keeps the other
        ``data`` fields; any other value, a list included, replaces the
        sample's. Keys the sample lacks are added, which gives extra fields.
    :raises ValueError: ``event_type`` is unknown and ``allow_unknown`` is
        false. The message suggests the closest known types.
    """
    factory = _DATA.get(event_type)

    if factory is not None:
        data = factory()
    elif allow_unknown:
        data = {"id": _hex_id(f"{event_type.partition('.')[0]}_")}
    else:
        message = f"unknown event type {event_type!r}"
        matches = difflib.get_close_matches(event_type, KNOWN_EVENT_TYPES)

        if matches:
            message += f"; did you mean {' or '.join(map(repr, matches))}?"
        else:
            message += "."

        raise ValueError(
            f"{message} Pass allow_unknown=True to build an event of a type"
            " this package does not model."
        )

    event: dict[str, t.Any] = {
        "id": _hex_id("evt_"),
        "object": "event",
        "created_at": int(time.time()),
        "type": event_type,
        "data": data,
    }
    deep_merge(event, overrides)
    return event


def deep_merge(target: dict[str, t.Any], overrides: t.Mapping[str, t.Any]) -> None:
    """Merge ``overrides`` into ``target`` in place: dicts recursively, any
    other value replaced by a deep copy so the caller's objects are never
    shared with the result.
    """
    for key, value in overrides.items():
        current = target.get(key)

        if isinstance(current, dict) and isinstance(value, t.Mapping):
            deep_merge(current, value)
        else:
            target[key] = copy.deepcopy(value)


def encode_body(body: bytes | str | t.Mapping[str, t.Any]) -> bytes:
    """Return the exact bytes to send and to sign for a body.

    A mapping is encoded as compact JSON (no spaces), UTF-8, the way OpenAI
    sends events. The signature covers these bytes, so post exactly what
    this returns: any other serialisation of the same dict will not verify.
    """
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode("utf-8")
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def new_webhook_id() -> str:
    """Return a fresh random ``webhook-id`` shaped like OpenAI's, for example
    ``wh_685342e6c53c8190a1be43f081506c52``.

    Every call gives a new one, so two posts of the same event are two
    deliveries, not a retry. Pass the same id twice to test a retry.
    """
    return "wh_" + secrets.token_hex(16)
