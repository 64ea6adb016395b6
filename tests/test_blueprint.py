"""The blueprint: HTTP in, verification, refusals, registration."""

from __future__ import annotations

import base64
import json
import logging
import time
import typing as t

import pytest
from flask import Blueprint
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import given
from hypothesis import HealthCheck
from hypothesis import settings
from hypothesis import strategies as st

from flask_openai_webhooks import blueprint as blueprint_module
from flask_openai_webhooks import models
from flask_openai_webhooks import signals
from flask_openai_webhooks.blueprint import make_blueprint
from flask_openai_webhooks.state import get_state
from flask_openai_webhooks.state import states
from flask_openai_webhooks.state import webhook_url
from flask_openai_webhooks.stores.redis import RedisStore
from flask_openai_webhooks.testing import capture_signals
from flask_openai_webhooks.testing import make_event
from flask_openai_webhooks.testing import post_event
from flask_openai_webhooks.testing import signed_headers
from flask_openai_webhooks.testing import WebhookClient

from .conftest import SECRET

URL = "/webhooks/openai"


def deliver(
    client: FlaskClient,
    payload: dict[str, t.Any] | bytes,
    *,
    url: str = URL,
    secret: str = SECRET,
    **header_args: t.Any,
) -> t.Any:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    headers = signed_headers(body, secret, **header_args)
    return client.post(url, data=body, headers=headers, content_type="application/json")


@pytest.mark.parametrize("event_type", sorted(models.EVENT_TYPES))
def test_every_type_is_verified_parsed_and_signalled(
    app: Flask, client: FlaskClient, event_type: str
) -> None:
    with capture_signals(app) as captured:
        response = post_event(client, event_type)
    assert response.status_code == 200
    assert response.json == {"status": "processed"}
    names = [c.signal for c in captured]
    assert names == [event_type, "webhook-received"]
    for call in captured:
        assert call.event.type == event_type
        assert type(call.event) is models.EVENT_TYPES[event_type]


def test_signal_python_names_follow_the_type() -> None:
    assert signals.batch_completed.name == "batch.completed"
    assert signals.fine_tuning_job_succeeded.name == "fine_tuning.job.succeeded"
    assert signals.safety_org_alert_created.name == "safety.org_alert.created"
    assert signals.safety_identifier_blocked.name == "safety_identifier.blocked"


def test_receiver_gets_typed_event_app_sender_webhook_id_and_blueprint(
    app: Flask, client: FlaskClient
) -> None:
    seen: list[tuple[object, object, str, str]] = []

    def on_batch(
        sender: Flask, event: object, webhook_id: str, blueprint: str, **extra: object
    ) -> None:
        seen.append((sender, event, webhook_id, blueprint))

    payload = make_event("batch.completed", data={"id": "batch_42"})
    with signals.batch_completed.connected_to(on_batch, app):
        response = deliver(client, payload, webhook_id="wh_fixed_1")
    assert response.status_code == 200
    [(sender, event, webhook_id, blueprint)] = seen
    assert sender is app
    assert isinstance(event, models.BatchCompletedWebhookEvent)
    assert event.data.id == "batch_42"
    assert webhook_id == "wh_fixed_1"
    assert blueprint == "openai_webhooks"


