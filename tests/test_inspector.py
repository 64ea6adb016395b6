"""The inspector blueprint through Flask's test client: authorization,
CSRF, escaping, the pages and their filters, paging and the replay
buttons, on real stores filled through the real webhook blueprint. The
same pages in a real browser are in ``test_inspector_browser.py``."""

from __future__ import annotations

import collections.abc as c
import datetime
import html
import html.parser
import json
import math
import re
import typing as t
import urllib.parse
from pathlib import Path

import pytest
from flask import abort
from flask import Flask
from flask import redirect
from flask import request
from flask import session
from flask.testing import FlaskClient
from flask.typing import ResponseReturnValue
from flask_wtf.csrf import CSRFProtect

from flask_openai_webhooks.blueprint import make_blueprint
from flask_openai_webhooks.checks import run_checks
from flask_openai_webhooks.inspector import make_inspector_blueprint
from flask_openai_webhooks.log import get_delivery
from flask_openai_webhooks.signals import batch_completed
from flask_openai_webhooks.state import get_state
from flask_openai_webhooks.state import states
from flask_openai_webhooks.stores import Delivery
from flask_openai_webhooks.testing import encode_body
from flask_openai_webhooks.testing import make_event
from flask_openai_webhooks.testing import new_webhook_id
from flask_openai_webhooks.testing import post_event
from flask_openai_webhooks.testing import signed_headers

from .conftest import SECRET

PREFIX = "/admin/openai-webhooks"
PAGES = ("/", "/refused", "/health")
XSS = "<script>alert(1)</script>"


class Receiver:
    """A receiver that fails while ``broken``, and counts its runs."""

    def __init__(self) -> None:
        self.broken = False
        self.runs = 0

    def __call__(self, sender: Flask, **extra: t.Any) -> None:
        self.runs += 1
        if self.broken:
            raise ConnectionError("the results bucket did not answer")


def make_app(
    *,
    store: str = "memory",
    authorize: c.Callable[[], bool] | None = None,
    csrf: bool = False,
    **inspector: t.Any,
) -> Flask:
    """An app with the webhook blueprint, a ``/login`` route that makes the
    session an admin's, and the inspector allowing admins only."""
    app = Flask(__name__)
    app.config.update(
        TESTING=True,
        SECRET_KEY="test-secret-key",
        OPENAI_WEBHOOK_SECRET=SECRET,
        OPENAI_WEBHOOK_STORE=store,
    )
    if csrf:
        CSRFProtect(app)
    app.register_blueprint(make_blueprint())
    app.register_blueprint(
        make_inspector_blueprint(
            authorize=authorize or (lambda: session.get("admin") is True),
            **inspector,
        ),
        url_prefix=PREFIX,
    )

    @app.get("/login")
    def login() -> ResponseReturnValue:
        session["admin"] = True
        return "ok"

    return app


@pytest.fixture
def app() -> c.Iterator[Flask]:
    app = make_app()
    yield app
    close_stores(app)


@pytest.fixture
def receiver(app: Flask) -> c.Iterator[Receiver]:
    """Connected to ``batch.completed`` for ``app``."""
    receiver = Receiver()
    with batch_completed.connected_to(receiver, app):
        yield receiver


@pytest.fixture
def admin(app: Flask) -> FlaskClient:
    """A client whose session is an admin's."""
    client = app.test_client()
    assert client.get("/login").status_code == 200
    return client


def close_stores(app: Flask) -> None:
    for state in states(app).values():
        getattr(state.store, "close", lambda: None)()


def text_of(page: str) -> str:
    """The page's text as a browser would show it: tags dropped, entities
    decoded, spaces collapsed."""
    inline = re.sub(r"</?(?:a|code|em|span|strong|time)\b[^>]*>", "", page)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", inline)).split())


def csrf_token(client: FlaskClient, path: str = "/") -> str:
    page = client.get(PREFIX + path).get_data(as_text=True)
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found is not None, "the page has no CSRF token"
    return found.group(1)


