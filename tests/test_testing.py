"""The test kit itself: signing, posting and recording signals."""

from __future__ import annotations

import base64
import json
import logging
import re
import time
import typing as t

import pytest
import standardwebhooks
from flask import Blueprint
from flask import Flask
from flask.testing import FlaskClient

from flask_openai_webhooks import samples
from flask_openai_webhooks import testing
from flask_openai_webhooks.blueprint import make_blueprint
from flask_openai_webhooks.errors import WebhookVerificationError
from flask_openai_webhooks.signals import batch_failed
from flask_openai_webhooks.signals import EVENT_SIGNALS
from flask_openai_webhooks.signals import webhook_failed
from flask_openai_webhooks.signals import webhook_received
from flask_openai_webhooks.signals import webhook_rejected
from flask_openai_webhooks.state import get_state
from flask_openai_webhooks.testing import capture_signals
from flask_openai_webhooks.testing import encode_body
from flask_openai_webhooks.testing import make_event
from flask_openai_webhooks.testing import post_event
from flask_openai_webhooks.testing import signed_headers
from flask_openai_webhooks.testing import webhook_url
from flask_openai_webhooks.testing import WebhookClient
from flask_openai_webhooks.verify import decode_secret
from flask_openai_webhooks.verify import SecretOrSecrets
from flask_openai_webhooks.verify import sign
from flask_openai_webhooks.verify import verify_signature

SECRET = "whsec_" + base64.b64encode(b"x" * 32).decode()
OTHER_SECRET = "whsec_" + base64.b64encode(b"y" * 32).decode()


def make_app(secret: SecretOrSecrets = SECRET, **blueprints: dict[str, t.Any]) -> Flask:
    """An app with one blueprint at the default URL, or the named ones."""
    app = Flask(__name__)
    app.config.update(TESTING=True, OPENAI_WEBHOOK_SECRET=secret)
    if not blueprints:
        app.register_blueprint(make_blueprint())
    for name, options in blueprints.items():
        app.register_blueprint(make_blueprint(name=name, **options))
    return app


@pytest.fixture
def app() -> Flask:
    return make_app()


@pytest.mark.parametrize(
    "body",
    [
        b'{"type":"batch.completed"}',
        '{"type":"batch.completed","note":"na\u00efve"}',
        {"type": "batch.completed", "data": {"id": "batch_\u00e9"}},
    ],
    ids=["bytes", "str", "dict"],
)
def test_signed_headers_verify_with_ours_and_standardwebhooks(
    body: bytes | str | dict[str, t.Any],
) -> None:
    headers = signed_headers(body, SECRET)
    raw = encode_body(body)

    assert set(headers) == {"webhook-id", "webhook-timestamp", "webhook-signature"}
    verify_signature(raw, headers, secret=SECRET)
    standardwebhooks.Webhook(SECRET).verify(raw, headers)


def test_signed_headers_use_given_id_and_timestamp() -> None:
    headers = signed_headers(
        b"{}", SECRET, webhook_id="wh_fixed", timestamp=1_750_000_000
    )

    assert headers["webhook-id"] == "wh_fixed"
    assert headers["webhook-timestamp"] == "1750000000"
    assert headers["webhook-signature"] == sign(
        b"{}", secret=SECRET, webhook_id="wh_fixed", timestamp=1_750_000_000
    )
    verify_signature(b"{}", headers, secret=SECRET, now=1_750_000_000)


def test_signed_headers_default_to_now_and_a_fresh_id() -> None:
    before = int(time.time())
    first = signed_headers(b"{}", SECRET)
    second = signed_headers(b"{}", SECRET)
    after = int(time.time())

    assert before <= int(first["webhook-timestamp"]) <= after
    assert re.fullmatch(r"wh_[0-9a-f]{32}", first["webhook-id"])
    assert first["webhook-id"] != second["webhook-id"]


def test_signed_headers_accept_the_raw_key() -> None:
    key = decode_secret(SECRET)

    by_key = signed_headers(b"{}", key, webhook_id="wh_1", timestamp=1)
    by_secret = signed_headers(b"{}", SECRET, webhook_id="wh_1", timestamp=1)

    assert by_key == by_secret


def test_signed_headers_for_a_payload_sign_encode_body_bytes() -> None:
    event = make_event("batch.completed")

    headers = signed_headers(event, SECRET)
    body = encode_body(event)

    assert json.loads(body) == event
    assert b" " not in body
    verify_signature(body, headers, secret=SECRET)
    standardwebhooks.Webhook(SECRET).verify(body, headers)


