from __future__ import annotations

import json
import re
import time
import typing as t

import pytest

from flask_openai_webhooks.models import EVENT_TYPES
from flask_openai_webhooks.models import parse_event
from flask_openai_webhooks.models import UnknownWebhookEvent
from flask_openai_webhooks.samples import encode_body
from flask_openai_webhooks.samples import KNOWN_EVENT_TYPES
from flask_openai_webhooks.samples import make_event
from flask_openai_webhooks.samples import new_webhook_id
from flask_openai_webhooks.samples import sip_headers

#: Where each type's main ID lives in ``data``, and its prefix.
MAIN_IDS = {
    "agent.environment.expired": ("id", "env_"),
    "agent.environment.failed": ("id", "env_"),
    "agent.environment.ready": ("id", "env_"),
    "agent.environment.suspended": ("id", "env_"),
    "agent.session.action_required": ("id", "sess_"),
    "agent.session.created": ("id", "sess_"),
    "agent.session.failed": ("id", "sess_"),
    "agent.session.idle": ("id", "sess_"),
    "agent.session.in_progress": ("id", "sess_"),
    "batch.cancelled": ("id", "batch_"),
    "batch.completed": ("id", "batch_"),
    "batch.expired": ("id", "batch_"),
    "batch.failed": ("id", "batch_"),
    "eval.run.canceled": ("id", "evalrun_"),
    "eval.run.failed": ("id", "evalrun_"),
    "eval.run.succeeded": ("id", "evalrun_"),
    "fine_tuning.job.cancelled": ("id", "ftjob-"),
    "fine_tuning.job.failed": ("id", "ftjob-"),
    "fine_tuning.job.succeeded": ("id", "ftjob-"),
    "live.call.incoming": ("session_id", "live_"),
    "live.transport.connected": ("session_id", "live_"),
    "live.transport.incoming": ("session_id", "live_"),
    "realtime.call.incoming": ("call_id", "rtc_"),
    "response.cancelled": ("id", "resp_"),
    "response.completed": ("id", "resp_"),
    "response.failed": ("id", "resp_"),
    "response.incomplete": ("id", "resp_"),
    "safety.alert.created": ("id", "alert_"),
    "safety.deactivation_issued": ("id", "case_"),
    "safety.org_alert.created": ("id", "alert_"),
    "safety.warning_issued": ("id", "case_"),
    "safety_identifier.blocked": ("safety_identifier", "user_"),
}


def test_known_event_types() -> None:
    assert KNOWN_EVENT_TYPES == tuple(sorted(EVENT_TYPES))
    assert set(MAIN_IDS) == set(KNOWN_EVENT_TYPES)


@pytest.mark.parametrize("event_type", KNOWN_EVENT_TYPES)
def test_sample_is_valid(event_type: str) -> None:
    before = int(time.time())
    payload = make_event(event_type)
    assert list(payload) == ["id", "object", "created_at", "type", "data"]
    assert payload["type"] == event_type
    assert payload["object"] == "event"
    assert payload["id"].startswith("evt_")
    assert len(payload["id"]) == len("evt_") + 32
    assert type(payload["created_at"]) is int
    assert before <= payload["created_at"] <= time.time()
    event = parse_event(json.dumps(payload))
    assert type(event) is EVENT_TYPES[event_type]


@pytest.mark.parametrize("event_type", KNOWN_EVENT_TYPES)
def test_realistic_ids(event_type: str) -> None:
    key, prefix = MAIN_IDS[event_type]
    value = make_event(event_type)["data"][key]
    assert value.startswith(prefix)
    assert len(value) > len(prefix) + 16


@pytest.mark.parametrize("event_type", KNOWN_EVENT_TYPES)
def test_fresh_ids(event_type: str) -> None:
    key, _ = MAIN_IDS[event_type]
    first = make_event(event_type)
    second = make_event(event_type)
    assert first["id"] != second["id"]
    assert first["data"][key] != second["data"][key]


@pytest.mark.parametrize(
    "event_type",
    ["realtime.call.incoming", "live.call.incoming", "live.transport.incoming"],
)
def test_sip_samples(event_type: str) -> None:
    data = make_event(event_type)["data"]
    names = [header["name"] for header in data["sip_headers"]]
    assert {"Via", "From", "To", "Call-ID"} <= set(names)
    assert data["sip_media_security"] == "srtp"


def test_other_data_fields() -> None:
    created = make_event("agent.session.created")["data"]
    assert created["environment_type"] == "self_hosted"
    assert created["connect"]["remote_url"].startswith("wss://")
    assert created["environment_id"].startswith("env_")
    blocked = make_event("safety_identifier.blocked")["data"]
    assert blocked["project_id"].startswith("proj_")
    assert blocked["request_id"].startswith("req_")
    assert make_event("live.transport.connected")["data"]["type"] == "webrtc"
    assert make_event("live.transport.incoming")["data"]["type"] == "sip"


# --- sip_headers --------------------------------------------------------------


@pytest.mark.parametrize("n", [0, 1, 5, 16, 40])
def test_sip_headers_count(n: int) -> None:
    headers = sip_headers(n)
    assert len(headers) == n
    assert all(set(header) == {"name", "value"} for header in headers)
    assert all(header["value"] for header in headers)


def test_sip_headers_realistic() -> None:
    headers = dict((h["name"], h["value"]) for h in sip_headers(16))
    assert len(headers) == 16
    assert headers["Via"].startswith("SIP/2.0/TLS ")
    assert ";branch=z9hG4bK" in headers["Via"]
    assert headers["CSeq"] == "1 INVITE"
    assert "@sip.api.openai.com" in headers["To"]
    # The caller is the same in From and Contact.
    caller = headers["From"].split("<sip:")[1].split("@")[0]
    assert caller in headers["Contact"]
    assert not any(name.lower().endswith("authorization") for name in headers)


