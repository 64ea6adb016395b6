"""Settings: read once at registration, and every mistake is an error
that names it, never a silent misconfiguration."""

from __future__ import annotations

import base64
import inspect
import logging
import pathlib
import typing as t

import pytest
from flask import Flask

from flask_openai_webhooks import signals
from flask_openai_webhooks.blueprint import make_blueprint
from flask_openai_webhooks.state import CONFIG_KEYS
from flask_openai_webhooks.state import DEFAULT_LEASE
from flask_openai_webhooks.state import DEFAULT_MAX_BODY
from flask_openai_webhooks.state import DEFAULT_RETENTION
from flask_openai_webhooks.state import DEFAULT_URL
from flask_openai_webhooks.state import EXTENSION_KEY
from flask_openai_webhooks.state import get_state
from flask_openai_webhooks.state import states
from flask_openai_webhooks.state import webhook_url
from flask_openai_webhooks.stores.memory import MemoryStore
from flask_openai_webhooks.stores.sqlite import SQLiteStore
from flask_openai_webhooks.testing import post_event

from .conftest import SECRET

OTHER = "whsec_" + base64.b64encode(b"argument-secret-thirty-two-byte!").decode()
KEY_B64 = SECRET[len("whsec_") :]


@pytest.fixture(autouse=True)
def _no_secret_in_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The environment fallback must not hide a missing setting."""
    monkeypatch.delenv("OPENAI_WEBHOOK_SECRET", raising=False)


def make_app(
    tmp_path: pathlib.Path | None = None, *, testing: bool = True, **config: t.Any
) -> Flask:
    instance = None if tmp_path is None else str(tmp_path / "inst")
    app = Flask(__name__, instance_path=instance)
    app.config.update(TESTING=testing, **config)
    return app


# --------------------------------------------------------------------------
# The secret
# --------------------------------------------------------------------------


def test_argument_overrides_config() -> None:
    app = make_app(OPENAI_WEBHOOK_SECRET=SECRET)
    app.register_blueprint(make_blueprint(secret=OTHER))
    client = app.test_client()
    assert get_state(app).secret_source == "make_blueprint(secret=...)"
    assert post_event(client, "batch.completed", secret=OTHER).status_code == 200
    assert post_event(client, "batch.completed", secret=SECRET).status_code == 400


def test_secret_from_config() -> None:
    app = make_app(OPENAI_WEBHOOK_SECRET=SECRET)
    app.register_blueprint(make_blueprint())
    assert get_state(app).secret_source == "app.config"
    assert get_state(app).keys == (base64.b64decode(KEY_B64),)


def test_secret_falls_back_to_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_WEBHOOK_SECRET", SECRET)
    app = make_app()
    app.register_blueprint(make_blueprint())
    assert get_state(app).secret_source == (
        "the OPENAI_WEBHOOK_SECRET environment variable"
    )
    assert post_event(app.test_client(), "batch.completed").status_code == 200


def test_a_broken_secret_in_the_environment_says_where_it_came_from(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPENAI_WEBHOOK_SECRET", f"'{SECRET}'")
    app = make_app()
    with pytest.raises(RuntimeError) as info:
        app.register_blueprint(make_blueprint())
    message = str(info.value)
    assert "environment variable" in message
    assert "quotes" in message
    assert KEY_B64 not in message


@pytest.mark.parametrize(
    "secret",
    [None, "", "whsec_", "whsec_!!!!", "whsec_abc", []],
    ids=[
        "missing",
        "empty",
        "whsec-empty",
        "whsec-junk",
        "whsec-padding",
        "empty-list",
    ],
)
def test_missing_or_broken_secret_fails_at_registration(secret: object) -> None:
    app = make_app()
    if secret is not None:
        app.config["OPENAI_WEBHOOK_SECRET"] = secret
    with pytest.raises(RuntimeError, match="OPENAI_WEBHOOK_SECRET") as info:
        app.register_blueprint(make_blueprint())
    if isinstance(secret, str) and len(secret) > 6:
        assert secret[6:] not in str(info.value)
    assert states(app) == {}


@pytest.mark.parametrize(
    ("secret", "mistake"),
    [
        (KEY_B64, "does not start with 'whsec_'"),
        (f'"{SECRET}"', "wrapped in quotes"),
        (f"'{SECRET}'", "wrapped in quotes"),
        (SECRET + "\n", "whitespace"),
        (" " + SECRET, "whitespace"),
        ("sk-proj-" + KEY_B64, "API key"),
        (f'["{SECRET}", "{OTHER}"]', "list of secrets in one string"),
        (f"{SECRET},{OTHER}", "list of secrets in one string"),
        (123456789, "not int"),
        ([SECRET, KEY_B64], "secret #2"),
        ({SECRET}, "or a list of them, not set"),
    ],
    ids=[
        "no-whsec",
        "double-quotes",
        "single-quotes",
        "newline",
        "leading-space",
        "api-key",
        "json-list-string",
        "comma-list-string",
        "int",
        "list-with-a-bad-entry",
        "set",
    ],
)
def test_secret_mistakes_fail_at_registration_naming_the_mistake(
    secret: object, mistake: str
) -> None:
    app = make_app(OPENAI_WEBHOOK_SECRET=secret)
    with pytest.raises(RuntimeError) as info:
        app.register_blueprint(make_blueprint())
    message = str(info.value)
    assert "OPENAI_WEBHOOK_SECRET" in message
    assert "'openai_webhooks'" in message
    assert "app.config" in message
    assert mistake in message
    # Never the secret, nor any recognisable part of it.
    assert KEY_B64 not in message
    assert KEY_B64[:12] not in message
    assert "123456789" not in message


def test_weak_secret_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    app = make_app()
    with caplog.at_level(logging.WARNING, "flask_openai_webhooks"):
        app.register_blueprint(
            make_blueprint(secret="whsec_" + base64.b64encode(b"short").decode())
        )
    assert "only 5 bytes" in caplog.text
    assert "c2hvcnQ" not in caplog.text


def test_state_repr_never_shows_the_key() -> None:
    """Error reporters capture locals; the view holds the state."""
    app = make_app(OPENAI_WEBHOOK_SECRET=SECRET)
    app.register_blueprint(make_blueprint())
    state = get_state(app)
    key = state.keys[0]
    for text in (repr(state), repr(app.extensions)):
        assert repr(key) not in text
        assert key.decode("latin-1") not in text
        assert KEY_B64 not in text


# --------------------------------------------------------------------------
# Numbers and choices
# --------------------------------------------------------------------------


def test_defaults() -> None:
    app = make_app(OPENAI_WEBHOOK_SECRET=SECRET)
    app.register_blueprint(make_blueprint())
    state = get_state(app)
    assert state.tolerance == 300
    assert state.max_body == DEFAULT_MAX_BODY
    assert state.lease == DEFAULT_LEASE
    assert state.retention == DEFAULT_RETENTION
    assert state.on_error == "retry"
    assert isinstance(state.store, MemoryStore)
    assert webhook_url(app) == DEFAULT_URL


def test_every_setting_is_a_make_blueprint_argument() -> None:
    parameters = inspect.signature(make_blueprint).parameters
    for key, argument in CONFIG_KEYS.items():
        assert argument in parameters, key
        assert parameters[argument].default is None, key


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("OPENAI_WEBHOOK_TOLERANCE", -1),
        ("OPENAI_WEBHOOK_TOLERANCE", "five minutes"),
        ("OPENAI_WEBHOOK_TOLERANCE", True),
        ("OPENAI_WEBHOOK_TOLERANCE", float("inf")),
        ("OPENAI_WEBHOOK_MAX_BODY", 0),
        ("OPENAI_WEBHOOK_MAX_BODY", "64k"),
        ("OPENAI_WEBHOOK_LEASE", 0),
        ("OPENAI_WEBHOOK_LEASE", float("nan")),
        ("OPENAI_WEBHOOK_RETENTION", 0),
        ("OPENAI_WEBHOOK_RETENTION", -5),
        ("OPENAI_WEBHOOK_RETENTION", "1 day"),
        ("OPENAI_WEBHOOK_RETENTION", float("nan")),
        ("OPENAI_WEBHOOK_ON_ERROR", "ignore"),
        ("OPENAI_WEBHOOK_STORE", "mongodb://nope"),
        ("OPENAI_WEBHOOK_STORE", "sqlite:///:memory:"),
        ("OPENAI_WEBHOOK_STORE", MemoryStore),
    ],
)
def test_bad_settings_fail_at_registration(key: str, value: object) -> None:
    app = make_app(OPENAI_WEBHOOK_SECRET=SECRET)
    app.config[key] = value
    with pytest.raises(RuntimeError, match=key):
        app.register_blueprint(make_blueprint())
    assert states(app) == {}


def test_a_store_url_with_a_password_is_never_echoed() -> None:
    app = make_app(
        OPENAI_WEBHOOK_SECRET=SECRET, OPENAI_WEBHOOK_STORE="mongodb://u:hunter2@db/x"
    )
    with pytest.raises(RuntimeError, match="OPENAI_WEBHOOK_STORE") as info:
        app.register_blueprint(make_blueprint())
    assert "hunter2" not in str(info.value)


def test_numbers_from_the_environment_are_accepted() -> None:
    """``os.environ`` holds text: ``"300"`` means 300."""
    app = make_app(
        OPENAI_WEBHOOK_SECRET=SECRET,
        OPENAI_WEBHOOK_TOLERANCE="300",
        OPENAI_WEBHOOK_MAX_BODY="4096",
        OPENAI_WEBHOOK_LEASE="2.5",
        OPENAI_WEBHOOK_RETENTION="1e4",
    )
    app.register_blueprint(make_blueprint())
    state = get_state(app)
    assert (state.tolerance, state.max_body) == (300, 4096)
    assert (state.lease, state.retention) == (2.5, 10_000.0)
    assert post_event(app.test_client(), "batch.completed").status_code == 200


def test_from_prefixed_env_works(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLASK_OPENAI_WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("FLASK_OPENAI_WEBHOOK_TOLERANCE", "600")
    monkeypatch.setenv("FLASK_OPENAI_WEBHOOK_ON_ERROR", "ack")
    app = make_app()
    app.config.from_prefixed_env()
    app.register_blueprint(make_blueprint())
    state = get_state(app)
    assert (state.tolerance, state.on_error) == (600, "ack")


@pytest.mark.parametrize(
    ("tolerance", "lease", "retention"),
    [(300, 30, 330), (300, 30, 100), (300, 30, 329.9), (0, 1, 1), (3600, 30, 3600)],
)
def test_retention_must_outlast_tolerance_plus_lease(
    tolerance: int, lease: float, retention: float
) -> None:
    """A delivery forgotten while its signature is still valid could be
    replayed by whoever captured it, and run every receiver again."""
    app = make_app(
        OPENAI_WEBHOOK_SECRET=SECRET,
        OPENAI_WEBHOOK_TOLERANCE=tolerance,
        OPENAI_WEBHOOK_LEASE=lease,
        OPENAI_WEBHOOK_RETENTION=retention,
    )
    with pytest.raises(RuntimeError) as info:
        app.register_blueprint(make_blueprint())
    message = str(info.value)
    assert "OPENAI_WEBHOOK_RETENTION" in message
    assert "OPENAI_WEBHOOK_TOLERANCE" in message
    assert "OPENAI_WEBHOOK_LEASE" in message
    assert "replayed" in message


def test_retention_just_over_tolerance_plus_lease_is_accepted() -> None:
    app = make_app(OPENAI_WEBHOOK_SECRET=SECRET)
    app.register_blueprint(make_blueprint(tolerance=300, lease=30, retention=331))
    assert get_state(app).retention == 331


# --------------------------------------------------------------------------
# The store
# --------------------------------------------------------------------------


def test_relative_sqlite_path_lands_in_the_instance_folder(
    tmp_path: pathlib.Path,
) -> None:
    app = make_app(
        tmp_path,
        OPENAI_WEBHOOK_SECRET=SECRET,
        OPENAI_WEBHOOK_STORE="sqlite:///webhooks.db",
    )
    instance = tmp_path / "inst"
    assert not instance.exists()
    app.register_blueprint(make_blueprint())
    store = get_state(app).store
    assert isinstance(store, SQLiteStore)
    try:
        assert instance.is_dir()
        assert pathlib.Path(store.path) == instance / "webhooks.db"
        response = post_event(app.test_client(), "batch.completed", webhook_id="wh_1")
        assert response.status_code == 200
        assert (instance / "webhooks.db").is_file()
        assert store.get("wh_1") is not None
    finally:
        store.close()


def test_absolute_sqlite_path_is_used_as_is(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "elsewhere" / "log.db"
    path.parent.mkdir()
    app = make_app(
        tmp_path, OPENAI_WEBHOOK_SECRET=SECRET, OPENAI_WEBHOOK_STORE=f"sqlite:///{path}"
    )
    app.register_blueprint(make_blueprint())
    store = get_state(app).store
    assert isinstance(store, SQLiteStore)
    try:
        assert pathlib.Path(store.path) == path
        # The instance folder is only made for a relative path.
        assert not (tmp_path / "inst").exists()
    finally:
        store.close()


def test_a_store_object_is_used_as_is() -> None:
    store = MemoryStore()
    app = make_app(OPENAI_WEBHOOK_SECRET=SECRET)
    app.register_blueprint(make_blueprint(store=store))
    assert get_state(app).store is store


def test_memory_store_outside_debug_or_testing_warns_naming_the_fix(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = make_app(testing=False, OPENAI_WEBHOOK_SECRET=SECRET)
    with caplog.at_level(logging.WARNING, "flask_openai_webhooks"):
        app.register_blueprint(make_blueprint())
    [warning] = caplog.records
    assert warning.levelno == logging.WARNING
    message = warning.getMessage()
    assert "'openai_webhooks'" in message
    assert "memory store" in message
    assert "worker" in message
    assert "OPENAI_WEBHOOK_STORE" in message
    assert "sqlite:///webhooks.db" in message
    assert "redis://" in message


@pytest.mark.parametrize("mode", ["testing", "debug"])
def test_memory_store_in_tests_or_debug_does_not_warn(
    caplog: pytest.LogCaptureFixture, mode: str
) -> None:
    app = make_app(testing=mode == "testing", OPENAI_WEBHOOK_SECRET=SECRET)
    app.debug = mode == "debug"
    with caplog.at_level(logging.DEBUG, "flask_openai_webhooks"):
        app.register_blueprint(make_blueprint())
    assert caplog.records == []


def test_a_shared_store_does_not_warn(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app(
        tmp_path,
        testing=False,
        OPENAI_WEBHOOK_SECRET=SECRET,
        OPENAI_WEBHOOK_STORE="sqlite:///webhooks.db",
    )
    with caplog.at_level(logging.WARNING, "flask_openai_webhooks"):
        app.register_blueprint(make_blueprint())
    store = get_state(app).store
    assert isinstance(store, SQLiteStore)
    store.close()
    assert caplog.records == []


# --------------------------------------------------------------------------
# Looking states up
# --------------------------------------------------------------------------


def test_get_state_without_a_blueprint() -> None:
    app = make_app()
    assert states(app) == {}
    with pytest.raises(LookupError, match="no OpenAI webhook blueprint is registered"):
        get_state(app)
    with pytest.raises(LookupError, match="no OpenAI webhook blueprint is registered"):
        webhook_url(app)
    with pytest.raises(LookupError, match=r"named 'x' \(registered: none\)"):
        get_state(app, "x")


def test_get_state_with_several_blueprints() -> None:
    app = make_app()
    app.register_blueprint(make_blueprint(name="a", secret=SECRET), url_prefix="/a")
    app.register_blueprint(make_blueprint(name="b", secret=OTHER), url_prefix="/b")
    assert list(states(app)) == ["a", "b"]
    assert app.extensions[EXTENSION_KEY] is states(app)
    with pytest.raises(LookupError, match=r"several .*\(a, b\); say which"):
        get_state(app)
    with pytest.raises(LookupError, match=r"named 'c' \(registered: a, b\)"):
        get_state(app, "c")
    a, b = get_state(app, "a"), get_state(app, "b")
    assert (a.name, b.name) == ("a", "b")
    assert a.keys != b.keys
    assert (webhook_url(app, "a"), webhook_url(app, "b")) == ("/a", "/b")
    with pytest.raises(LookupError, match="several"):
        webhook_url(app)


def test_webhook_url_follows_the_prefix_and_the_script_root() -> None:
    app = make_app(OPENAI_WEBHOOK_SECRET=SECRET, APPLICATION_ROOT="/shop")
    app.register_blueprint(make_blueprint(url_prefix="/hooks/openai"))
    assert webhook_url(app) == "/shop/hooks/openai"


def test_each_app_has_its_own_state() -> None:
    bp = make_blueprint(secret=SECRET)
    first, second = make_app(), make_app()
    first.register_blueprint(bp)
    second.register_blueprint(bp, url_prefix="/other")
    assert get_state(first) is not get_state(second)
    assert get_state(first).store is not get_state(second).store
    assert (webhook_url(first), webhook_url(second)) == (DEFAULT_URL, "/other")


def test_settings_are_read_once_at_registration() -> None:
    app = make_app(OPENAI_WEBHOOK_SECRET=SECRET)
    app.register_blueprint(make_blueprint())
    app.config["OPENAI_WEBHOOK_SECRET"] = OTHER
    heard: list[str] = []

    def on_any(sender: Flask, *, webhook_id: str, **extra: object) -> None:
        heard.append(webhook_id)

    with signals.webhook_received.connected_to(on_any, app):
        client = app.test_client()
        assert post_event(client, "batch.completed", secret=SECRET).status_code == 200
        assert post_event(client, "batch.completed", secret=OTHER).status_code == 400
    assert len(heard) == 1