def test_unknown_type_is_acknowledged_and_reaches_catch_all_only(
    app: Flask, client: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    payload = make_event("video.completed", allow_unknown=True)
    with caplog.at_level(logging.INFO, "flask_openai_webhooks"):
        with capture_signals(app) as captured:
            response = deliver(client, payload)
    assert response.status_code == 200
    [call] = list(captured)
    assert call.signal == "webhook-received"
    assert isinstance(call.event, models.UnknownWebhookEvent)
    assert call.event.type == "video.completed"
    assert call.event.data == payload["data"]
    assert "video.completed" in caplog.text


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"webhook-signature": None}, "missing_header"),
        ({"webhook-id": None}, "missing_header"),
        ({"webhook-timestamp": None}, "missing_header"),
        ({"webhook-signature": "v1"}, "invalid_signature_header"),
        ({"webhook-signature": ""}, "missing_header"),
        ({"webhook-signature": "v1,"}, "invalid_signature_header"),
        ({"webhook-signature": "v2,c2lnbmF0dXJl"}, "invalid_signature_header"),
        ({"webhook-signature": "v1,YQ==  v1,Yg=="}, "signature_mismatch"),
        ({"webhook-timestamp": "soon"}, "invalid_timestamp"),
        ({"webhook-id": "wh_a b"}, "invalid_webhook_id"),
    ],
    ids=[
        "no-signature",
        "no-id",
        "no-timestamp",
        "sig-v1",
        "sig-empty",
        "sig-v1-comma",
        "sig-v2",
        "sig-double-space-wrong",
        "timestamp-garbled",
        "id-garbled",
    ],
)
def test_bad_headers_get_400_naming_the_check(
    app: Flask, client: FlaskClient, change: dict[str, str | None], code: str
) -> None:
    body = json.dumps(make_event("batch.completed")).encode()
    headers = signed_headers(body, SECRET)
    for name, value in change.items():
        if value is None:
            del headers[name]
        else:
            headers[name] = value
    with capture_signals(app) as captured:
        response = client.post(URL, data=body, headers=headers)
    assert response.status_code == 400
    assert response.json is not None
    assert response.json["error"] == code
    assert SECRET[6:] not in response.get_data(as_text=True)
    [call] = list(captured)
    assert call.signal == "webhook-rejected"
    assert call.kwargs["error"].code == code


@pytest.mark.parametrize(
    ("offset", "status"),
    [(-300, 200), (300, 200), (-301, 400), (301, 400)],
    ids=["past-edge", "future-edge", "too-old", "too-new"],
)
def test_tolerance_edges(client: FlaskClient, offset: int, status: int) -> None:
    # The server reads the clock again: if the second ticked meanwhile, the
    # edge moved under the test, so that attempt says nothing; try again.
    for _attempt in range(5):
        now = int(time.time())
        response = deliver(
            client, make_event("batch.completed"), timestamp=now + offset
        )
        if int(time.time()) == now:
            break
    assert response.status_code == status


def test_configured_tolerance_applies_to_deliveries() -> None:
    app = Flask(__name__)
    app.config.update(OPENAI_WEBHOOK_SECRET=SECRET, OPENAI_WEBHOOK_TOLERANCE=1000)
    app.register_blueprint(make_blueprint())
    client = app.test_client()
    now = int(time.time())
    assert (
        deliver(client, make_event("batch.completed"), timestamp=now - 900).status_code
        == 200
    )
    assert (
        deliver(client, make_event("batch.completed"), timestamp=now + 900).status_code
        == 200
    )
    assert (
        deliver(client, make_event("batch.completed"), timestamp=now - 1100).status_code
        == 400
    )


def test_body_signed_with_other_secret_is_rejected(
    app: Flask, client: FlaskClient
) -> None:
    other = "whsec_" + base64.b64encode(b"another-key-of-thirty-two-bytes!").decode()
    with capture_signals(app) as captured:
        response = deliver(client, make_event("batch.completed"), secret=other)
    assert response.status_code == 400
    assert response.json is not None
    assert response.json["error"] == "signature_mismatch"
    assert [c.signal for c in captured] == ["webhook-rejected"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not json", "JSON"),
        (b"\xff\xfe\x00", "JSON"),
        (b"[1, 2, 3]", "object"),
        (b'{"id": "evt_1", "created_at": 1}', "type"),
        (
            json.dumps({"type": "batch.completed", "id": 1, "data": {}}).encode(),
            "batch.completed",
        ),
    ],
    ids=["not-json", "not-utf8", "array", "no-type", "wrong-shape"],
)
def test_verified_but_malformed_body_gets_400(
    app: Flask, client: FlaskClient, body: bytes, message: str
) -> None:
    with capture_signals(app) as captured:
        response = deliver(client, body)
    assert response.status_code == 400
    assert response.json is not None
    assert response.json["error"] == "invalid_payload"
    assert message in response.json["message"]
    assert [c.signal for c in captured] == ["webhook-rejected"]