def test_signed_headers_for_another_serialisation_do_not_verify() -> None:
    event = make_event("batch.completed")
    headers = signed_headers(event, SECRET)

    with pytest.raises(WebhookVerificationError):
        verify_signature(json.dumps(event, indent=2), headers, secret=SECRET)


def test_one_way_each_to_sign_build_and_post() -> None:
    """The kit has one function per job; building and encoding are
    :mod:`~flask_openai_webhooks.samples`' own, re-exported."""
    assert sorted(testing.__all__) == [
        "RecordedSignal",
        "SignalRecorder",
        "WebhookClient",
        "capture_signals",
        "encode_body",
        "make_event",
        "new_webhook_id",
        "post_event",
        "signed_headers",
        "webhook_url",
    ]
    for name in testing.__all__:
        assert getattr(testing, name) is not None
    assert testing.make_event is samples.make_event
    assert testing.encode_body is samples.encode_body
    assert testing.new_webhook_id is samples.new_webhook_id
    assert not hasattr(testing, "signed_request")
    for gone in ("post", "headers", "make_event"):
        assert not hasattr(WebhookClient, gone)


def test_post_event_by_type_is_processed(app: Flask, client: FlaskClient) -> None:
    with capture_signals(app) as sent:
        response = post_event(client, "batch.completed", data={"id": "batch_123"})

    assert response.status_code == 200
    assert response.get_json() == {"status": "processed"}
    assert sent.types == ["batch.completed"]
    assert sent.events[0].data.id == "batch_123"
    assert sorted(sent.names) == ["batch.completed", "webhook-received"]


def test_post_event_merges_overrides_into_a_payload_without_changing_it(
    app: Flask, client: FlaskClient
) -> None:
    payload = make_event("batch.completed", data={"id": "batch_1"})
    original = json.loads(json.dumps(payload))

    with capture_signals(app) as sent:
        response = post_event(client, payload, data={"extra": 1})

    assert response.status_code == 200
    assert payload == original
    data = sent.events[0].data
    assert (data.id, data.extra) == ("batch_1", 1)