def delivery_links(page: str) -> list[str]:
    """The webhook-ids the deliveries table links to, in order."""
    return [
        urllib.parse.unquote(html.unescape(path))
        for path in re.findall(rf'href="{PREFIX}/deliveries/([^"]+)"', page)
    ]


def listed(client: FlaskClient, query: str = "") -> list[str]:
    response = client.get(f"{PREFIX}/?{query}")
    assert response.status_code == 200, response.get_data(as_text=True)
    return delivery_links(response.get_data(as_text=True))


def post(client: FlaskClient, event_type: str, **fields: t.Any) -> str:
    """Deliver a signed event through the webhook blueprint; return its
    webhook-id."""
    webhook_id = new_webhook_id()
    response = post_event(client, event_type, webhook_id=webhook_id, **fields)
    assert response.status_code in (200, 500), response.get_data(as_text=True)
    return webhook_id


# --- registration -----------------------------------------------------------------


@pytest.mark.parametrize("arguments", [{}, {"authorize": None}])
def test_without_authorize_is_a_runtime_error(arguments: dict[str, t.Any]) -> None:
    with pytest.raises(RuntimeError, match="authorize=") as caught:
        make_inspector_blueprint(**arguments)

    assert "current_user.is_authenticated" in str(caught.value)


def test_authorize_must_be_callable() -> None:
    with pytest.raises(TypeError, match="authorize must be a function"):
        make_inspector_blueprint(authorize=True)  # type: ignore[arg-type]


def test_registering_without_a_secret_key_is_a_runtime_error_naming_it() -> None:
    app = Flask(__name__)
    app.config.update(TESTING=True, OPENAI_WEBHOOK_SECRET=SECRET)
    app.register_blueprint(make_blueprint())

    with pytest.raises(RuntimeError, match="SECRET_KEY"):
        app.register_blueprint(
            make_inspector_blueprint(authorize=lambda: True), url_prefix=PREFIX
        )


def test_the_inspector_is_off_unless_registered() -> None:
    app = Flask(__name__)
    app.config.update(TESTING=True, OPENAI_WEBHOOK_SECRET=SECRET, SECRET_KEY="k")
    app.register_blueprint(make_blueprint())

    assert app.test_client().get(PREFIX + "/").status_code == 404


# --- authorization ----------------------------------------------------------------


def test_every_request_is_403_without_authorization(app: Flask) -> None:
    client = app.test_client()
    paths = [*PAGES, "/deliveries/wh_1", "/static/inspector.css"]

    for path in paths:
        assert client.get(PREFIX + path).status_code == 403, path
    # POSTs too, and authorization comes before the CSRF check: 403, not 400.
    for path in ("/replay", "/replay-failed"):
        assert client.post(PREFIX + path, data={"webhook_id": "x"}).status_code == 403


def test_authorize_runs_before_every_request() -> None:
    calls: list[str] = []

    def authorize() -> bool:
        calls.append("called")
        return True

    app = make_app(authorize=authorize)
    client = app.test_client()
    for path in (*PAGES, "/static/inspector.css"):
        response = client.get(PREFIX + path)
        assert response.status_code == 200, path
        response.close()

    assert len(calls) == 4
    close_stores(app)


def test_authorize_may_answer_with_its_own_http_error() -> None:
    def must_log_in() -> bool:
        abort(redirect("/login?next=inspector"))

    app = make_app(authorize=must_log_in)

    response = app.test_client().get(PREFIX + "/")

    assert response.status_code == 302
    assert response.headers["Location"] == "/login?next=inspector"
    close_stores(app)


def test_pages_render_for_an_authorized_user(admin: FlaskClient) -> None:
    for path in PAGES:
        response = admin.get(PREFIX + path)
        assert response.status_code == 200, path
        assert response.mimetype == "text/html"
        page = response.get_data(as_text=True)
        # Server-rendered, no JavaScript, nothing from another origin.
        assert "<script" not in page
        assert not re.search(r'(?:src|href)="(?:https?:)?//', page)
        assert f'href="{PREFIX}/static/inspector.css"' in page
        csp = response.headers["Content-Security-Policy"]
        assert "default-src 'none'" in csp
        assert "frame-ancestors 'none'" in csp
        assert response.headers["Cache-Control"] == "no-store"