def test_body_over_limit_gets_413(app: Flask) -> None:
    app = Flask(__name__)
    app.register_blueprint(make_blueprint(secret=SECRET, max_body=100))
    client = app.test_client()
    payload = make_event("batch.completed", data={"padding": "x" * 200})
    with capture_signals(app) as captured:
        response = deliver(client, payload)
    assert response.status_code == 413
    assert response.json is not None
    assert response.json["error"] == "body_too_large"
    assert [c.signal for c in captured] == ["webhook-rejected"]


def test_chunked_body_over_limit_gets_413_without_reading_it_all() -> None:
    app = Flask(__name__)
    app.register_blueprint(make_blueprint(secret=SECRET, max_body=100))
    consumed = 0

    def body_chunks() -> t.Iterator[bytes]:
        nonlocal consumed
        for _ in range(1000):
            consumed += 50
            yield b"x" * 50

    response = app.test_client().post(
        URL,
        headers={"Transfer-Encoding": "chunked"},
        environ_overrides={
            "wsgi.input": _IterStream(body_chunks()),
            "wsgi.input_terminated": True,
        },
    )
    assert response.status_code == 413
    assert consumed < 10_000


class _IterStream:
    """A WSGI input stream without a length, as a chunked upload is."""

    def __init__(self, chunks: t.Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = b""

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buffer) < size:
            try:
                self._buffer += next(self._chunks)
            except StopIteration:
                break
        if size < 0:
            size = len(self._buffer)
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    def readline(self, size: int = -1) -> bytes:
        return self.read(size)


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_other_methods_get_405(client: FlaskClient, method: str) -> None:
    response = client.open(URL, method=method)
    assert response.status_code == 405


def test_no_redirect_on_exact_path_and_custom_prefix() -> None:
    app = Flask(__name__)
    app.config["OPENAI_WEBHOOK_SECRET"] = SECRET
    app.register_blueprint(make_blueprint(), url_prefix="/x/y")
    client = app.test_client()
    response = deliver(client, make_event("batch.completed"), url="/x/y")
    assert response.status_code == 200
    assert deliver(client, make_event("batch.completed"), url=URL).status_code == 404
    for path in ("/x/y/", "/x/y"):
        assert client.post(path).status_code not in range(300, 400)


def test_two_blueprints_with_their_own_secrets_in_one_app() -> None:
    other = "whsec_" + base64.b64encode(b"second-project-key-thirty-two-b!").decode()
    app = Flask(__name__)
    app.register_blueprint(
        make_blueprint(name="project_a", secret=SECRET), url_prefix="/a"
    )
    app.register_blueprint(
        make_blueprint(name="project_b", secret=other), url_prefix="/b"
    )
    client = app.test_client()
    event = make_event("batch.completed")
    assert deliver(client, event, url="/a", secret=SECRET).status_code == 200
    assert deliver(client, event, url="/b", secret=other).status_code == 200
    assert deliver(client, event, url="/a", secret=other).status_code == 400
    assert deliver(client, event, url="/b", secret=SECRET).status_code == 400


def test_secret_list_accepts_any_and_rotation_header(
    caplog: pytest.LogCaptureFixture,
) -> None:
    old = "whsec_" + base64.b64encode(b"the-old-secret-thirty-two-bytes!").decode()
    app = Flask(__name__)
    app.config["OPENAI_WEBHOOK_SECRET"] = [SECRET, old]
    app.register_blueprint(make_blueprint())
    client = app.test_client()
    assert deliver(client, make_event("batch.completed")).status_code == 200
    with caplog.at_level(logging.INFO, "flask_openai_webhooks"):
        assert (
            deliver(client, make_event("batch.completed"), secret=old).status_code
            == 200
        )
    assert "older secret" in caplog.text
    body = json.dumps(make_event("batch.completed")).encode()
    headers = signed_headers(body, old)
    fresh = signed_headers(
        body,
        SECRET,
        webhook_id=headers["webhook-id"],
        timestamp=int(headers["webhook-timestamp"]),
    )
    headers["webhook-signature"] += " " + fresh["webhook-signature"]
    assert client.post(URL, data=body, headers=headers).status_code == 200


