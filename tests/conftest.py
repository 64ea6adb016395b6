from __future__ import annotations

import base64
import collections.abc as c
import secrets

import pytest
from flask import Flask

from flask_openai_webhooks.blueprint import make_blueprint

from .services import REDIS_URL as REDIS_URL
from .services import require_redis

SECRET = "whsec_" + base64.b64encode(b"flask-openai-webhooks-test-key!!").decode()


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


@pytest.fixture
def redis_url() -> str:
    return require_redis()


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