def test_the_stylesheet_is_served_from_the_package(admin: FlaskClient) -> None:
    response = admin.get(PREFIX + "/static/inspector.css")

    assert response.status_code == 200
    assert response.mimetype == "text/css"
    assert b"@media" in response.data
    response.close()


# --- accessibility ----------------------------------------------------------------


class Elements(html.parser.HTMLParser):
    """Every start tag with its attributes, and the text of each caption."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def of(self, tag: str) -> list[dict[str, str | None]]:
        return [attrs for name, attrs in self.tags if name == tag]


def test_tables_have_captions_and_column_headers_and_fields_labels(
    admin: FlaskClient, receiver: Receiver
) -> None:
    receiver.broken = True
    webhook_id = post(admin, "batch.completed")
    post_event(admin, "batch.completed", headers={"webhook-signature": "v1,bad"})

    for path in (*PAGES, f"/deliveries/{webhook_id}"):
        page = admin.get(PREFIX + path).get_data(as_text=True)
        parser = Elements()
        parser.feed(page)
        assert parser.of("table"), path
        assert len(parser.of("caption")) == len(parser.of("table")), path
        assert all(th.get("scope") == "col" for th in parser.of("th")), path
        ids = {attrs["id"] for _, attrs in parser.tags if attrs.get("id")}
        labelled = {label["for"] for label in parser.of("label")}
        fields = [
            attrs
            for tag, attrs in parser.tags
            if tag in ("input", "select") and attrs.get("type") != "hidden"
        ]
        for field in fields:
            assert field.get("id") in labelled, (path, field)
        assert labelled <= ids, path
        assert '<html lang="en">' in page
        assert 'name="viewport"' in page


# --- the deliveries page ----------------------------------------------------------


def test_deliveries_are_listed_newest_first(admin: FlaskClient) -> None:
    ids = [post(admin, event_type) for event_type in ("batch.completed",) * 3]

    assert listed(admin) == list(reversed(ids))


def test_an_empty_log_says_so(admin: FlaskClient) -> None:
    page = admin.get(PREFIX + "/").get_data(as_text=True)

    assert "No deliveries yet." in text_of(page)


def test_filter_by_status(admin: FlaskClient, receiver: Receiver) -> None:
    ok = post(admin, "batch.completed")
    receiver.broken = True
    failed = post(admin, "batch.completed")
    unhandled_type = post(admin, "batch.failed")  # no receiver for this type

    assert listed(admin, "status=failed") == [failed]
    assert listed(admin, "status=processed") == [unhandled_type, ok]
    assert listed(admin, "status=failed&status=processed") == [
        unhandled_type,
        failed,
        ok,
    ]
    page = admin.get(PREFIX + "/?status=failed").get_data(as_text=True)
    assert re.search(r'value="failed" checked', page)


def test_filter_by_type_pattern(admin: FlaskClient) -> None:
    batch = post(admin, "batch.completed")
    response = post(admin, "response.completed")
    failed = post(admin, "batch.failed")

    assert listed(admin, "type=batch.*") == [failed, batch]
    assert listed(admin, "type=response.completed") == [response]
    assert listed(admin, "type=eval.*") == []


@pytest.mark.parametrize("field", ["webhook_id", "event_id", "object_id"])
def test_search_finds_one_delivery_by_any_of_its_ids(
    admin: FlaskClient, field: str
) -> None:
    post(admin, "batch.completed", data={"id": "batch_other"})
    wanted = post(admin, "batch.completed", data={"id": "batch_wanted"})
    post(admin, "batch.completed", data={"id": "batch_third"})
    record = get_delivery(wanted, app=admin.application)
    assert record is not None

    query = urllib.parse.urlencode({"q": getattr(record, field)})
    assert listed(admin, query) == [wanted]


def test_search_for_nothing_known_lists_nothing(admin: FlaskClient) -> None:
    post(admin, "batch.completed")

    page = admin.get(PREFIX + "/?q=wh_unknown").get_data(as_text=True)

    assert delivery_links(page) == []
    assert "No deliveries match these filters." in text_of(page)


def local(timestamp: float) -> str:
    """A ``datetime-local`` value (UTC) for a Unix time."""
    moment = datetime.datetime.fromtimestamp(timestamp, tz=datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S")


def test_filter_by_time_range(admin: FlaskClient) -> None:
    webhook_id = post(admin, "batch.completed")
    record = get_delivery(webhook_id, app=admin.application)
    assert record is not None
    second = math.floor(record.first_received_at)

    def within(**args: str) -> list[str]:
        return listed(admin, urllib.parse.urlencode(args))

    assert within(**{"from": local(second)}) == [webhook_id]
    assert within(**{"from": local(second + 1)}) == []
    assert within(until=local(second + 1)) == [webhook_id]
    assert within(until=local(second)) == []
    assert within(**{"from": local(second - 60), "until": local(second + 60)}) == [
        webhook_id
    ]
    # A minute's precision, as browsers send it, works too.
    assert within(**{"from": local(second - 60)[:16]}) == [webhook_id]
    for preset in ("1h", "24h", "7d"):
        assert within(range=preset) == [webhook_id]
    # The preset and From both apply: the later start wins.
    assert within(range="7d", **{"from": local(second + 1)}) == []


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("status=done", "Unknown status 'done'."),
        ("range=3y", "Unknown time range '3y'."),
        ("from=yesterday", "From is not a date and time"),
        ("until=2025-13-01T00:00", "Before is not a date and time"),
        ("before=not-a-cursor", "not a delivery-log cursor"),
    ],
)
def test_a_bad_filter_is_a_400_that_says_why(
    admin: FlaskClient, query: str, message: str
) -> None:
    post(admin, "batch.completed")

    response = admin.get(f"{PREFIX}/?{query}")

    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert message in text_of(page)
    assert delivery_links(page) == []


def older_link(page: str) -> str | None:
    found = re.search(r'<a href="([^"]+)" rel="next">', page)
    return None if found is None else html.unescape(found.group(1))


@pytest.mark.parametrize("store", ["memory", "sqlite"])
def test_paging_follows_the_stores_cursor(tmp_path: Path, store: str) -> None:
    app = make_app(
        store=f"sqlite:///{tmp_path / 'log.db'}" if store == "sqlite" else store
    )
    admin = app.test_client()
    admin.get("/login")
    posted = [post(admin, "batch.completed") for _ in range(5)]
    post(admin, "response.completed")  # filtered out below

    seen: list[list[str]] = []
    url: str | None = PREFIX + "/?type=batch.*&limit=2"
    while url is not None:
        page = admin.get(url).get_data(as_text=True)
        seen.append(delivery_links(page))
        url = older_link(page)
        if url is not None:
            query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
            # The filters and page size are kept; the position is a cursor,
            # never an offset.
            assert query["type"] == ["batch.*"]
            assert query["limit"] == ["2"]
            assert "before" in query
            assert not {"offset", "page"} & set(query)

    assert [len(page) for page in seen] == [2, 2, 1]
    assert [webhook_id for page in seen for webhook_id in page] == posted[::-1]
    later = admin.get(
        PREFIX
        + "/?type=batch.*&limit=2&before="
        + urllib.parse.quote(json.dumps([0, ""]))
    )
    assert "Newest deliveries" in text_of(later.get_data(as_text=True))
    close_stores(app)


def test_a_page_size_is_kept_within_bounds(admin: FlaskClient) -> None:
    for _ in range(3):
        post(admin, "batch.completed")

    assert len(listed(admin, "limit=0")) == 1
    assert len(listed(admin, "limit=100000")) == 3


# --- one delivery -----------------------------------------------------------------


def test_a_delivery_shows_receivers_traceback_attempts_and_body(
    admin: FlaskClient, receiver: Receiver
) -> None:
    receiver.broken = True
    webhook_id = post(admin, "batch.completed", data={"id": "batch_abc"})
    post_event(
        admin, "batch.completed", webhook_id=webhook_id, data={"id": "batch_abc"}
    )

    response = admin.get(f"{PREFIX}/deliveries/{webhook_id}")

    assert response.status_code == 200
    page = response.get_data(as_text=True)
    text = text_of(page)
    assert f"Webhook-id {webhook_id}" in text
    assert "Object id batch_abc" in text
    assert "Attempts 2" in text
    assert "builtins.ConnectionError: the results bucket did not answer" in text
    assert "Traceback (most recent call last)" in text
    assert 'raise ConnectionError("the results bucket did not answer")' in text
    assert "tests.test_inspector.Receiver" in text
    assert text.count("delivery failed answered 500") == 2
    # The body, indented, exactly the JSON that arrived.
    body = re.search(r'<pre class="code body"[^>]*>(.*?)</pre>', page, re.DOTALL)
    assert body is not None
    shown = html.unescape(body.group(1))
    assert '\n  "type": "batch.completed",\n' in shown
    record = get_delivery(webhook_id, app=admin.application)
    assert record is not None
    assert json.loads(shown) == json.loads(record.body)


def test_an_unknown_delivery_is_a_404(admin: FlaskClient) -> None:
    response = admin.get(PREFIX + "/deliveries/wh_gone")

    assert response.status_code == 404
    assert "No delivery with webhook-id wh_gone" in text_of(
        response.get_data(as_text=True)
    )


def test_any_webhook_id_links_to_its_page(admin: FlaskClient) -> None:
    webhook_id = 'wh_a/b?c#d%e"f<g>'
    post_event(admin, "batch.completed", webhook_id=webhook_id)

    assert listed(admin) == [webhook_id]
    quoted = urllib.parse.quote(webhook_id, safe="/")
    response = admin.get(f"{PREFIX}/deliveries/{quoted}")
    assert response.status_code == 200
    assert f"Webhook-id {webhook_id}" in text_of(response.get_data(as_text=True))


# --- escaping and secrets ---------------------------------------------------------


def test_payload_values_are_escaped_everywhere(
    admin: FlaskClient, receiver: Receiver
) -> None:
    receiver.broken = True
    post_event(admin, "batch.completed", data={"id": XSS}, webhook_id=f"wh_{XSS}")
    post_event(
        admin,
        make_event("video.completed", allow_unknown=True),
        type=XSS,
        id=f"evt_{XSS}",
    )
    post_event(
        admin,
        "batch.completed",
        webhook_id=f"wh_{XSS}_refused",
        headers={"webhook-signature": "v1,bad"},
    )
    webhook_ids = listed(admin)
    query = urllib.parse.urlencode({"q": XSS, "type": XSS})

    for path in (
        *PAGES,
        f"/?{query}",
        *(f"/deliveries/{urllib.parse.quote(w, safe='/')}" for w in webhook_ids),
        f"/deliveries/{urllib.parse.quote(XSS)}",
    ):
        page = admin.get(PREFIX + path).get_data(as_text=True)
        assert "<script" not in page, path
    list_page = admin.get(PREFIX + "/").get_data(as_text=True)
    assert text_of(list_page).count(XSS) >= 3  # shown as text
    refused = admin.get(PREFIX + "/refused").get_data(as_text=True)
    assert f"wh_{XSS}_refused" in text_of(refused)


def test_no_page_shows_a_secret_or_a_signature(
    admin: FlaskClient, receiver: Receiver
) -> None:
    app = admin.application
    signatures: list[str] = []
    for index, event_type in enumerate(("batch.completed", "batch.failed")):
        body = encode_body(make_event(event_type))
        headers = signed_headers(body, SECRET, webhook_id=f"wh_{index}")
        signatures.append(headers["webhook-signature"])
        admin.post(
            "/webhooks/openai",
            data=body,
            headers=headers,
            content_type="application/json",
        )
    receiver.broken = True
    post_event(admin, "batch.completed", webhook_id="wh_failing")
    forged = signed_headers(b"{}", SECRET, webhook_id="wh_refused")
    signatures.append(forged["webhook-signature"])
    admin.post(
        "/webhooks/openai",
        data=b'{"tampered": true}',
        headers=forged,
        content_type="application/json",
    )
    key = get_state(app).keys[0]
    forbidden = [
        SECRET,
        SECRET.removeprefix("whsec_"),
        key.hex(),
        *signatures,
        *(s.partition(",")[2] for s in signatures),
    ]

    paths = [*PAGES, *(f"/deliveries/{w}" for w in listed(admin))]
    assert len(paths) == 6
    for path in paths:
        page = admin.get(PREFIX + path).get_data(as_text=True)
        for value in forbidden:
            assert value not in page, path
            assert html.escape(value) not in page, path


# --- refused deliveries and health ------------------------------------------------


def test_refused_deliveries_by_reason_and_most_recent(admin: FlaskClient) -> None:
    for webhook_id in ("wh_bad_1", "wh_bad_2"):
        post_event(
            admin,
            "batch.completed",
            webhook_id=webhook_id,
            headers={"webhook-signature": "v1,bad"},
        )
    post_event(admin, "batch.completed", timestamp=1_700_000_000, webhook_id="wh_old")

    text = text_of(admin.get(PREFIX + "/refused").get_data(as_text=True))

    assert "3 refused, by reason" in text
    assert "signature_mismatch 2 No signature matched the secret" in text
    assert "timestamp_too_old 1 Signed too long ago" in text
    assert text.index("wh_old") < text.index("wh_bad_2") < text.index("wh_bad_1")


def test_no_refusals_says_so(admin: FlaskClient) -> None:
    text = text_of(admin.get(PREFIX + "/refused").get_data(as_text=True))

    assert "No delivery has been refused." in text


def test_health_shows_the_doctor_checks_and_the_settings(admin: FlaskClient) -> None:
    app = admin.application

    page = admin.get(PREFIX + "/health").get_data(as_text=True)

    text = text_of(page)
    for check in run_checks(app, get_state(app)):
        # The clock line holds the time: compare up to it.
        assert f"{check.level} {check.name} {check.message[:20]}" in text
    # The memory store and no receivers are warnings, not failures.
    assert "Deliveries work, with warnings worth fixing." in text
    assert "Webhook URL /webhooks/openai" in text
    assert "Delivery store memory" in text
    assert "Secret from app.config" in text


def test_health_reports_a_failing_check() -> None:
    app = make_app()
    # A hook that answers before the webhook blueprint can.
    app.before_request_funcs.setdefault(None, []).append(
        lambda: ("maintenance", 503) if request.path == "/webhooks/openai" else None
    )
    admin = app.test_client()
    admin.get("/login")

    text = text_of(admin.get(PREFIX + "/health").get_data(as_text=True))

    assert "1 check failed" in text
    assert "FAIL route POST /webhooks/openai answered 503 SERVICE UNAVAILABLE" in text
    close_stores(app)


# --- replay -----------------------------------------------------------------------


def test_replay_needs_the_csrf_token(admin: FlaskClient, receiver: Receiver) -> None:
    receiver.broken = True
    webhook_id = post(admin, "batch.completed")
    receiver.broken = False

    for data in ({}, {"csrf_token": "forged"}, {"csrf_token": ""}):
        response = admin.post(
            PREFIX + "/replay", data={"webhook_id": webhook_id, **data}
        )
        assert response.status_code == 400
        assert "CSRF token is missing or wrong" in response.get_data(as_text=True)

    record = get_delivery(webhook_id, app=admin.application)
    assert record is not None
    assert (record.status, record.attempts, receiver.runs) == ("failed", 1, 1)


def test_the_token_is_bound_to_the_session(
    app: Flask, admin: FlaskClient, receiver: Receiver
) -> None:
    webhook_id = post(admin, "batch.completed")
    other = app.test_client()
    other.get("/login")

    response = other.post(
        PREFIX + "/replay",
        data={"webhook_id": webhook_id, "csrf_token": csrf_token(admin)},
    )

    assert response.status_code == 400


def test_replay_runs_the_failed_receiver_and_redirects_to_the_delivery(
    admin: FlaskClient, receiver: Receiver
) -> None:
    receiver.broken = True
    webhook_id = post(admin, "batch.completed")
    receiver.broken = False
    token = csrf_token(admin, f"/deliveries/{webhook_id}")

    response = admin.post(
        PREFIX + "/replay", data={"webhook_id": webhook_id, "csrf_token": token}
    )

    assert response.status_code == 303
    assert response.headers["Location"] == (
        f"{PREFIX}/deliveries/{webhook_id}?replayed=processed"
    )
    assert receiver.runs == 2
    text = text_of(admin.get(response.headers["Location"]).get_data(as_text=True))
    assert "Replayed (processed): the receivers that had not succeeded ran." in text
    assert "The delivery is now processed." in text
    assert "replay processed" in text  # the new attempt in the timeline


def test_replay_skips_succeeded_receivers_unless_forced(
    admin: FlaskClient, receiver: Receiver
) -> None:
    webhook_id = post(admin, "batch.completed")
    token = csrf_token(admin)

    admin.post(PREFIX + "/replay", data={"webhook_id": webhook_id, "csrf_token": token})
    assert receiver.runs == 1
    admin.post(
        PREFIX + "/replay",
        data={"webhook_id": webhook_id, "csrf_token": token, "force": "1"},
    )
    assert receiver.runs == 2


def test_replaying_a_missing_delivery_is_a_404(admin: FlaskClient) -> None:
    token = csrf_token(admin)

    response = admin.post(
        PREFIX + "/replay", data={"webhook_id": "wh_gone", "csrf_token": token}
    )
    assert response.status_code == 404
    response = admin.post(PREFIX + "/replay", data={"csrf_token": token})
    assert response.status_code == 400


def log_unparseable(app: Flask, webhook_id: str) -> None:
    """Log a failed delivery whose body no longer parses, as after an
    upgrade that changed an event type's shape."""
    store = get_state(app).store
    delivery = Delivery(
        webhook_id=webhook_id,
        event_type="batch.completed",
        event_id="evt_1",
        object_id=None,
        created_at=None,
        body=b"not json",
        received_at=1.0,
    )
    claim = store.claim(delivery, lease=30, retention=3600)
    store.finish(
        webhook_id,
        claim.token,
        [],
        status="failed",
        status_code=500,
        source="delivery",
        retention=3600,
    )


