"""The real services the tests talk to, and what to do when one is missing.

On a developer's machine a missing service skips the tests that need it,
with the reason; under ``CI=true`` it fails them: a missing service there is
a broken setup, not a reason to test less quietly.
"""

from __future__ import annotations

import collections.abc as c
import contextlib
import os
import secrets
import socket
import typing as t

import pytest

REDIS_URL = "redis://127.0.0.1:6379/0"
POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
MARIADB_URL = "mysql+pymysql://root@127.0.0.1:3306/test"
RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672//"


def unavailable(reason: str) -> t.NoReturn:
    """Skip locally, fail under ``CI=true``."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: the service is required)", pytrace=False)
    pytest.skip(reason)


def require_port(name: str, port: int, host: str = "127.0.0.1") -> None:
    try:
        with socket.create_connection((host, port), timeout=1):
            pass
    except OSError as exc:
        unavailable(f"{name} not reachable at {host}:{port}: {exc}")


def require_redis() -> str:
    try:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry
    except ImportError as exc:
        unavailable(f"Redis not usable: {exc}")
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
        unavailable(f"Redis not reachable at 127.0.0.1:6379: {exc}")
    finally:
        client.close()
    return REDIS_URL


def require_rabbitmq() -> str:
    require_port("RabbitMQ", 5672)
    return RABBITMQ_URL


def _admin_engine(url: str) -> t.Any:
    try:
        import sqlalchemy as sa
    except ImportError as exc:
        unavailable(f"SQLAlchemy not installed: {exc}")
    return sa.create_engine(url, isolation_level="AUTOCOMMIT", pool_pre_ping=True)


@contextlib.contextmanager
def fresh_database(kind: str) -> c.Iterator[str]:
    """Create an empty database on the real PostgreSQL or MariaDB server,
    yield its URL, and drop it afterwards, so tests (and helpers running
    side by side) never see each other's tables.

    :param kind: ``"postgresql"`` or ``"mariadb"``.
    """
    import sqlalchemy as sa

    if kind == "postgresql":
        base, port = POSTGRES_URL, 5432
    elif kind == "mariadb":
        base, port = MARIADB_URL, 3306
    else:
        raise ValueError(kind)
    require_port(kind, port)
    name = f"owh_{secrets.token_hex(6)}"
    admin = _admin_engine(base)
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f"CREATE DATABASE {name}"))
    except sa.exc.SQLAlchemyError as exc:
        admin.dispose()
        unavailable(f"{kind} at 127.0.0.1:{port} refused CREATE DATABASE: {exc}")
    url = base.rsplit("/", 1)[0] + "/" + name
    try:
        yield url
    finally:
        with admin.connect() as conn:
            if kind == "postgresql":
                conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            else:
                conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name}"))
        admin.dispose()
