"""The delivery log in Redis, shared by every machine that uses the same
server and key prefix.

Each delivery is one hash, and every write to it is one Lua script: Redis
runs a script atomically, so no other client ever sees half an update and
two workers can never both take a lease, and each call is one round trip.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
import typing as t
from collections.abc import Callable
from collections.abc import Collection
from collections.abc import Iterable
from collections.abc import Mapping
from collections.abc import Sequence

from ..errors import StoreError
from . import bounded
from . import check_durations
from . import Claim
from . import decode_cursor
from . import Delivery
from . import DeliveryRecord
from . import DeliveryStatus
from . import DONE_STATUSES
from . import encode_cursor
from . import HistoryEntry
from . import MAX_HISTORY
from . import MAX_MESSAGE
from . import MAX_REJECTIONS
from . import MAX_TRACEBACK
from . import new_token
from . import Page
from . import ReceiverResult
from . import Rejection
from . import Rejections
from . import Source
from . import type_matcher

# ``redis`` is optional: importing this module (which the package's
# top-level ``RedisStore`` export does) must work without it; creating a
# store must not.
try:
    import redis
    from redis.backoff import EqualJitterBackoff
    from redis.connection import SSLConnection
    from redis.retry import Retry
except ImportError as e:
    _import_error: ImportError | None = e
else:
    _import_error = None

__all__ = ["RedisStore"]

_MISSING = (
    "RedisStore needs the 'redis' package: pip install Flask-OpenAI-Webhooks[redis]"
)

#: How long a record recreated by :meth:`RedisStore.record` is kept when
#: nothing later gives it a retention: OpenAI stops retrying a delivery
#: after 72 hours, so nothing can need it longer.
_ORPHAN_TTL = 72 * 3600.0

# --------------------------------------------------------------------------
# Lua
#
# One hash per delivery, ``prefix + "d:" + webhook_id``:
#
#   webhook_id, event_type, event_id, object_id, created_at, body, first,
#   last, attempts, status, code, source
#       the record; ``object_id``, ``created_at`` and ``code`` (the status
#       code) are absent when None
#   token, lease
#       the delivery lease: its token ("" when nobody holds it) and the
#       clock time it expires
#   rkeys, r:<key>
#       the receivers' keys in first-seen order (a JSON list) and each
#       receiver's latest result (JSON)
#   hn, h:<n>
#       how many history entries were ever written, and the last
#       MAX_HISTORY of them (JSON)
#   t:<key>
#       a task lease: "<expiry> <token>"
#
# Each result and history entry is a JSON text written by Python and never
# re-encoded by Lua: cjson keeps only 14 significant digits, which would
# round timestamps to 0.1 ms, and refuses lone surrogates. Lua only decodes
# a result to read its outcome. Numbers are written by Python too (repr
# round-trips a float exactly; Lua's tostring does not).
#
# Times are the caller's clock (ARGV[1] is "now"); only the key's expiry
# (PEXPIRE) is the server's, which is a duration and needs no agreement.
# --------------------------------------------------------------------------

_LUA_PRELUDE = """
local key = KEYS[1]
local now = tonumber(ARGV[1])

-- Keep the record at least ms milliseconds from now, never shorter.
local function keep(ms)
    if redis.call('PTTL', key) < ms then
        redis.call('PEXPIRE', key, ms)
    end
end