def test_replaying_a_body_that_no_longer_parses_says_so(admin: FlaskClient) -> None:
    log_unparseable(admin.application, "wh_old_shape")

    response = admin.post(
        PREFIX + "/replay",
        data={"webhook_id": "wh_old_shape", "csrf_token": csrf_token(admin)},
        follow_redirects=True,
    )

    assert "no longer parses as an event" in text_of(response.get_data(as_text=True))
    assert response.request.path == f"{PREFIX}/deliveries/wh_old_shape"


def test_replay_all_failed(admin: FlaskClient, receiver: Receiver) -> None:
    ok = post(admin, "batch.completed")
    receiver.broken = True
    failing = [post(admin, "batch.completed") for _ in range(2)]
    log_unparseable(admin.application, "wh_old_shape")
    receiver.broken = False
    runs = receiver.runs

    response = admin.post(
        PREFIX + "/replay-failed", data={"csrf_token": csrf_token(admin)}
    )

    assert response.status_code == 303
    assert response.headers["Location"] == (
        f"{PREFIX}/?replayed=2&succeeded=2&skipped=1"
    )
    assert receiver.runs == runs + 2
    for webhook_id in (ok, *failing):
        record = get_delivery(webhook_id, app=admin.application)
        assert record is not None and record.status == "processed"
    text = text_of(admin.get(response.headers["Location"]).get_data(as_text=True))
    assert (
        "Replayed 2 failed deliveries: 2 succeeded; 1 skipped because the stored"
        " body no longer parses." in text
    )


