from __future__ import annotations

import base64
import collections.abc as c
import os
import secrets
import typing as t

import pytest
from flask import Flask

from flask_openai_webhooks.blueprint import make_blueprint

SECRET = "whsec_" + base64.b64encode(b"flask-openai-webhooks-test-key!!").decode()
REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
def secret() -> str:
    return SECRET


@pytest.fixture
def app() -> Flask:
    """An app with the blueprint at its default URL and the memory store.

    pytest-flask builds ``client`` from this fixture.
    """
    app = Flask(__name__)
    app.config.update(TESTING=True, OPENAI_WEBHOOK_SECRET=SECRET)
    app.register_blueprint(make_blueprint())
    return app


def _unavailable(reason: str) -> t.NoReturn:
    """Skip locally, but fail in CI, where a missing service is a broken
    setup rather than a reason to silently test less.
    """
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: the service is required)", pytrace=False)
    pytest.skip(reason)


def _redis_url_or_skip() -> str:
    try:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry
    except ImportError as exc:
        _unavailable(f"Redis not reachable at 127.0.0.1:6379: {exc}")
    client = redis.Redis(
        host="127.0.0.1",
        port=6379,
        socket_connect_timeout=1,
        socket_timeout=1,
        retry=Retry(NoBackoff(), 0),
    )
    try:
        client.ping()
    except (redis.RedisError, OSError) as exc:
        _unavailable(f"Redis not reachable at 127.0.0.1:6379: {exc}")
    finally:
        client.close()
    return REDIS_URL


@pytest.fixture
def redis_url() -> str:
    return _redis_url_or_skip()


@pytest.fixture
def redis_prefix(redis_url: str) -> c.Iterator[str]:
    """A key prefix unique to the test; its keys are deleted afterwards."""
    import redis

    prefix = f"test-openai-webhooks:{secrets.token_hex(8)}:"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()