def test_sip_headers_fresh() -> None:
    assert sip_headers(16) != sip_headers(16)


def test_sip_headers_past_sixteen_are_custom() -> None:
    extra = sip_headers(18)[16:]
    assert [h["name"] for h in extra] == ["X-Custom-Header-1", "X-Custom-Header-2"]


def test_sip_headers_negative() -> None:
    with pytest.raises(ValueError, match="0 or more"):
        sip_headers(-1)


# --- Overrides ----------------------------------------------------------------


def test_override_top_level() -> None:
    payload = make_event("batch.completed", id="evt_fixed", created_at=1)
    assert payload["id"] == "evt_fixed"
    assert payload["created_at"] == 1
    assert payload["data"]["id"].startswith("batch_")


def test_override_data_merges() -> None:
    payload = make_event("batch.completed", data={"id": "batch_x"})
    assert payload["data"] == {"id": "batch_x"}
    payload = make_event("agent.session.created", data={"environment_id": None})
    assert payload["data"]["environment_id"] is None
    assert payload["data"]["id"].startswith("sess_")
    assert payload["data"]["connect"]["remote_url"].startswith("wss://")


def test_override_nested_dict_merges() -> None:
    payload = make_event("agent.session.created", data={"connect": {"extra": 1}})
    assert set(payload["data"]["connect"]) == {"remote_url", "extra"}


def test_override_list_replaces() -> None:
    headers = [{"name": "From", "value": "sip:a@example.com"}]
    payload = make_event("realtime.call.incoming", data={"sip_headers": headers})
    assert payload["data"]["sip_headers"] == headers
    assert payload["data"]["call_id"].startswith("rtc_")


def test_override_adds_extra_fields() -> None:
    payload = make_event("response.completed", livemode=True, data={"new": [1]})
    assert payload["livemode"] is True
    assert payload["data"]["new"] == [1]


def test_override_dict_replaces_non_dict() -> None:
    payload = make_event("response.completed", data="not an object")
    assert payload["data"] == "not an object"


def test_overrides_are_copied() -> None:
    data: dict[str, t.Any] = {"sip_headers": [{"name": "To", "value": "x"}]}
    payload = make_event("realtime.call.incoming", data=data)
    data["sip_headers"].append({"name": "From", "value": "y"})
    assert len(payload["data"]["sip_headers"]) == 1


def test_override_type() -> None:
    payload = make_event("batch.completed", type="batch.failed")
    assert type(parse_event(json.dumps(payload))).__name__ == (
        "BatchFailedWebhookEvent"
    )


# --- Unknown types ------------------------------------------------------------


@pytest.mark.parametrize(
    ("event_type", "suggestion"),
    [
        ("batch.canceled", "did you mean 'batch.cancelled'"),
        ("eval.run.cancelled", "did you mean 'eval.run.canceled'"),
        ("response.complete", "did you mean 'response.completed'"),
    ],
)
def test_unknown_type_suggests(event_type: str, suggestion: str) -> None:
    with pytest.raises(ValueError, match=suggestion) as info:
        make_event(event_type)

    assert f"unknown event type {event_type!r}" in str(info.value)
    assert "allow_unknown=True" in str(info.value)


def test_unknown_type_without_suggestion() -> None:
    with pytest.raises(ValueError) as info:
        make_event("zzz")

    assert "did you mean" not in str(info.value)
    assert str(info.value).startswith("unknown event type 'zzz'. Pass allow_unknown")


def test_allow_unknown() -> None:
    payload = make_event("video.completed", allow_unknown=True)
    assert set(payload) == {"id", "created_at", "object", "type", "data"}
    assert payload["type"] == "video.completed"
    assert payload["object"] == "event"
    assert payload["id"].startswith("evt_")
    assert list(payload["data"]) == ["id"]
    assert payload["data"]["id"].startswith("video_")
    event = parse_event(json.dumps(payload))
    assert isinstance(event, UnknownWebhookEvent)
    assert event.data == payload["data"]


def test_allow_unknown_with_overrides() -> None:
    payload = make_event(
        "video.failed", allow_unknown=True, data={"error": {"code": "x"}}
    )
    assert payload["data"]["id"].startswith("video_")
    assert payload["data"]["error"] == {"code": "x"}


def test_allow_unknown_known_type() -> None:
    payload = make_event("batch.failed", allow_unknown=True)
    assert payload["data"]["id"].startswith("batch_")


# --- Bodies and ids ------------------------------------------------------------


def test_new_webhook_id_looks_like_openais() -> None:
    ids = {new_webhook_id() for _ in range(100)}

    assert len(ids) == 100
    for webhook_id in ids:
        assert re.fullmatch(r"wh_[0-9a-f]{32}", webhook_id)


def test_encode_body_is_compact_utf8_json() -> None:
    payload = {"type": "batch.completed", "data": {"id": "batch_1", "note": "café"}}

    body = encode_body(payload)

    assert (
        body
        == '{"type":"batch.completed","data":{"id":"batch_1","note":"café"}}'.encode()
    )
    assert encode_body("é") == "é".encode()
    assert encode_body(b"\xff") == b"\xff"


def test_encode_body_of_a_sample_parses_back_to_it() -> None:
    payload = make_event("realtime.call.incoming")

    body = encode_body(payload)

    assert json.loads(body) == payload
    assert type(parse_event(body)) is EVENT_TYPES["realtime.call.incoming"]