def test_replay_all_failed_with_nothing_failed(admin: FlaskClient) -> None:
    response = admin.post(
        PREFIX + "/replay-failed",
        data={"csrf_token": csrf_token(admin)},
        follow_redirects=True,
    )

    assert "nothing to replay" in text_of(response.get_data(as_text=True))


# --- Flask-WTF ---------------------------------------------------------------------


def test_with_flask_wtf_its_token_protects_the_buttons() -> None:
    app = make_app(csrf=True)
    receiver = Receiver()
    admin = app.test_client()
    admin.get("/login")
    with batch_completed.connected_to(receiver, app):
        receiver.broken = True
        webhook_id = post(admin, "batch.completed")  # still exempt
        receiver.broken = False
        token = csrf_token(admin)

        # Flask-WTF's own signed token, from its session key.
        with admin.session_transaction() as current:
            assert "csrf_token" in current
            assert "_openai_webhooks_inspector_csrf" not in current
        missing = admin.post(PREFIX + "/replay", data={"webhook_id": webhook_id})
        assert missing.status_code == 400
        assert "The CSRF token is missing." in missing.get_data(as_text=True)
        # Authorization first: a stranger gets 403, not Flask-WTF's 400.
        stranger = app.test_client().post(
            PREFIX + "/replay", data={"webhook_id": webhook_id}
        )
        assert stranger.status_code == 403
        done = admin.post(
            PREFIX + "/replay", data={"webhook_id": webhook_id, "csrf_token": token}
        )
        assert done.status_code == 303
        assert receiver.runs == 2
    close_stores(app)