-- Merge the results ARGV[first], ARGV[first + 1], ... (key, JSON pairs),
-- each replacing the one with its key.
local function merge(first, last)
    if last < first then
        return
    end
    local rkeys = redis.call('HGET', key, 'rkeys')
    local keys = {}
    if rkeys then
        keys = cjson.decode(rkeys)
    end
    local seen = {}
    for _, k in ipairs(keys) do
        seen[k] = true
    end
    local added = false
    for i = first, last, 2 do
        local k = ARGV[i]
        if not seen[k] then
            seen[k] = true
            keys[#keys + 1] = k
            added = true
        end
        redis.call('HSET', key, 'r:' .. k, ARGV[i + 1])
    end
    if added then
        redis.call('HSET', key, 'rkeys', cjson.encode(keys))
    end
end

-- Append one history entry (JSON), dropping the oldest past the bound.
local function add_history(entry)
    local n = redis.call('HINCRBY', key, 'hn', 1) - 1
    redis.call('HSET', key, 'h:' .. n, entry)
    if n >= @MAX_HISTORY@ then
        redis.call('HDEL', key, 'h:' .. (n - @MAX_HISTORY@))
    end
end

local function leased()
    local fields = redis.call('HMGET', key, 'token', 'lease')
    return fields[1] and fields[1] ~= '' and tonumber(fields[2]) > now
end
""".replace("@MAX_HISTORY@", str(MAX_HISTORY))

_DONE_TABLE = "({" + ", ".join(f"['{s}'] = true" for s in sorted(DONE_STATUSES)) + "})"

# KEYS: record, index. ARGV: now, token, lease expiry, ttl ms, received_at,
# "1" for a replay, duplicate entry, in-flight entry, webhook_id, the
# record key prefix (for the sweep), then field/value pairs of a new record.
_LUA_CLAIM = (
    _LUA_PRELUDE
    + """
local index = KEYS[2]
local before = redis.call('HGETALL', key)
if #before == 0 then
    redis.call('HSET', key, unpack(ARGV, 11))
    redis.call('ZADD', index, ARGV[5], ARGV[9])
    -- Records expire on their own; their ids leave the index when a
    -- listing or prune meets them, or here: ids expire roughly oldest
    -- first, so each new delivery removes up to two stale ones.
    for _, id in ipairs(redis.call('ZRANGE', index, 0, 1)) do
        if redis.call('EXISTS', ARGV[10] .. id) == 0 then
            redis.call('ZREM', index, id)
        end
    end
else
    local status = redis.call('HGET', key, 'status')
    redis.call('HINCRBY', key, 'attempts', 1)
    redis.call('HSET', key, 'last', ARGV[5])
    keep(tonumber(ARGV[4]))
    if @DONE@[status] and ARGV[6] ~= '1' then
        add_history(ARGV[7])
        return {'done'}
    end
    if leased() then
        add_history(ARGV[8])
        return {'in_flight'}
    end
end
redis.call('HSET', key, 'status', 'processing', 'token', ARGV[2], 'lease', ARGV[3])
keep(tonumber(ARGV[4]))
return {'acquired', before}
""".replace("@DONE@", _DONE_TABLE)
)

# KEYS: record. ARGV: now, ttl ms for a recreated record, then result
# key/JSON pairs, then the field/value pairs of a recreated record.
_LUA_RECORD = (
    _LUA_PRELUDE
    + """
local last = 3 + 2 * tonumber(ARGV[3])
if redis.call('EXISTS', key) == 0 then
    redis.call('HSET', key, unpack(ARGV, last + 1))
    redis.call('ZADD', KEYS[2], ARGV[1], ARGV[last + 2])
    keep(tonumber(ARGV[2]))
end
merge(4, last)
return 1
"""
)

# KEYS: record, index. ARGV: now, token, status, status code ("" for
# none), history entry, ttl ms, number of results, then result key/JSON
# pairs, then the field/value pairs of a recreated record.
# The same rule as stores.derive_status, for a delivery with at least one
# result; tests compare the two over every combination of outcomes.
_LUA_DERIVE = """
local function derive_status(outcomes)
    if outcomes['failed'] or outcomes['retry_later'] then
        return 'failed'
    end
    if outcomes['queued'] then
        return 'processing'
    end
    if outcomes['gave_up'] then
        return 'gave_up'
    end
    return 'processed'
end
"""

_LUA_FINISH = (
    _LUA_PRELUDE
    + _LUA_DERIVE
    + """
local last = 8 + 2 * tonumber(ARGV[7]) - 1
local owner
if redis.call('EXISTS', key) == 0 then
    redis.call('HSET', key, unpack(ARGV, last + 1))
    redis.call('ZADD', KEYS[2], ARGV[1], ARGV[last + 2])
    owner = true
else
    owner = ARGV[2] ~= '' and redis.call('HGET', key, 'token') == ARGV[2]
end
merge(8, last)
if not owner then
    return 0
end
local status = ARGV[3]
local entry = ARGV[5]
if status == 'processing' then
    -- Tasks still queued by the caller's view: a worker may have settled
    -- them meanwhile.
    local outcomes = {}
    for _, k in ipairs(cjson.decode(redis.call('HGET', key, 'rkeys') or '[]')) do
        local result = redis.call('HGET', key, 'r:' .. k)
        if result then
            outcomes[cjson.decode(result).outcome] = true
        end
    end
    if next(outcomes) ~= nil then
        status = derive_status(outcomes)
        entry = string.gsub(entry, '"result":"processing"',
            '"result":"' .. status .. '"', 1)
    end
end
redis.call('HSET', key, 'status', status, 'token', '', 'lease', '0')
if ARGV[4] ~= '' then
    redis.call('HSET', key, 'code', ARGV[4])
end
add_history(entry)
keep(tonumber(ARGV[6]))
return 1
"""
)

# KEYS: record. ARGV: now, task key, token, lease expiry, ttl ms.
_LUA_CLAIM_TASK = (
    _LUA_PRELUDE
    + """
local before = redis.call('HGETALL', key)
if #before == 0 then
    return {'missing'}
end
local result = redis.call('HGET', key, 'r:' .. ARGV[2])
if result and cjson.decode(result).outcome == 'ok' then
    return {'done'}
end
local held = redis.call('HGET', key, 't:' .. ARGV[2])
if held and tonumber(string.match(held, '^(%S+)')) > now then
    return {'in_flight'}
end
redis.call('HSET', key, 't:' .. ARGV[2], ARGV[4] .. ' ' .. ARGV[3])
keep(tonumber(ARGV[5]))
return {'acquired', before}
"""
)

# KEYS: record, index. ARGV: now, token, result key, result JSON, ttl ms,
# then the field/value pairs of a recreated record.
_LUA_FINISH_TASK = (
    _LUA_PRELUDE
    + _LUA_DERIVE
    + """
if redis.call('EXISTS', key) == 0 then
    redis.call('HSET', key, unpack(ARGV, 6))
    redis.call('ZADD', KEYS[2], ARGV[1], ARGV[7])
end
merge(3, 4)
local task = 't:' .. ARGV[3]
local held = redis.call('HGET', key, task)
if held and ARGV[2] ~= '' and string.match(held, ' (.*)$') == ARGV[2] then
    redis.call('HDEL', key, task)
end
local status = redis.call('HGET', key, 'status')
-- While a delivery lease is live, its holder sets the status in finish.
if not leased() then
    local outcomes = {}
    for _, k in ipairs(cjson.decode(redis.call('HGET', key, 'rkeys'))) do
        local result = redis.call('HGET', key, 'r:' .. k)
        if result then
            outcomes[cjson.decode(result).outcome] = true
        end
    end
    status = derive_status(outcomes)
    redis.call('HSET', key, 'status', status)
end
add_history('{"at":' .. ARGV[1] .. ',"source":"task","result":"' .. status
    .. '","status_code":null}')
keep(tonumber(ARGV[5]))
return status
"""
)

# KEYS: index, then records. ARGV: now, cutoff, then their webhook ids.
# Returns the number pruned and the number of ids that left the index.
_LUA_PRUNE = """
local index = KEYS[1]
local now = tonumber(ARGV[1])
local cutoff = tonumber(ARGV[2])
local function live(key)
    local fields = redis.call('HMGET', key, 'token', 'lease')
    if fields[1] and fields[1] ~= '' and tonumber(fields[2]) > now then
        return true
    end
    for _, field in ipairs(redis.call('HKEYS', key)) do
        if string.sub(field, 1, 2) == 't:' then
            local held = redis.call('HGET', key, field)
            if tonumber(string.match(held, '^(%S+)')) > now then
                return true
            end
        end
    end
    return false
end
local pruned, removed = 0, 0
for i = 2, #KEYS do
    local key, id = KEYS[i], ARGV[i + 1]
    if redis.call('EXISTS', key) == 0 then
        redis.call('ZREM', index, id)
        removed = removed + 1
    elseif tonumber(redis.call('HGET', key, 'last')) < cutoff and not live(key) then
        redis.call('DEL', key)
        redis.call('ZREM', index, id)
        pruned = pruned + 1
        removed = removed + 1
    end
end
return {pruned, removed}
"""

# KEYS: index, then records. ARGV: their webhook ids. Drops the ids whose
# record has expired.
_LUA_SWEEP = """
for i = 2, #KEYS do
    if redis.call('EXISTS', KEYS[i]) == 0 then
        redis.call('ZREM', KEYS[1], ARGV[i - 1])
    end
end
return 0
"""

# KEYS: recent list, counts hash. ARGV: entry JSON, reason.
_LUA_REJECT = """
redis.call('LPUSH', KEYS[1], ARGV[1])
redis.call('LTRIM', KEYS[1], 0, @MAX_REJECTIONS@ - 1)
redis.call('HINCRBY', KEYS[2], ARGV[2], 1)
return 0
""".replace("@MAX_REJECTIONS@", str(MAX_REJECTIONS))

# KEYS: recent list, counts hash. ARGV: how many recent ones.
_LUA_REJECTIONS = """
local recent = {}
if tonumber(ARGV[1]) > 0 then
    recent = redis.call('LRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1)
end
return {redis.call('HGETALL', KEYS[2]), recent}
"""


# --------------------------------------------------------------------------
# Encoding
# --------------------------------------------------------------------------


def _number(value: float) -> str:
    """A float as text that Lua, Redis and JSON all read back exactly."""
    return repr(float(value))


def _ms(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


def _text(value: object) -> str:
    # Replies are bytes, or str from a client with decode_responses=True.
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, str):
        return value
    raise TypeError(f"expected text, got {type(value).__name__}")


def _result_json(result: ReceiverResult) -> bytes:
    data = result.to_dict()
    data["error_message"] = bounded(result.error_message, MAX_MESSAGE)
    data["traceback"] = bounded(result.traceback, MAX_TRACEBACK)
    # Raw UTF-8 rather than \\u escapes, and a lone surrogate (which cjson
    # refuses to decode) replaced: Lua decodes this to read the outcome.
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return text.encode("utf-8", "replace")


def _results_args(results: Iterable[ReceiverResult]) -> list[str | bytes]:
    args: list[str | bytes] = []
    for result in results:
        args += [result.key, _result_json(result)]
    return args


def _entry_json(entry: HistoryEntry) -> str:
    return json.dumps(entry.to_dict(), separators=(",", ":"))


def _pairs(fields: Mapping[str, str | bytes]) -> list[str | bytes]:
    """Hash fields as HSET's arguments. The webhook id is written first,
    so it is the second argument, where the scripts find it."""
    return [item for pair in fields.items() for item in pair]


def _orphan(webhook_id: str, now: float, status: str, source: str) -> list[str | bytes]:
    """The fields of a record recreated from what a worker still knows,
    after it was pruned or expired under it: its results must not be
    lost."""
    at = _number(now)
    return _pairs(
        {
            "webhook_id": webhook_id,
            "event_type": "",
            "event_id": "",
            "body": b"",
            "first": at,
            "last": at,
            "attempts": "1",
            "status": status,
            "source": source,
            "token": "",
            "lease": "0",
        }
    )


def _parse(fields: Mapping[str, object]) -> DeliveryRecord:
    """A record from its hash fields (names decoded, values raw).

    :raises StoreError: A field is missing or garbled.
    """
    try:
        body = fields.get("body", b"")
        if isinstance(body, str):
            body = body.encode()
        if not isinstance(body, bytes):
            raise TypeError("body")
        object_id = fields.get("object_id")
        created_at = fields.get("created_at")
        code = fields.get("code")
        receivers: list[ReceiverResult] = []
        rkeys = fields.get("rkeys")
        if rkeys is not None:
            for key in json.loads(_text(rkeys)):
                value = fields.get("r:" + key)
                if value is not None:
                    receivers.append(ReceiverResult.from_dict(json.loads(_text(value))))
        history: list[HistoryEntry] = []
        written = int(_text(fields.get("hn", b"0")))
        for n in range(max(0, written - MAX_HISTORY), written):
            value = fields.get(f"h:{n}")
            if value is not None:
                history.append(HistoryEntry.from_dict(json.loads(_text(value))))
        return DeliveryRecord(
            webhook_id=_text(fields["webhook_id"]),
            event_type=_text(fields["event_type"]),
            event_id=_text(fields["event_id"]),
            object_id=None if object_id is None else _text(object_id),
            created_at=None if created_at is None else int(_text(created_at)),
            body=body,
            first_received_at=float(_text(fields["first"])),
            last_received_at=float(_text(fields["last"])),
            attempts=int(_text(fields["attempts"])),
            status=t.cast(DeliveryStatus, _text(fields["status"])),
            status_code=None if code is None else int(_text(code)),
            source=t.cast(Source, _text(fields["source"])),
            receivers=tuple(receivers),
            history=tuple(history),
        )
    except (KeyError, TypeError, ValueError) as e:
        raise StoreError(f"a stored delivery record is corrupt: {e!r}") from None


def _fields(reply: object) -> dict[str, object]:
    """HGETALL's answer, as a dict or a flat list, with decoded names."""
    if isinstance(reply, Mapping):
        return {_text(k): v for k, v in reply.items()}
    if isinstance(reply, list):
        return {_text(reply[i]): reply[i + 1] for i in range(0, len(reply), 2)}
    raise StoreError(f"unexpected reply from Redis: {type(reply).__name__}")


# --------------------------------------------------------------------------
# The store
# --------------------------------------------------------------------------


class RedisStore:
    """Keep the delivery log in Redis, shared by every machine that uses
    the same server and ``prefix``.

    Each delivery is one hash, ``prefix + "d:" + webhook_id``: the record
    (the body as raw bytes), each receiver's latest result and the last
    :data:`~flask_openai_webhooks.stores.MAX_HISTORY` history entries as
    JSON, and the leases. It expires ``retention`` seconds after it was
    last kept (``PEXPIRE``), so Redis does the cleanup; :meth:`prune` can
    forget deliveries sooner. A sorted set, ``prefix + "deliveries"``,
    indexes them by first arrival for :meth:`list_deliveries` and
    :meth:`prune`; the ids of expired records leave it when a listing, a
    prune or a new delivery comes across them. Refusals are a list capped
    at :data:`~flask_openai_webhooks.stores.MAX_REJECTIONS` and a hash of
    counts.

    :meth:`claim`, :meth:`record`, :meth:`finish`, :meth:`claim_task` and
    :meth:`finish_task` are each one Lua script: one round trip, and
    atomic, because Redis runs a script with nothing in between, so two
    workers can never both acquire a delivery or lose each other's
    results. Works with anything speaking the Redis protocol with Lua
    scripting (Redis, Valkey, managed services; ``rediss://`` for TLS and
    ACL user names and passwords in the URL).

    **Clock.** Every time in a record, a lease's expiry included, comes
    from ``clock`` on the calling worker, as in every store: keep the
    machines' clocks synchronised (NTP), which keeps them within
    milliseconds of each other, far below any sensible lease. Only the
    keys' expiry (a duration) is counted by the server.

    **Timeouts.** A client created from a URL waits ``socket_timeout``
    seconds to connect and for each reply, and retries once, quickly: a
    frozen or unreachable server fails the request in about two seconds
    (the blueprint answers 503 and OpenAI retries) instead of holding the
    worker. ``socket_timeout`` and ``socket_connect_timeout`` in the URL's
    query string (``redis://host/0?socket_timeout=5``) take precedence, as
    documented for :meth:`redis.Redis.from_url`. A client that is passed in
    is used as configured; give it timeouts too.

    **Redis Cluster.** The scripts touch several keys (a record and the
    index; the index and records whose key they build from the prefix),
    which must live in one slot: use a hash tag in the prefix, such as
    ``prefix="{owh}:"``.

    **Persistence.** Without AOF or RDB snapshots a restart of Redis
    forgets every record, and OpenAI's redeliveries then run the receivers
    again; :meth:`persistence` says so (``flask openai-webhooks doctor``
    prints it).

    :param url_or_client: A ``redis://``, ``rediss://`` or ``unix://`` URL,
        or a :class:`redis.Redis` client to share its connection pool.
        A client with ``decode_responses=True`` works as long as every body
        is UTF-8 (OpenAI's are JSON).
    :param prefix: Prepended to every key, to share a database with other
        data or other applications.
    :param socket_timeout: Seconds to wait to connect and for each reply,
        for a client created from a URL.
    :param clock: Returns the current wall-clock time in Unix seconds;
        injectable for tests.
    :raises RuntimeError: The ``redis`` package is not installed.
    """

    def __init__(
        self,
        url_or_client: str | redis.Redis,
        *,
        prefix: str = "openai-webhooks:",
        socket_timeout: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if _import_error is not None:
            raise RuntimeError(_MISSING) from _import_error
        if isinstance(url_or_client, str):
            # Retrying a script after a lost reply is safe: a repeated
            # claim finds our own lease ("in_flight": 409, and OpenAI
            # retries later), a repeated record or finish merges the same
            # results again.
            client = redis.Redis.from_url(
                url_or_client,
                socket_timeout=socket_timeout,
                socket_connect_timeout=socket_timeout,
                retry=Retry(EqualJitterBackoff(cap=0.2, base=0.01), 1),
            )
            self._owns_client = True
        else:
            client = url_or_client
            self._owns_client = False
        self.client = client
        self.prefix = prefix
        self._clock = clock
        self._index = prefix + "deliveries"
        self._recent = prefix + "rejections"
        self._counts = prefix + "rejection-counts"
        self._claim = client.register_script(_LUA_CLAIM)
        self._record = client.register_script(_LUA_RECORD)
        self._finish = client.register_script(_LUA_FINISH)
        self._claim_task = client.register_script(_LUA_CLAIM_TASK)
        self._finish_task = client.register_script(_LUA_FINISH_TASK)
        self._prune = client.register_script(_LUA_PRUNE)
        self._sweep = client.register_script(_LUA_SWEEP)
        self._reject = client.register_script(_LUA_REJECT)
        self._rejections = client.register_script(_LUA_REJECTIONS)

    def _key(self, webhook_id: str) -> str:
        return self.prefix + "d:" + webhook_id

    def _error(self, exc: Exception) -> StoreError:
        return StoreError(f"Redis store {self.describe()}: {exc}")

    def _run(
        self,
        script: t.Any,
        keys: Sequence[str],
        args: Sequence[str | bytes | int],
    ) -> t.Any:
        try:
            return script(keys=keys, args=args)
        except (redis.RedisError, OSError) as e:
            raise self._error(e) from e

    # -- DeliveryStore ------------------------------------------------------

    def claim(self, delivery: Delivery, *, lease: float, retention: float) -> Claim:
        """See :meth:`.DeliveryStore.claim`."""
        check_durations(lease, retention)
        now = self._clock()
        token = new_token()
        received = _number(delivery.received_at)
        fields: dict[str, str | bytes] = {
            "webhook_id": delivery.webhook_id,
            "event_type": delivery.event_type,
            "event_id": delivery.event_id,
            "body": bytes(delivery.body),
            "first": received,
            "last": received,
            "attempts": "1",
            "status": "processing",
            "source": delivery.source,
        }
        if delivery.object_id is not None:
            fields["object_id"] = delivery.object_id
        if delivery.created_at is not None:
            fields["created_at"] = str(int(delivery.created_at))
        at = delivery.received_at
        reply = self._run(
            self._claim,
            [self._key(delivery.webhook_id), self._index],
            [
                _number(now),
                token,
                _number(now + lease),
                _ms(max(lease, retention)),
                received,
                "1" if delivery.source == "replay" else "0",
                _entry_json(HistoryEntry(at, delivery.source, "duplicate", 200)),
                _entry_json(HistoryEntry(at, delivery.source, "in_flight", 409)),
                delivery.webhook_id,
                self.prefix + "d:",
                *_pairs(fields),
            ],
        )
        status = _text(reply[0])
        if status == "acquired":
            before = _fields(reply[1])
            return Claim("acquired", token, _parse(before) if before else None)
        if status == "in_flight":
            return Claim("in_flight")
        if status == "done":
            return Claim("done")
        raise StoreError(f"unexpected reply from Redis: {status!r}")

    def record(
        self, webhook_id: str, token: str, results: Sequence[ReceiverResult]
    ) -> None:
        """See :meth:`.DeliveryStore.record`. A record that is gone is
        recreated (status ``processing``, no lease, kept 72 hours unless a
        later call keeps it longer), so the results are not lost if the
        worker dies before :meth:`finish`."""
        args = _results_args(results)
        if not args:
            return
        now = self._clock()
        self._run(
            self._record,
            [self._key(webhook_id), self._index],
            [
                _number(now),
                _ms(_ORPHAN_TTL),
                len(args) // 2,
                *args,
                *_orphan(webhook_id, now, "processing", "delivery"),
            ],
        )

    def finish(
        self,
        webhook_id: str,
        token: str,
        results: Sequence[ReceiverResult],
        *,
        status: DeliveryStatus,
        status_code: int | None,
        source: Source,
        retention: float,
    ) -> None:
        """See :meth:`.DeliveryStore.finish`. A record that is gone is
        recreated with the results, the status and no body."""
        check_durations(None, retention)
        now = self._clock()
        args = _results_args(results)
        entry = HistoryEntry(now, source, status, status_code)
        self._run(
            self._finish,
            [self._key(webhook_id), self._index],
            [
                _number(now),
                token,
                status,
                "" if status_code is None else str(int(status_code)),
                _entry_json(entry),
                _ms(retention),
                len(args) // 2,
                *args,
                *_orphan(webhook_id, now, status, source),
            ],
        )

    def claim_task(self, webhook_id: str, key: str, *, lease: float) -> Claim:
        """See :meth:`.DeliveryStore.claim_task`."""
        # check_durations wants a retention too; the lease stands in for it.
        check_durations(lease, lease)
        now = self._clock()
        token = new_token()
        reply = self._run(
            self._claim_task,
            [self._key(webhook_id)],
            [_number(now), key, token, _number(now + lease), _ms(lease)],
        )
        status = _text(reply[0])
        if status == "acquired":
            return Claim("acquired", token, _parse(_fields(reply[1])))
        if status == "in_flight":
            return Claim("in_flight")
        if status == "done":
            return Claim("done")
        if status == "missing":
            raise LookupError(f"no delivery with webhook-id {webhook_id[:200]!r}")
        raise StoreError(f"unexpected reply from Redis: {status!r}")

    def finish_task(
        self,
        webhook_id: str,
        token: str,
        result: ReceiverResult,
        *,
        retention: float,
    ) -> None:
        """See :meth:`.DeliveryStore.finish_task`. While a delivery lease
        is live its holder sets the status, in :meth:`finish`. A record
        that is gone is recreated with the result."""
        check_durations(None, retention)
        now = self._clock()
        self._run(
            self._finish_task,
            [self._key(webhook_id), self._index],
            [
                _number(now),
                token,
                *_results_args((result,)),
                _ms(retention),
                *_orphan(webhook_id, now, "processing", "task"),
            ],
        )

    def get(self, webhook_id: str) -> DeliveryRecord | None:
        """See :meth:`.DeliveryStore.get`."""
        try:
            reply = self.client.hgetall(self._key(webhook_id))
        except (redis.RedisError, OSError) as e:
            raise self._error(e) from e
        fields = _fields(reply)
        return _parse(fields) if fields else None

    def list_deliveries(
        self,
        *,
        status: Collection[str] | None = None,
        type_pattern: str | None = None,
        since: float | None = None,
        until: float | None = None,
        search: str | None = None,
        limit: int = 50,
        before: str | None = None,
    ) -> Page:
        """See :meth:`.DeliveryStore.list_deliveries`. Filters other than
        the time range are applied while walking the index, newest first,
        so a rare status or a search reads every record in the range.

        :raises ValueError: ``before`` is not a cursor, or ``limit`` is
            less than 1.
        """
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit!r}")
        after = None if before is None else decode_cursor(before)
        # A lone string is a Collection[str] too; it means one status.
        if isinstance(status, str):
            status = (status,)
        statuses = None if status is None else frozenset(status)
        matches_type = type_matcher(type_pattern)

        def wanted(record: DeliveryRecord) -> bool:
            return (
                (statuses is None or record.status in statuses)
                and (
                    search is None
                    or search in (record.webhook_id, record.event_id, record.object_id)
                )
                and matches_type(record.event_type)
            )

        lowest = "-inf" if since is None else _number(since)
        found: list[DeliveryRecord] = []
        batch = max(limit + 1, 100)
        try:
            # One more than asked says whether there is a next page.
            while len(found) <= limit:
                # Walk newest first, from just below ``after``: ids that
                # share its score and sort at or above it were seen.
                if after is not None and (until is None or after[0] < until):
                    highest = _number(after[0])
                else:
                    highest = "+inf" if until is None else "(" + _number(until)
                rows = self.client.zrevrangebyscore(
                    self._index, highest, lowest, start=0, num=batch, withscores=True
                )
                fresh = [
                    (_text(member), float(score))
                    for member, score in t.cast(list[tuple[object, float]], rows)
                ]
                fresh = [
                    (wid, at) for wid, at in fresh if after is None or (at, wid) < after
                ]
                if not fresh:
                    if len(rows) < batch:
                        break
                    # A whole batch of ids with one score, all seen.
                    batch *= 2
                    continue
                with self.client.pipeline(transaction=False) as pipe:
                    for wid, _ in fresh:
                        pipe.hgetall(self._key(wid))
                    replies = pipe.execute()
                expired = []
                for (wid, _), reply in zip(fresh, replies, strict=True):
                    fields = _fields(reply)
                    if not fields:
                        expired.append(wid)
                        continue
                    record = _parse(fields)
                    if wanted(record):
                        found.append(record)
                        if len(found) > limit:
                            break
                if expired:
                    keys = [self._index, *(self._key(wid) for wid in expired)]
                    self._sweep(keys=keys, args=expired)
                after = fresh[-1][1], fresh[-1][0]
                if len(rows) < batch:
                    break
        except (redis.RedisError, OSError) as e:
            raise self._error(e) from e
        records = tuple(found[:limit])
        cursor = None
        if len(found) > limit:
            last = records[-1]
            cursor = encode_cursor(last.first_received_at, last.webhook_id)
        return Page(records, cursor)

    def prune(self, older_than: float) -> int:
        """See :meth:`.DeliveryStore.prune`. Also drops the ids of
        expired records from the index."""
        now = self._clock()
        cutoff = now - older_than
        pruned = 0
        # Kept records stay in front of the range; skip past them.
        kept = 0
        try:
            while True:
                rows = self.client.zrangebyscore(
                    self._index, "-inf", "(" + _number(cutoff), start=kept, num=200
                )
                ids = [_text(member) for member in t.cast(list[object], rows)]
                if not ids:
                    return pruned
                keys = [self._index, *(self._key(wid) for wid in ids)]
                reply = self._prune(
                    keys=keys, args=[_number(now), _number(cutoff), *ids]
                )
                pruned += int(reply[0])
                kept += len(ids) - int(reply[1])
        except (redis.RedisError, OSError) as e:
            raise self._error(e) from e

    def reject(self, reason: str, webhook_id: str | None, at: float) -> None:
        """See :meth:`.DeliveryStore.reject`."""
        if webhook_id is not None:
            webhook_id = webhook_id[:200]
        rejection = dataclasses.asdict(Rejection(at, reason, webhook_id))
        self._run(
            self._reject,
            [self._recent, self._counts],
            [json.dumps(rejection, separators=(",", ":")), reason],
        )

    def rejections(self, limit: int = 50) -> Rejections:
        """See :meth:`.DeliveryStore.rejections`."""
        count = min(max(limit, 0), MAX_REJECTIONS)
        counts, recent = self._run(
            self._rejections, [self._recent, self._counts], [count]
        )
        try:
            return Rejections(
                {k: int(_text(v)) for k, v in _fields(counts).items()},
                tuple(Rejection(**json.loads(_text(item))) for item in recent),
            )
        except (TypeError, ValueError) as e:
            raise StoreError(f"a stored rejection is corrupt: {e!r}") from None

    def ping(self) -> None:
        """See :meth:`.DeliveryStore.ping`."""
        try:
            self.client.ping()
        except (redis.RedisError, OSError) as e:
            raise self._error(e) from e

    def describe(self) -> str:
        """See :meth:`.DeliveryStore.describe`. Built from the connection
        settings, so it never holds the password."""
        pool = getattr(self.client, "connection_pool", None)
        if pool is None:
            # A cluster or custom client: say what it is, nothing more.
            return f"redis ({type(self.client).__name__}, prefix {self.prefix!r})"
        kwargs = pool.connection_kwargs
        db = kwargs.get("db", 0)
        user = kwargs.get("username")
        userinfo = f"{user}@" if user else ""
        if "path" in kwargs:
            return f"unix://{userinfo}{kwargs['path']}?db={db}"
        scheme = (
            "rediss" if issubclass(pool.connection_class, SSLConnection) else "redis"
        )
        host = str(kwargs.get("host", "localhost"))
        if ":" in host:
            host = f"[{host}]"
        return f"{scheme}://{userinfo}{host}:{kwargs.get('port', 6379)}/{db}"

    def persistence(self) -> str | None:
        """A warning when the server keeps nothing on disk (neither AOF nor
        RDB snapshots are enabled), else ``None``: then a restart of Redis
        forgets every record, and OpenAI's redeliveries run receivers that
        had succeeded again. ``None`` too when the server does not allow
        ``CONFIG GET`` (managed services often do not); check their
        persistence settings by hand.

        :raises StoreError: The server cannot be reached.
        """
        try:
            appendonly = self.client.config_get("appendonly")
            save = self.client.config_get("save")
        except redis.ResponseError:
            return None
        except (redis.RedisError, OSError) as e:
            raise self._error(e) from e
        settings = {**_fields(appendonly), **_fields(save)}
        if _text(settings.get("appendonly", b"no")) == "yes":
            return None
        if _text(settings.get("save", b"")).strip():
            return None
        return (
            "it keeps nothing on disk (appendonly is 'no' and save is empty):"
            " a restart forgets every delivery record"
        )

    def close(self) -> None:
        """Close the connections if the store created the client from a
        URL; a client that was passed in is left to its owner. Safe to call
        twice."""
        if self._owns_client:
            self.client.close()