def test_two_apps_in_one_process_keep_signals_apart() -> None:
    bp = make_blueprint(secret=SECRET)
    app_a, app_b = Flask("a"), Flask("b")
    app_a.register_blueprint(bp)
    app_b.register_blueprint(bp)
    heard_a: list[str] = []
    heard_b: list[str] = []

    @signals.batch_completed.connect_via(app_a)
    def on_a(
        sender: Flask, event: models.BatchCompletedWebhookEvent, **extra: object
    ) -> None:
        heard_a.append(event.data.id)

    @signals.batch_completed.connect_via(app_b)
    def on_b(
        sender: Flask, event: models.BatchCompletedWebhookEvent, **extra: object
    ) -> None:
        heard_b.append(event.data.id)

    try:
        deliver(
            app_a.test_client(), make_event("batch.completed", data={"id": "batch_a"})
        )
        deliver(
            app_b.test_client(), make_event("batch.completed", data={"id": "batch_b"})
        )
    finally:
        signals.batch_completed.disconnect(on_a)
        signals.batch_completed.disconnect(on_b)
    assert heard_a == ["batch_a"]
    assert heard_b == ["batch_b"]


def test_async_receiver_runs(app: Flask, client: FlaskClient) -> None:
    import asyncio

    seen: list[str] = []

    async def on_response(
        sender: Flask, event: models.ResponseCompletedWebhookEvent, **extra: object
    ) -> None:
        await asyncio.sleep(0)
        seen.append(event.data.id)

    with signals.response_completed.connected_to(on_response, app):
        response = post_event(client, "response.completed", data={"id": "resp_1"})
    assert response.status_code == 200
    assert seen == ["resp_1"]


def test_csrf_protect_does_not_block_deliveries() -> None:
    from flask_wtf.csrf import CSRFProtect

    app = Flask(__name__)
    app.config.update(SECRET_KEY="dev", OPENAI_WEBHOOK_SECRET=SECRET)
    CSRFProtect(app)

    @app.post("/form")
    def form() -> str:
        return "ok"

    app.register_blueprint(make_blueprint())
    client = app.test_client()
    assert client.post("/form").status_code == 400
    assert deliver(client, make_event("batch.completed")).status_code == 200


def test_receiver_never_sees_an_unverified_event(
    app: Flask, client: FlaskClient
) -> None:
    seen: list[object] = []

    def spy(sender: Flask, **kwargs: object) -> None:
        seen.append(kwargs)

    body = json.dumps(make_event("batch.completed")).encode()
    headers = signed_headers(body, SECRET)
    with (
        signals.webhook_received.connected_to(spy, app),
        signals.batch_completed.connected_to(spy, app),
    ):
        client.post(URL, data=body + b" ", headers=headers)
        client.post(URL, data=body, headers={**headers, "webhook-id": "wh_other"})
        client.post(URL, data=body)
    assert seen == []


_header_junk = st.one_of(
    st.none(),
    st.text(
        alphabet=st.characters(codec="latin-1", exclude_characters="\r\n"), max_size=60
    ),
    st.sampled_from(["v1,", "v1", "v1,abc  v1,def", "v2,abc", " ", "0", "-5"]),
)


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    body=st.one_of(
        st.binary(max_size=300),
        st.builds(
            lambda t: json.dumps(make_event(t)).encode(),
            st.sampled_from(sorted(models.EVENT_TYPES)),
        ),
    ),
    webhook_id=_header_junk,
    timestamp=st.one_of(_header_junk, st.just(str(int(time.time())))),
    signature=_header_junk,
)
def test_unsigned_input_never_gets_2xx_nor_5xx_nor_reaches_receivers(
    app: Flask,
    client: FlaskClient,
    body: bytes,
    webhook_id: str | None,
    timestamp: str | None,
    signature: str | None,
) -> None:
    headers = {
        name: value
        for name, value in (
            ("webhook-id", webhook_id),
            ("webhook-timestamp", timestamp),
            ("webhook-signature", signature),
        )
        if value is not None
    }
    seen: list[object] = []

    def spy(sender: Flask, **kwargs: object) -> None:
        seen.append(kwargs)

    with signals.webhook_received.connected_to(spy, app):
        response = client.post(URL, data=body, headers=headers)
    assert 400 <= response.status_code < 500
    assert seen == []


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(body=st.binary(max_size=300) | st.text(max_size=200).map(str.encode))
def test_signed_junk_never_gets_5xx(
    app: Flask, client: FlaskClient, body: bytes
) -> None:
    response = deliver(client, body)
    assert response.status_code in (200, 400)


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_body_limit_is_exact(chunked: bool) -> None:
    body = json.dumps(make_event("batch.completed")).encode()
    headers = signed_headers(body, SECRET)
    answers = []
    for limit in (len(body), len(body) - 1):
        app = Flask(__name__)
        app.register_blueprint(make_blueprint(secret=SECRET, max_body=limit))
        client = app.test_client()
        if chunked:
            response = client.post(
                URL,
                headers={**headers, "Transfer-Encoding": "chunked"},
                environ_overrides={
                    "wsgi.input": _IterStream(iter([body])),
                    "wsgi.input_terminated": True,
                },
            )
        else:
            response = client.post(URL, data=body, headers=headers)
        answers.append(response.status_code)
    assert answers == [200, 413]


