"""Signals: the per-type set, the private namespace and pattern receivers."""

from __future__ import annotations

import collections.abc as c
import gc
import random
import typing as t
import weakref

import blinker
import pytest
from blinker import NamedSignal
from flask import Flask

from flask_openai_webhooks import signals
from flask_openai_webhooks.blueprint import make_blueprint
from flask_openai_webhooks.dispatch import receiver_key
from flask_openai_webhooks.models import EVENT_TYPES
from flask_openai_webhooks.samples import KNOWN_EVENT_TYPES
from flask_openai_webhooks.signals import batch_completed
from flask_openai_webhooks.signals import event_signal
from flask_openai_webhooks.signals import EVENT_SIGNALS
from flask_openai_webhooks.signals import match_event_types
from flask_openai_webhooks.signals import receiver
from flask_openai_webhooks.signals import signal_name
from flask_openai_webhooks.signals import webhook_failed
from flask_openai_webhooks.signals import webhook_received
from flask_openai_webhooks.signals import webhook_rejected
from flask_openai_webhooks.state import get_state
from flask_openai_webhooks.testing import capture_signals
from flask_openai_webhooks.testing import post_event

from .conftest import SECRET

ALL_SIGNALS = [*EVENT_SIGNALS.values(), webhook_received, webhook_rejected]
ALL_SIGNALS.append(webhook_failed)
FAILED_TYPES = [
    "agent.environment.failed",
    "agent.session.failed",
    "batch.failed",
    "eval.run.failed",
    "fine_tuning.job.failed",
    "response.failed",
]


@pytest.fixture(autouse=True)
def _disconnect_new_receivers() -> c.Iterator[None]:
    """:func:`receiver` connects for good; undo what each test connected so
    no receiver leaks into the next test. Works from receiver ids, so the
    fixture holds no reference that would keep a receiver alive."""
    before = {signal: set(signal.receivers) for signal in ALL_SIGNALS}
    yield
    for signal in ALL_SIGNALS:
        for receiver_id in set(signal.receivers) - before[signal]:
            ref = signal.receivers[receiver_id]
            fn = ref() if isinstance(ref, weakref.ref) else ref
            if fn is not None:
                signal.disconnect(fn)


def make_app() -> Flask:
    app = Flask(__name__)
    app.config.update(TESTING=True, OPENAI_WEBHOOK_SECRET=SECRET)
    app.register_blueprint(make_blueprint())
    return app


def connected_types(fn: t.Callable[..., t.Any]) -> list[str]:
    """The event types whose signal holds ``fn`` (strongly)."""
    return sorted(
        event_type
        for event_type, signal in EVENT_SIGNALS.items()
        if any(ref is fn for ref in signal.receivers.values())
    )


def test_there_is_one_signal_per_known_event_type() -> None:
    assert len(EVENT_SIGNALS) == 32
    assert set(EVENT_SIGNALS) == set(EVENT_TYPES)
    assert sorted(EVENT_SIGNALS) == list(KNOWN_EVENT_TYPES)


@pytest.mark.parametrize("event_type", sorted(EVENT_TYPES))
def test_each_signal_is_a_module_attribute_named_after_its_type(
    event_type: str,
) -> None:
    signal = EVENT_SIGNALS[event_type]

    assert signal.name == event_type
    assert signal_name(event_type) == event_type.replace(".", "_")
    assert getattr(signals, signal_name(event_type)) is signal
    assert event_signal(event_type) is signal


def test_unknown_types_have_no_signal() -> None:
    assert event_signal("video.completed") is None
    assert "webhook-received" not in EVENT_SIGNALS


def test_signals_live_in_a_private_namespace() -> None:
    for signal in ALL_SIGNALS:
        assert isinstance(signal, NamedSignal)
        assert signals._signals[signal.name] is signal
        assert blinker.default_namespace.get(signal.name) is not signal
    assert [webhook_received.name, webhook_rejected.name, webhook_failed.name] == [
        "webhook-received",
        "webhook-rejected",
        "webhook-failed",
    ]