def test_flask_wtf_disabled_by_config_is_disabled_here_too() -> None:
    app = make_app(csrf=True)
    app.config["WTF_CSRF_ENABLED"] = False
    admin = app.test_client()
    admin.get("/login")

    response = admin.post(PREFIX + "/replay-failed")

    assert response.status_code == 303
    close_stores(app)


# --- which log --------------------------------------------------------------------


def test_several_webhook_blueprints_need_a_name() -> None:
    app = make_app()
    app.register_blueprint(make_blueprint(name="second", url_prefix="/second"))
    app.register_blueprint(
        make_inspector_blueprint(
            authorize=lambda: True, blueprint="second", name="second_inspector"
        ),
        url_prefix="/admin/second",
    )
    admin = app.test_client()
    admin.get("/login")
    first = post_event(
        admin, "batch.completed", webhook_id="wh_first", blueprint="openai_webhooks"
    )
    second = post_event(
        admin, "batch.failed", webhook_id="wh_second", blueprint="second"
    )
    assert first.status_code == second.status_code == 200

    unnamed = admin.get(PREFIX + "/")
    assert unnamed.status_code == 500
    assert "make_inspector_blueprint(blueprint=NAME)" in text_of(
        unnamed.get_data(as_text=True)
    )
    page = admin.get("/admin/second/").get_data(as_text=True)
    assert 'href="/admin/second/deliveries/wh_second"' in page
    assert "wh_first" not in page
    close_stores(app)


def test_an_unreachable_store_is_a_503_that_says_so() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    app = make_app(store=f"redis://127.0.0.1:{port}/0")
    admin = app.test_client()
    admin.get("/login")

    for path in ("/", "/deliveries/wh_1", "/refused"):
        response = admin.get(PREFIX + path)
        assert response.status_code == 503, path
        assert "The delivery store is unavailable" in text_of(
            response.get_data(as_text=True)
        )
    health = text_of(admin.get(PREFIX + "/health").get_data(as_text=True))
    assert "FAIL store cannot be reached" in health
    close_stores(app)


def test_an_app_template_replaces_the_packaged_one(tmp_path: Path) -> None:
    (tmp_path / "openai_webhooks").mkdir()
    (tmp_path / "openai_webhooks" / "health.html").write_text(
        '{% extends "openai_webhooks/_layout.html" %}'
        "{% block main %}Our own health page{% endblock %}"
    )
    app = make_app()
    app.template_folder = str(tmp_path)
    admin = app.test_client()
    admin.get("/login")

    text = text_of(admin.get(PREFIX + "/health").get_data(as_text=True))

    assert "Our own health page" in text
    assert "Deliveries Refused Health" in text  # the packaged layout
    close_stores(app)