def test_post_event_signs_with_the_apps_first_key(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """OpenAI signs with the newest secret, listed first; the blueprint logs
    when a delivery matched any other one."""
    app = make_app(secret=[OTHER_SECRET, SECRET])
    client = app.test_client()

    with caplog.at_level(logging.INFO, "flask_openai_webhooks"):
        response = post_event(client, "response.completed", webhook_id="wh_key")

    assert response.status_code == 200
    assert get_state(app).keys[0] == decode_secret(OTHER_SECRET)
    assert "older secret" not in caplog.text


def test_post_event_with_a_wrong_secret_is_rejected(
    app: Flask, client: FlaskClient
) -> None:
    with capture_signals(app) as sent:
        response = post_event(client, "batch.completed", secret=OTHER_SECRET)

    assert response.status_code == 400
    assert response.get_json()["error"] == "signature_mismatch"
    assert sent.names == ["webhook-rejected"]
    assert isinstance(sent.rejected[0], WebhookVerificationError)
    assert sent[0].error is sent.rejected[0]
    assert sent[0].event is None


def test_post_event_with_an_old_timestamp_is_rejected(client: FlaskClient) -> None:
    response = post_event(client, "batch.completed", timestamp=time.time() - 3600)

    assert response.status_code == 400
    assert response.get_json()["error"] == "timestamp_too_old"


@pytest.mark.parametrize(
    ("headers", "error"),
    [
        ({"webhook-signature": "v1,bm9wZQ=="}, "signature_mismatch"),
        ({"Webhook-Signature": "v1,bm9wZQ=="}, "signature_mismatch"),
        ({"webhook-id": ""}, "missing_header"),
        ({"X-Extra": "1"}, None),
    ],
    ids=["bad-signature", "any-case", "missing-id", "extra"],
)
def test_post_event_headers_replace_the_signed_ones(
    client: FlaskClient, headers: dict[str, str], error: str | None
) -> None:
    response = post_event(client, "batch.completed", headers=headers)

    if error is None:
        assert response.status_code == 200
    else:
        assert response.status_code == 400
        assert response.get_json()["error"] == error


def test_post_event_twice_with_one_id_is_a_retry(
    app: Flask, client: FlaskClient
) -> None:
    event = make_event("batch.failed")

    with capture_signals(app) as sent:
        first = post_event(client, event, webhook_id="wh_retry")
        second = post_event(client, event, webhook_id="wh_retry")

    assert first.get_json() == {"status": "processed"}
    assert second.get_json() == {"status": "duplicate"}
    assert sent.types == ["batch.failed"]


def test_post_event_sends_a_raw_body_as_is(app: Flask, client: FlaskClient) -> None:
    with capture_signals(app) as sent:
        response = post_event(client, b"not json")

    assert response.status_code == 400
    # Signed correctly, so it got past verification to the parser.
    assert response.get_json()["error"] == "invalid_payload"
    assert sent.names == ["webhook-rejected"]


def test_post_event_refuses_overrides_for_a_raw_body(client: FlaskClient) -> None:
    with pytest.raises(TypeError):
        post_event(client, b"{}", data={"id": "x"})


def test_post_event_unknown_type_needs_allow_unknown(
    app: Flask, client: FlaskClient
) -> None:
    with pytest.raises(ValueError, match="video.completed"):
        post_event(client, "video.completed")

    with capture_signals(app) as sent:
        response = post_event(client, "video.completed", allow_unknown=True)

    assert response.status_code == 200
    assert sent.names == ["webhook-received"]
    assert sent.types == ["video.completed"]


def test_post_event_to_a_custom_url_prefix() -> None:
    app = make_app(hooks={"url_prefix": "/hooks/openai/"})

    response = post_event(app.test_client(), "batch.completed")

    assert webhook_url(app) == "/hooks/openai/"
    assert response.status_code == 200


def test_post_event_with_several_blueprints_needs_a_name() -> None:
    app = make_app(
        first={"url_prefix": "/one"},
        second={"url_prefix": "/two", "secret": OTHER_SECRET},
    )
    client = app.test_client()

    with pytest.raises(LookupError, match="several"):
        post_event(client, "batch.completed")

    with capture_signals(app) as sent:
        response = post_event(client, "batch.completed", blueprint="second")

    assert response.status_code == 200
    assert sent.types == ["batch.completed"]
    # The first blueprint's key does not verify at the second's URL.
    wrong = post_event(client, "batch.completed", blueprint="first", url="/two")
    assert wrong.status_code == 400


def test_capture_signals_for_an_app_ignores_other_apps() -> None:
    first, second = make_app(), make_app()

    with capture_signals(first) as mine, capture_signals() as everything:
        post_event(first.test_client(), "batch.completed")
        post_event(second.test_client(), "batch.expired")

    assert mine.types == ["batch.completed"]
    assert everything.types == ["batch.completed", "batch.expired"]
    assert [call.sender for call in everything.of("webhook-received")] == [
        first,
        second,
    ]


def test_capture_signals_records_receiver_failures(
    app: Flask, client: FlaskClient
) -> None:
    error = RuntimeError("boom")

    def fail(sender: Flask, **kwargs: t.Any) -> None:
        raise error

    with batch_failed.connected_to(fail, app), capture_signals(app) as sent:
        response = post_event(client, "batch.failed")

    assert response.status_code == 500
    assert sorted(sent.names) == ["batch.failed", "webhook-failed", "webhook-received"]
    failure = sent.failed[0]
    assert failure.error is error
    assert failure.kwargs["receiver"] is fail
    assert failure.event is sent.events[0]
    assert failure.webhook_id == sent.of(webhook_received)[0].webhook_id


def test_capture_signals_disconnects_even_when_the_block_raises(app: Flask) -> None:
    signals = [*EVENT_SIGNALS.values(), webhook_received, webhook_rejected]
    signals.append(webhook_failed)
    before = [len(signal.receivers) for signal in signals]

    with pytest.raises(KeyError), capture_signals(app):
        assert [len(signal.receivers) for signal in signals] == [
            count + 1 for count in before
        ]
        raise KeyError("inside")

    assert [len(signal.receivers) for signal in signals] == before


def test_signal_recorder_is_a_sequence(app: Flask, client: FlaskClient) -> None:
    with capture_signals(app) as sent:
        post_event(client, "response.completed", webhook_id="wh_seq")

    assert len(sent) == 2
    assert list(sent) == sent[:]
    received = sent.of(webhook_received)[0]
    assert received is sent.of("webhook-received")[0]
    assert received.webhook_id == "wh_seq"
    assert received.sender is app
    assert set(received.kwargs) == {"event", "webhook_id", "blueprint"}
    assert received.kwargs["blueprint"] == "openai_webhooks"
    assert "webhook-received" in repr(sent)

    sent.clear()

    assert len(sent) == 0
    assert sent.types == []


def test_webhook_client_sends_types_payloads_and_raw_bodies(
    app: Flask, client: FlaskClient
) -> None:
    hooks = WebhookClient(client)

    assert hooks.app is app
    assert hooks.key == decode_secret(SECRET)
    assert hooks.url == "/webhooks/openai"

    with capture_signals(app) as sent:
        by_type = hooks.send("eval.run.succeeded", data={"id": "evalrun_1"})
        payload = hooks.send(make_event("batch.expired"), webhook_id="wh_post")
        retried = hooks.send(make_event("batch.expired"), webhook_id="wh_post")
        raw = hooks.send(b"{}")

    assert by_type.status_code == 200
    assert payload.get_json() == {"status": "processed"}
    assert retried.get_json() == {"status": "duplicate"}
    assert raw.status_code == 400
    assert raw.get_json()["error"] == "invalid_payload"
    assert sent.types == ["eval.run.succeeded", "batch.expired"]
    assert sent.events[0].data.id == "evalrun_1"
    assert sent.of(webhook_received)[1].webhook_id == "wh_post"
    assert len(sent.rejected) == 1


def test_webhook_client_send_takes_post_event_arguments(
    app: Flask, client: FlaskClient
) -> None:
    hooks = WebhookClient(client)

    forged = hooks.send("batch.completed", secret=OTHER_SECRET)
    stale = hooks.send("batch.completed", timestamp=time.time() - 3600)
    unsigned = hooks.send("batch.completed", headers={"webhook-signature": ""})
    elsewhere = hooks.send("batch.completed", url="/nowhere")

    assert forged.get_json()["error"] == "signature_mismatch"
    assert stale.get_json()["error"] == "timestamp_too_old"
    assert unsigned.get_json()["error"] == "missing_header"
    assert elsewhere.status_code == 404


def test_webhook_client_key_signs_what_the_app_verifies(app: Flask) -> None:
    hooks = WebhookClient(app.test_client())

    headers = signed_headers(b"{}", hooks.key, webhook_id="wh_h", timestamp=5)

    verify_signature(b"{}", headers, secret=SECRET, now=5)


def test_webhook_client_for_a_named_blueprint() -> None:
    app = make_app(
        first={"url_prefix": "/one"},
        second={"url_prefix": "/two", "secret": OTHER_SECRET},
    )
    hooks = WebhookClient(app.test_client(), blueprint="second")

    assert hooks.url == "/two"
    assert hooks.key == decode_secret(OTHER_SECRET)
    assert hooks.send("batch.completed").status_code == 200


def test_webhook_client_and_post_event_for_a_nested_blueprint() -> None:
    app = Flask(__name__)
    app.config.update(TESTING=True, OPENAI_WEBHOOK_SECRET=SECRET)
    api = Blueprint("api", __name__, url_prefix="/api")
    api.register_blueprint(make_blueprint())
    app.register_blueprint(api)
    client = app.test_client()

    with capture_signals(app) as sent:
        by_default = WebhookClient(client).send("batch.completed")
        by_name = WebhookClient(client, blueprint="api.openai_webhooks").send(
            "batch.failed"
        )
        posted = post_event(client, "batch.expired")

    assert webhook_url(app) == "/api/webhooks/openai"
    assert [by_default.status_code, by_name.status_code, posted.status_code] == [
        200,
        200,
        200,
    ]
    assert sent.types == ["batch.completed", "batch.failed", "batch.expired"]
    assert {call.kwargs["blueprint"] for call in sent.of(webhook_received)} == {
        "api.openai_webhooks"
    }
    with pytest.raises(LookupError, match="'openai_webhooks'"):
        WebhookClient(client, blueprint="openai_webhooks").send("batch.completed")


def test_post_event_with_a_dict_ignores_allow_unknown(app: Flask) -> None:
    """allow_unknown only matters when building from a type name; it must
    not end up in a posted payload."""
    payload = make_event("video.completed", allow_unknown=True)
    with capture_signals(app) as sent:
        response = post_event(app.test_client(), payload, allow_unknown=True)
    assert response.status_code == 200
    [event] = sent.events
    assert "allow_unknown" not in (event.model_extra or {})
