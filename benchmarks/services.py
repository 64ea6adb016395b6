"""The servers behind the shared-store rows, and a private place on each.

Every run works in a place of its own, created here and removed at the
end, so it can never read or delete anything it did not write: a
temporary directory for SQLite, a random key prefix on Redis, and a new
database on PostgreSQL and on MariaDB (``CREATE DATABASE``, then ``DROP
DATABASE`` at the end), as ``tests/services.py`` does for the tests.

A server that cannot be reached is not an error here: its rows are
printed as not measured, with the reason, and ``--check`` fails on them.
"""

from __future__ import annotations

import collections.abc as c
import contextlib
import dataclasses
import secrets
import typing as t

#: The servers of the shared-store rows, all on loopback.
REDIS_URL = "redis://127.0.0.1:6379/0"
POSTGRES_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
MARIADB_SERVER = "mysql+pymysql://root@127.0.0.1:3306/test"

#: The shared stores, in table order, with their titles.
BACKENDS = {
    "sqlite": "SQLite",
    "redis": "Redis",
    "postgresql": "PostgreSQL",
    "mariadb": "MariaDB",
}


class Unavailable(Exception):
    """A server needed by some rows cannot be used; the message says why."""


@dataclasses.dataclass(frozen=True)
class Place:
    """Where one backend's store and its floor keep their data in this run.

    :param backend: A key of :data:`BACKENDS`.
    :param target: A directory (SQLite), a key prefix (Redis) or a
        SQLAlchemy URL of the private database (PostgreSQL, MariaDB). The
        gunicorn workers get it through the environment.
    """

    backend: str
    target: str

    @property
    def title(self) -> str:
        return BACKENDS[self.backend]


def redis_reachable() -> str | None:
    """``None`` if Redis answers a ``PING``, else the reason it does not."""
    try:
        import redis
    except ImportError as exc:
        return f"redis-py not installed: {exc}"
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
    try:
        client.ping()
    except (redis.RedisError, OSError) as exc:
        return f"Redis not reachable at {REDIS_URL}: {exc}"
    finally:
        client.close()
    return None


def delete_redis_keys(prefix: str) -> int:
    """Delete every key under ``prefix``; return how many there were."""
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_timeout=5.0)
    try:
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        for start in range(0, len(keys), 1000):
            client.delete(*keys[start : start + 1000])
        return len(keys)
    finally:
        client.close()


def count_redis_keys(pattern: str) -> int:
    """How many keys match ``pattern``."""
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_timeout=5.0)
    try:
        return sum(1 for _ in client.scan_iter(match=pattern, count=1000))
    finally:
        client.close()


@contextlib.contextmanager
def private_database(kind: str) -> c.Iterator[str]:
    """Create an empty database on the PostgreSQL or MariaDB server, yield
    its SQLAlchemy URL, and drop it afterwards, even if connections are
    still open (PostgreSQL's ``WITH (FORCE)``).

    :param kind: ``"postgresql"`` or ``"mariadb"``.
    :raises Unavailable: The server cannot be reached, or refused.
    """
    try:
        import sqlalchemy as sa
    except ImportError as exc:
        raise Unavailable(f"SQLAlchemy not installed: {exc}") from None
    server = {"postgresql": POSTGRES_SERVER, "mariadb": MARIADB_SERVER}[kind]
    name = f"owh_bench_{secrets.token_hex(6)}"
    admin = sa.create_engine(
        server, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 2}
    )
    try:
        try:
            with admin.connect() as conn:
                conn.execute(sa.text(f"CREATE DATABASE {name}"))
        except (sa.exc.SQLAlchemyError, ImportError, OSError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise Unavailable(
                f"{BACKENDS[kind]} at {sa.make_url(server).host}: {first[:200]}"
            ) from None
        try:
            yield server.rsplit("/", 1)[0] + "/" + name
        finally:
            drop = f"DROP DATABASE IF EXISTS {name}"
            if kind == "postgresql":
                drop += " WITH (FORCE)"
            with admin.connect() as conn:
                conn.execute(sa.text(drop))
    finally:
        admin.dispose()


@contextlib.contextmanager
def places(
    wanted: c.Iterable[str], tmp: str
) -> c.Iterator[tuple[dict[str, Place], dict[str, str]]]:
    """A :class:`Place` for each wanted backend that can be used, and the
    reason for each that cannot; everything made is removed on exit.

    :param wanted: Keys of :data:`BACKENDS`.
    :param tmp: A directory for the SQLite files, removed by the caller.
    """
    found: dict[str, Place] = {}
    skipped: dict[str, str] = {}
    with contextlib.ExitStack() as stack:
        for backend in wanted:
            if backend == "sqlite":
                found[backend] = Place(backend, tmp)
            elif backend == "redis":
                reason = redis_reachable()
                if reason is not None:
                    skipped[backend] = reason
                    continue
                prefix = f"bench-openai-webhooks:{secrets.token_hex(8)}:"
                stack.callback(delete_redis_keys, prefix)
                found[backend] = Place(backend, prefix)
            else:
                try:
                    url = stack.enter_context(private_database(backend))
                except Unavailable as exc:
                    skipped[backend] = str(exc)
                    continue
                found[backend] = Place(backend, url)
        yield found, skipped


def sql_count(url: str, query: str) -> int:
    """The single integer ``query`` returns in the database at ``url``."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text(query)).scalar_one())
    finally:
        engine.dispose()


def sql_connect_args(url: str) -> dict[str, t.Any]:
    """Host, port, user and database of a SQLAlchemy URL, for the raw
    drivers the store floors use."""
    import sqlalchemy as sa

    parsed = sa.make_url(url)
    return {
        "host": parsed.host or "127.0.0.1",
        "port": parsed.port,
        "user": parsed.username,
        "database": parsed.database,
    }