def test_plain_connect_of_a_nested_function_is_lost_to_gc() -> None:
    """Why :func:`receiver` exists: blinker's default is a weak reference."""
    calls: list[object] = []

    def connect() -> None:
        def on_completed(sender: object, **kwargs: t.Any) -> None:
            calls.append(sender)

        batch_completed.connect(on_completed)

    connect()
    gc.collect()
    batch_completed.send("sender", event=None)

    assert calls == []


def test_receiver_keeps_a_strong_reference() -> None:
    calls: list[object] = []

    def connect() -> None:
        @receiver("batch.completed")
        def on_completed(sender: object, **kwargs: t.Any) -> None:
            calls.append(sender)

    connect()
    gc.collect()
    batch_completed.send("sender", event=None)

    assert calls == ["sender"]


def test_receiver_defined_in_a_factory_hears_deliveries() -> None:
    def create_app() -> tuple[Flask, list[str]]:
        app = make_app()
        seen: list[str] = []

        @receiver("batch.*", sender=app)
        def on_batch(sender: Flask, event: t.Any, **extra: t.Any) -> None:
            seen.append(event.type)

        return app, seen

    app, seen = create_app()
    gc.collect()
    response = post_event(app.test_client(), "batch.expired")

    assert response.status_code == 200
    assert seen == ["batch.expired"]


def test_receiver_returns_the_function_unchanged() -> None:
    def on_completed(sender: object, **kwargs: t.Any) -> None:
        pass

    assert receiver("batch.completed")(on_completed) is on_completed


def test_glob_pattern_for_a_family() -> None:
    @receiver("batch.*")
    def on_batch(sender: object, **kwargs: t.Any) -> None:
        pass

    assert connected_types(on_batch) == [
        "batch.cancelled",
        "batch.completed",
        "batch.expired",
        "batch.failed",
    ]


def test_glob_pattern_for_a_suffix() -> None:
    @receiver("*.failed")
    def on_failed(sender: object, **kwargs: t.Any) -> None:
        pass

    assert connected_types(on_failed) == FAILED_TYPES


def test_exact_name_connects_one_signal() -> None:
    @receiver("eval.run.canceled")
    def on_canceled(sender: object, **kwargs: t.Any) -> None:
        pass

    assert connected_types(on_canceled) == ["eval.run.canceled"]


def test_several_patterns_connect_their_union_once() -> None:
    calls: list[str] = []

    @receiver("batch.completed", "response.*", "batch.*")
    def on_event(sender: object, event: str, **kwargs: t.Any) -> None:
        calls.append(event)

    batch_completed.send("app", event="batch.completed")

    assert connected_types(on_event) == [
        "batch.cancelled",
        "batch.completed",
        "batch.expired",
        "batch.failed",
        "response.cancelled",
        "response.completed",
        "response.failed",
        "response.incomplete",
    ]
    assert calls == ["batch.completed"]
    assert match_event_types("batch.completed", "batch.*")[0] == "batch.completed"
    assert len(match_event_types("batch.completed", "batch.*")) == 4


def test_misspelled_type_suggests_the_right_spelling() -> None:
    with pytest.raises(ValueError, match="did you mean 'batch.cancelled'"):

        @receiver("batch.canceled")
        def on_cancelled(sender: object, **kwargs: t.Any) -> None:
            pass

    # OpenAI spells it the other way for eval runs.
    with pytest.raises(ValueError, match="'eval.run.canceled'"):
        receiver("eval.run.cancelled")


def test_patterns_that_match_nothing_connect_nothing() -> None:
    before = {signal: len(signal.receivers) for signal in ALL_SIGNALS}

    with pytest.raises(ValueError, match="matches no known event type$"):
        receiver("batch.*", "nothing.like.this.*")
    with pytest.raises(ValueError, match="at least one"):
        receiver()

    assert {signal: len(signal.receivers) for signal in ALL_SIGNALS} == before