def test_prefix_with_trailing_slash_never_redirects() -> None:
    app = Flask(__name__)
    app.register_blueprint(make_blueprint(secret=SECRET), url_prefix="/hooks/openai/")
    client = app.test_client()
    for url in ("/hooks/openai", "/hooks/openai/"):
        assert (
            deliver(client, make_event("batch.completed"), url=url).status_code == 200
        )


def test_async_callables_that_are_not_async_functions_run(
    app: Flask, client: FlaskClient
) -> None:
    import functools

    seen: list[str] = []

    class AsyncReceiver:
        async def __call__(self, sender: Flask, **extra: object) -> None:
            seen.append("object")

    async def decorated_target(sender: Flask, **extra: object) -> None:
        seen.append("decorated")

    @functools.wraps(decorated_target)
    def decorated(*args: object, **kwargs: object) -> t.Any:
        return decorated_target(*args, **kwargs)  # type: ignore[arg-type]

    receiver_object = AsyncReceiver()
    with (
        signals.batch_completed.connected_to(receiver_object, app),
        signals.batch_completed.connected_to(decorated, app),
    ):
        assert post_event(client, "batch.completed").status_code == 200
    assert sorted(seen) == ["decorated", "object"]


# --------------------------------------------------------------------------
# Refusals: counted, signalled, and logged loudly enough to be seen
# --------------------------------------------------------------------------


def test_refusal_is_counted_in_the_store_and_signalled_with_the_blueprint(
    app: Flask, client: FlaskClient
) -> None:
    heard: list[dict[str, t.Any]] = []

    def on_rejected(sender: Flask, **kwargs: t.Any) -> None:
        heard.append(kwargs)

    body = json.dumps(make_event("batch.completed")).encode()
    headers = signed_headers(body, SECRET, webhook_id="wh_refused_1")
    headers["webhook-signature"] = "v1,YQ=="
    with signals.webhook_rejected.connected_to(on_rejected, app):
        assert client.post(URL, data=body, headers=headers).status_code == 400
        assert client.post(URL, data=b"{}").status_code == 400
    assert [(h["blueprint"], h["error"].code) for h in heard] == [
        ("openai_webhooks", "signature_mismatch"),
        ("openai_webhooks", "missing_header"),
    ]
    rejections = get_state(app).store.rejections()
    assert rejections.counts == {"signature_mismatch": 1, "missing_header": 1}
    assert [(r.reason, r.webhook_id) for r in rejections.recent] == [
        ("missing_header", None),
        ("signature_mismatch", "wh_refused_1"),
    ]
    # A refused delivery is never logged as a delivery.
    assert get_state(app).store.get("wh_refused_1") is None


def test_a_long_webhook_id_header_is_cut_when_counted(
    app: Flask, client: FlaskClient
) -> None:
    client.post(URL, data=b"{}", headers={"webhook-id": "x" * 5000})
    [rejection] = get_state(app).store.rejections().recent
    assert rejection.webhook_id == "x" * 200