def test_sender_limits_a_receiver_to_one_app() -> None:
    first, second = make_app(), make_app()
    heard: list[tuple[Flask, str]] = []

    @receiver("*.failed", sender=first)
    def on_failed(sender: Flask, event: t.Any, **extra: t.Any) -> None:
        heard.append((sender, event.type))

    post_event(second.test_client(), "batch.failed")
    post_event(first.test_client(), "response.failed")

    assert heard == [(first, "response.failed")]


def test_receiver_for_any_sender_hears_every_app() -> None:
    first, second = make_app(), make_app()
    heard: list[Flask] = []

    @receiver("batch.completed")
    def on_completed(sender: Flask, **extra: t.Any) -> None:
        heard.append(sender)

    with capture_signals() as sent:
        post_event(first.test_client(), "batch.completed")
        post_event(second.test_client(), "batch.completed")

    assert heard == [first, second]
    assert sent.types == ["batch.completed", "batch.completed"]


def test_receiver_without_parentheses_shows_the_right_spelling() -> None:
    before = {signal: len(signal.receivers) for signal in ALL_SIGNALS}

    with pytest.raises(TypeError, match=r"write @receiver\('batch\.\*'\)"):

        @receiver  # type: ignore[arg-type]
        def on_batch(sender: object, **kwargs: t.Any) -> None:
            pass

    with pytest.raises(TypeError, match="not a bare @receiver"):
        receiver(print)  # type: ignore[arg-type]

    assert {signal: len(signal.receivers) for signal in ALL_SIGNALS} == before


def _named(name: str, ran: list[str]) -> t.Callable[..., None]:
    def fn(sender: Flask, **extra: t.Any) -> None:
        ran.append(name)

    fn.__name__ = fn.__qualname__ = name
    return fn


def test_receivers_run_in_connection_order() -> None:
    """Not in the order of their names or memory addresses: the order they
    were connected in, in every worker, so the log's keys and the side
    effects come in an order the app chose."""
    app = make_app()
    ran: list[str] = []
    # Made in name order (so their addresses likely ascend with the
    # names), connected in another.
    made = {name: _named(name, ran) for name in (f"r{n:02d}" for n in range(20))}
    names = list(made)
    random.Random(20).shuffle(names)
    assert names != sorted(names)
    receivers = [made[name] for name in names]
    for fn in receivers:
        batch_completed.connect(fn, sender=app)
    try:
        response = post_event(app.test_client(), "batch.completed", webhook_id="wh_o")
    finally:
        for fn in receivers:
            batch_completed.disconnect(fn)
    assert response.status_code == 200
    assert ran == names
    record = get_state(app).store.get("wh_o")
    assert record is not None
    assert [r.key for r in record.receivers] == [
        receiver_key(batch_completed, fn) for fn in receivers
    ]


def test_receivers_for_any_app_run_before_those_for_this_app() -> None:
    app = make_app()
    ran: list[str] = []
    for_app = _named("for_app", ran)
    for_any = _named("for_any", ran)
    batch_completed.connect(for_app, sender=app)
    batch_completed.connect(for_any)
    try:
        post_event(app.test_client(), "batch.completed")
    finally:
        batch_completed.disconnect(for_app)
        batch_completed.disconnect(for_any)
    assert ran == ["for_any", "for_app"]


def test_a_reconnected_receiver_moves_to_the_end() -> None:
    app = make_app()
    ran: list[str] = []
    first, second = _named("first", ran), _named("second", ran)
    batch_completed.connect(first, sender=app)
    batch_completed.connect(second, sender=app)
    batch_completed.disconnect(first)
    batch_completed.connect(first, sender=app)
    try:
        post_event(app.test_client(), "batch.completed")
    finally:
        batch_completed.disconnect(first)
        batch_completed.disconnect(second)
    assert ran == ["second", "first"]