def test_signature_mismatch_warns_once_then_logs_info_with_a_count(
    app: Flask,
    client: FlaskClient,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A wrong secret shows under any server's default logging (WARNING),
    without one warning per delivery: the next ones within the interval are
    INFO, and the next warning counts them."""
    other = "whsec_" + base64.b64encode(b"another-key-of-thirty-two-bytes!").decode()
    messages: list[str] = []

    def refused() -> list[logging.LogRecord]:
        """Send a delivery signed with the wrong secret; the log records."""
        caplog.clear()
        response = deliver(client, make_event("batch.completed"), secret=other)
        assert response.status_code == 400
        assert response.json is not None
        assert response.json["error"] == "signature_mismatch"
        messages.extend(r.getMessage() for r in caplog.records)
        return list(caplog.records)

    with caplog.at_level(logging.INFO, "flask_openai_webhooks"):
        [first] = refused()
        assert first.levelno == logging.WARNING
        message = first.getMessage()
        assert "1 signature_mismatch" in message
        assert "OPENAI_WEBHOOK_SECRET" in message
        assert "THIS endpoint" in message
        assert "proxy" in message
        assert "flask openai-webhooks verify" in message
        for _ in range(2):
            [later] = refused()
            assert later.levelno == logging.INFO
            assert "signature" in later.getMessage()
        # Once the interval has passed, the next refusal warns again, with
        # the count of those logged at INFO meanwhile.
        monkeypatch.setattr(blueprint_module, "REJECTION_WARNING_INTERVAL", 0.0)
        [again] = refused()
        assert again.levelno == logging.WARNING
        assert "3 signature_mismatch" in again.getMessage()
    assert len(messages) == 4
    for text in messages:
        assert SECRET[6:] not in text
        assert other[6:] not in text


def test_stale_timestamp_warning_points_at_the_clock(
    app: Flask, client: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, "flask_openai_webhooks"):
        response = deliver(
            client, make_event("batch.completed"), timestamp=int(time.time()) - 3600
        )
    assert response.status_code == 400
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "timestamp_too_old" in warning.getMessage()
    assert "clock" in warning.getMessage()


def test_junk_refusals_are_info_only(
    app: Flask, client: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    """The internet sends junk: a missing header is no misconfiguration."""
    with caplog.at_level(logging.INFO, "flask_openai_webhooks"):
        for _ in range(3):
            assert client.post(URL, data=b"{}").status_code == 400
    assert caplog.records
    assert all(r.levelno == logging.INFO for r in caplog.records)


def test_a_rejected_receiver_that_raises_is_logged_and_ignored(
    app: Flask, client: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[str] = []

    def broken_reporter(sender: Flask, **kwargs: object) -> None:
        raise RuntimeError("the error tracker is down")

    def reporter(sender: Flask, *, error: Exception, **kwargs: object) -> None:
        calls.append(type(error).__name__)

    with (
        signals.webhook_rejected.connected_to(broken_reporter, app),
        signals.webhook_rejected.connected_to(reporter, app),
        caplog.at_level(logging.ERROR, "flask_openai_webhooks"),
    ):
        response = client.post(URL, data=b"{}")
    assert response.status_code == 400
    assert response.json is not None
    assert response.json["error"] == "missing_header"
    # The next receiver still heard it.
    assert calls == ["WebhookVerificationError"]
    [record] = caplog.records
    assert "webhook-rejected receiver raised; ignored" in record.getMessage()
    assert record.exc_info is not None
    assert "the error tracker is down" in caplog.text


# --------------------------------------------------------------------------
# Nested and repeated registrations
# --------------------------------------------------------------------------


def nested_app(secret: str) -> tuple[Flask, Blueprint]:
    """An app with the webhook blueprint inside an ``api`` blueprint."""
    app = Flask(__name__)
    app.config.update(TESTING=True, OPENAI_WEBHOOK_SECRET=secret)
    bp = make_blueprint()
    api = Blueprint("api", __name__, url_prefix="/api")
    api.register_blueprint(bp)
    app.register_blueprint(api)
    return app, bp


def test_nested_blueprint_receives_under_its_registered_name(secret: str) -> None:
    app, _ = nested_app(secret)
    client = app.test_client()
    assert list(states(app)) == ["api.openai_webhooks"]
    state = get_state(app)
    assert state is get_state(app, "api.openai_webhooks")
    assert state.name == "api.openai_webhooks"
    assert state.endpoint == "api.openai_webhooks.receive"
    assert webhook_url(app) == "/api/webhooks/openai"
    assert webhook_url(app, "api.openai_webhooks") == "/api/webhooks/openai"
    heard: list[tuple[str, str]] = []

    def on_batch(
        sender: Flask, *, webhook_id: str, blueprint: str, **extra: object
    ) -> None:
        heard.append((webhook_id, blueprint))

    with signals.batch_completed.connected_to(on_batch, app):
        answers = [
            post_event(client, "batch.completed", webhook_id="wh_nested_1"),
            WebhookClient(client).send("batch.completed", webhook_id="wh_nested_2"),
            deliver(
                client,
                make_event("batch.completed"),
                url="/api/webhooks/openai",
                webhook_id="wh_nested_3",
            ),
        ]
    assert [a.json for a in answers] == [{"status": "processed"}] * 3
    assert heard == [
        ("wh_nested_1", "api.openai_webhooks"),
        ("wh_nested_2", "api.openai_webhooks"),
        ("wh_nested_3", "api.openai_webhooks"),
    ]
    for webhook_id in ("wh_nested_1", "wh_nested_2", "wh_nested_3"):
        record = state.store.get(webhook_id)
        assert record is not None
        assert record.status == "processed"
    assert deliver(client, make_event("batch.completed")).status_code == 404


def test_one_blueprint_registered_twice_gets_two_states(secret: str) -> None:
    app, bp = nested_app(secret)
    app.register_blueprint(bp, name="second", url_prefix="/second")
    client = app.test_client()
    assert sorted(states(app)) == ["api.openai_webhooks", "second"]
    first, second = get_state(app, "api.openai_webhooks"), get_state(app, "second")
    assert first is not second
    assert first.store is not second.store
    assert second.name == "second"
    assert second.endpoint == "second.receive"
    assert webhook_url(app, "second") == "/second"
    with pytest.raises(LookupError, match="several"):
        get_state(app)
    with pytest.raises(LookupError, match="several"):
        post_event(client, "batch.completed")

    heard: list[tuple[str, str]] = []

    def on_batch(
        sender: Flask, *, webhook_id: str, blueprint: str, **extra: object
    ) -> None:
        heard.append((webhook_id, blueprint))

    with signals.batch_completed.connected_to(on_batch, app):
        to_second = post_event(
            client, "batch.completed", webhook_id="wh_twice", blueprint="second"
        )
        assert to_second.json == {"status": "processed"}
        assert first.store.get("wh_twice") is None
        logged = second.store.get("wh_twice")
        assert logged is not None
        assert logged.status == "processed"
        # The same id at the other registration is another delivery.
        to_first = WebhookClient(client, blueprint="api.openai_webhooks").send(
            "batch.completed", webhook_id="wh_twice"
        )
        assert to_first.json == {"status": "processed"}
    assert heard == [("wh_twice", "second"), ("wh_twice", "api.openai_webhooks")]


def test_a_refusal_is_still_answered_when_the_store_is_down(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Counting a refusal is best effort: junk gets its 400 (not a 503 that
    would invite a retry) while the store is unreachable."""
    store = RedisStore("redis://127.0.0.1:1/0", socket_timeout=0.5)
    app = Flask(__name__)
    app.config.update(TESTING=True, OPENAI_WEBHOOK_SECRET=SECRET)
    app.register_blueprint(make_blueprint(store=store))
    try:
        with (
            capture_signals(app) as captured,
            caplog.at_level(logging.WARNING, "flask_openai_webhooks"),
        ):
            response = app.test_client().post(URL, data=b"{}")
    finally:
        store.close()
    assert response.status_code == 400
    assert response.json is not None
    assert response.json["error"] == "missing_header"
    assert "could not count a refused delivery" in caplog.text
    assert captured.names == ["webhook-rejected"]


def test_one_name_one_state_flask_refuses_a_second_registration() -> None:
    """The registered name keys the state; Flask refuses a second
    registration under the same name, so a state is never replaced."""
    app = Flask(__name__)
    app.config.update(TESTING=True, OPENAI_WEBHOOK_SECRET=SECRET)
    bp = make_blueprint()
    app.register_blueprint(bp)
    first = get_state(app)
    with pytest.raises(ValueError, match="already registered"):
        app.register_blueprint(bp, url_prefix="/again")
    assert get_state(app) is first
