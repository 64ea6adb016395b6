"""Fetch the object a webhook event points at, and read a batch's results.

OpenAI's events are thin: ``data`` holds little more than an ID, so nearly
every receiver starts with a second API call. :func:`fetch_related` makes
that call for the event's family and returns the SDK's own typed object:

.. code-block:: python

    from openai import OpenAI
    from flask_openai_webhooks import batch_completed
    from flask_openai_webhooks.fetch import fetch_related
    from flask_openai_webhooks.fetch import iter_batch_results

    client = OpenAI()

    @batch_completed.connect
    def on_batch_completed(app, event, **extra):
        batch = fetch_related(event, client)  # one GET /v1/batches/{id}

        for row in iter_batch_results(client, batch):
            if not row.ok:
                ...

Within one delivery the same object is fetched once, however many receivers
ask for it (see :func:`fetch_related`).

Install the ``openai`` extra to use this module. Importing it does not
import ``openai``: the client is passed in, so the SDK is loaded by the code
that builds the client, and ``flask_openai_webhooks`` keeps working without
it.
"""

from __future__ import annotations

import collections.abc as c
import typing as t

from flask import g
from flask import has_app_context
from flask import has_request_context
from flask import request
from pydantic import BaseModel
from pydantic import ConfigDict
from pydantic import ValidationError

from . import models

if t.TYPE_CHECKING:  # pragma: no cover
    from openai import AsyncOpenAI
    from openai import OpenAI
    from openai.types import Batch as SDKBatch
    from openai.types.beta import AgentSession
    from openai.types.beta.agents import EnvironmentInfo
    from openai.types.evals import RunRetrieveResponse
    from openai.types.fine_tuning import FineTuningJob
    from openai.types.responses import Response
    from openai.types.safety import SafetyAlert
    from openai.types.safety import SafetyCase

    Related: t.TypeAlias = (
        SDKBatch
        | Response
        | FineTuningJob
        | RunRetrieveResponse
        | AgentSession
        | EnvironmentInfo
        | SafetyAlert
        | SafetyCase
    )
    """Everything :func:`fetch_related` can return, apart from ``None``."""

__all__ = [
    "BatchResultError",
    "BatchResultResponse",
    "BatchResultRow",
    "MalformedBatchResultError",
    "MissingEvalIdError",
    "afetch_related",
    "aiter_batch_results",
    "fetch_related",
    "iter_batch_results",
]


# --- Errors ------------------------------------------------------------------


class MissingEvalIdError(TypeError):
    """An ``eval.run.*`` event was given to :func:`fetch_related` without
    ``eval_id=``.

    The event carries only the run ID, but the API finds a run only under
    its eval (``GET /v1/evals/{eval_id}/runs/{run_id}``), and the run ID
    alone cannot be turned into an eval ID without listing every eval.
    """


class MalformedBatchResultError(ValueError):
    """A line of a batch's output or error file is not a batch result.

    The message names the file and the 1-based line number, never the
    line's content, which holds model output and can be large.
    """

    def __init__(self, file_id: str, line_number: int, reason: str) -> None:
        super().__init__(
            f"line {line_number} of batch result file {file_id!r} is not a"
            f" batch result: {reason}"
        )
        self.file_id = file_id
        self.line_number = line_number
        self.reason = reason


# --- fetch_related -----------------------------------------------------------

_Kind: t.TypeAlias = t.Literal[
    "batch",
    "response",
    "fine_tuning.job",
    "eval.run",
    "agent.session",
    "agent.environment",
    "safety.alert",
    "safety.case",
]

#: What each event type points at. Types missing here have nothing to
#: fetch: ``realtime.call.incoming`` and ``live.*`` name a call to accept or
#: reject, not an object to read; ``safety_identifier.blocked`` names a
#: safety identifier, which has no retrieve endpoint; unknown types
#: (``video.*`` among them) have no documented payload to take an ID from.
_KINDS: t.Mapping[str, _Kind] = {
    "batch.cancelled": "batch",
    "batch.completed": "batch",
    "batch.expired": "batch",
    "batch.failed": "batch",
    "response.cancelled": "response",
    "response.completed": "response",
    "response.failed": "response",
    "response.incomplete": "response",
    "fine_tuning.job.cancelled": "fine_tuning.job",
    "fine_tuning.job.failed": "fine_tuning.job",
    "fine_tuning.job.succeeded": "fine_tuning.job",
    "eval.run.canceled": "eval.run",
    "eval.run.failed": "eval.run",
    "eval.run.succeeded": "eval.run",
    "agent.session.action_required": "agent.session",
    "agent.session.created": "agent.session",
    "agent.session.failed": "agent.session",
    "agent.session.idle": "agent.session",
    "agent.session.in_progress": "agent.session",
    "agent.environment.expired": "agent.environment",
    "agent.environment.failed": "agent.environment",
    "agent.environment.ready": "agent.environment",
    "agent.environment.suspended": "agent.environment",
    # Alerts are per project (safety.alert.created) or per enterprise
    # workspace; warnings and deactivations are both safety cases.
    "safety.alert.created": "safety.alert",
    "safety.org_alert.created": "safety.alert",
    "safety.warning_issued": "safety.case",
    "safety.deactivation_issued": "safety.case",
}

_BatchEvent: t.TypeAlias = (
    models.BatchCancelledWebhookEvent
    | models.BatchCompletedWebhookEvent
    | models.BatchExpiredWebhookEvent
    | models.BatchFailedWebhookEvent
)
_ResponseEvent: t.TypeAlias = (
    models.ResponseCancelledWebhookEvent
    | models.ResponseCompletedWebhookEvent
    | models.ResponseFailedWebhookEvent
    | models.ResponseIncompleteWebhookEvent
)
_FineTuningJobEvent: t.TypeAlias = (
    models.FineTuningJobCancelledWebhookEvent
    | models.FineTuningJobFailedWebhookEvent
    | models.FineTuningJobSucceededWebhookEvent
)
_EvalRunEvent: t.TypeAlias = (
    models.EvalRunCanceledWebhookEvent
    | models.EvalRunFailedWebhookEvent
    | models.EvalRunSucceededWebhookEvent
)
_AgentSessionEvent: t.TypeAlias = (
    models.AgentSessionActionRequiredWebhookEvent
    | models.AgentSessionCreatedWebhookEvent
    | models.AgentSessionFailedWebhookEvent
    | models.AgentSessionIdleWebhookEvent
    | models.AgentSessionInProgressWebhookEvent
)
_AgentEnvironmentEvent: t.TypeAlias = (
    models.AgentEnvironmentExpiredWebhookEvent
    | models.AgentEnvironmentFailedWebhookEvent
    | models.AgentEnvironmentReadyWebhookEvent
    | models.AgentEnvironmentSuspendedWebhookEvent
)
_SafetyAlertEvent: t.TypeAlias = (
    models.SafetyAlertCreatedWebhookEvent | models.SafetyOrgAlertCreatedWebhookEvent
)
_SafetyCaseEvent: t.TypeAlias = (
    models.SafetyWarningIssuedWebhookEvent | models.SafetyDeactivationIssuedWebhookEvent
)
_NothingEvent: t.TypeAlias = (
    models.RealtimeCallIncomingWebhookEvent
    | models.LiveCallIncomingWebhookEvent
    | models.LiveTransportIncomingWebhookEvent
    | models.LiveTransportConnectedWebhookEvent
    | models.SafetyIdentifierBlockedWebhookEvent
    | models.UnknownWebhookEvent
)


class _EventLike(t.Protocol):
    """Any event with a ``type`` and a ``data``: this package's models, or
    the ones the SDK's ``client.webhooks.unwrap()`` returns.
    """

    @property
    def type(self) -> str: ...

    @property
    def data(self) -> t.Any: ...


#: The ``flask.g`` attribute holding the memo of the current app context.
_MEMO_ATTR = "_openai_webhooks_fetched"


@t.overload
def fetch_related(event: _BatchEvent, client: OpenAI, **kwargs: t.Any) -> SDKBatch: ...
@t.overload
def fetch_related(
    event: _ResponseEvent, client: OpenAI, **kwargs: t.Any
) -> Response: ...
@t.overload
def fetch_related(
    event: _FineTuningJobEvent, client: OpenAI, **kwargs: t.Any
) -> FineTuningJob: ...
@t.overload
def fetch_related(
    event: _EvalRunEvent, client: OpenAI, *, eval_id: str, **kwargs: t.Any
) -> RunRetrieveResponse: ...
@t.overload
def fetch_related(
    event: _AgentSessionEvent, client: OpenAI, **kwargs: t.Any
) -> AgentSession: ...
@t.overload
def fetch_related(
    event: _AgentEnvironmentEvent, client: OpenAI, **kwargs: t.Any
) -> EnvironmentInfo: ...
@t.overload
def fetch_related(
    event: _SafetyAlertEvent, client: OpenAI, **kwargs: t.Any
) -> SafetyAlert: ...
@t.overload
def fetch_related(
    event: _SafetyCaseEvent, client: OpenAI, **kwargs: t.Any
) -> SafetyCase: ...
@t.overload
def fetch_related(event: _NothingEvent, client: OpenAI, **kwargs: t.Any) -> None: ...
@t.overload
def fetch_related(
    event: _EventLike, client: OpenAI, **kwargs: t.Any
) -> Related | None: ...
def fetch_related(event: _EventLike, client: OpenAI, **kwargs: t.Any) -> Related | None:
    """Fetch the object ``event`` points at with one API call, and return
    it as the SDK's typed object.

    - ``batch.*``: ``client.batches.retrieve(id)``
    - ``response.*``: ``client.responses.retrieve(id)``
    - ``fine_tuning.job.*``: ``client.fine_tuning.jobs.retrieve(id)``
    - ``eval.run.*``: ``client.evals.runs.retrieve(id, eval_id=eval_id)``;
      the event has no eval ID, so pass ``eval_id=``.
    - ``agent.session.*``: ``client.beta.agents.sessions.retrieve(id)``
      (the event leaves out the session's ``required_actions``)
    - ``agent.environment.*``:
      ``client.beta.agents.environments.retrieve(id)``
    - ``safety.alert.created``, ``safety.org_alert.created``:
      ``client.safety.alerts.retrieve(id)``
    - ``safety.warning_issued``, ``safety.deactivation_issued``:
      ``client.safety.cases.retrieve(id)``

    Every other type returns ``None`` without a request: a realtime or live
    call is answered with ``client.realtime.calls``, not read; a blocked
    safety identifier has no object to retrieve; and an unknown type (such
    as ``video.completed``, which the SDK has no model for) has no
    documented place for an ID.

    **Once per delivery.** Inside a Flask app context the result is kept on
    :data:`flask.g`, keyed by the client, the object and ``kwargs``, so the
    receivers of one delivery share one API call. Flask pushes a new app
    context for each request, and Flask-integrated Celery tasks run in one
    each, so the memo lives as long as the delivery. It is also tied to the
    current request, so it does not outlive one when several requests share
    an app context (a test client used inside ``app.app_context()``, or
    pytest-flask). A failed call is not remembered. Outside an app context
    nothing is remembered and every call makes a request. Calls whose
    ``kwargs`` hold an unhashable value that is not a dict, list or set (an
    ``httpx.Timeout``, say) are not remembered either.

    :param event: A parsed event: one of this package's models, or what the
        SDK's ``client.webhooks.unwrap()`` returns.
    :param client: An ``openai.OpenAI`` client. For ``AsyncOpenAI``, use
        :func:`afetch_related`.
    :param kwargs: Passed unchanged to the SDK call, e.g. ``timeout``,
        ``extra_headers``, and ``eval_id`` for ``eval.run.*`` events.
    :raises MissingEvalIdError: An ``eval.run.*`` event without
        ``eval_id=``.
    :raises openai.APIError: Whatever the SDK raises, e.g.
        ``openai.NotFoundError`` for an object of another project, once the
        SDK's own retries (``max_retries``) are used up.
    """
    target = _target(event, kwargs)

    if target is None:
        return None

    kind, object_id = target
    return _fetch(client, kind, object_id, kwargs)


@t.overload
async def afetch_related(
    event: _BatchEvent, client: AsyncOpenAI, **kwargs: t.Any
) -> SDKBatch: ...
@t.overload
async def afetch_related(
    event: _ResponseEvent, client: AsyncOpenAI, **kwargs: t.Any
) -> Response: ...
@t.overload
async def afetch_related(
    event: _FineTuningJobEvent, client: AsyncOpenAI, **kwargs: t.Any
) -> FineTuningJob: ...
@t.overload
async def afetch_related(
    event: _EvalRunEvent, client: AsyncOpenAI, *, eval_id: str, **kwargs: t.Any
) -> RunRetrieveResponse: ...
@t.overload
async def afetch_related(
    event: _AgentSessionEvent, client: AsyncOpenAI, **kwargs: t.Any
) -> AgentSession: ...
@t.overload
async def afetch_related(
    event: _AgentEnvironmentEvent, client: AsyncOpenAI, **kwargs: t.Any
) -> EnvironmentInfo: ...
@t.overload
async def afetch_related(
    event: _SafetyAlertEvent, client: AsyncOpenAI, **kwargs: t.Any
) -> SafetyAlert: ...
@t.overload
async def afetch_related(
    event: _SafetyCaseEvent, client: AsyncOpenAI, **kwargs: t.Any
) -> SafetyCase: ...
@t.overload
async def afetch_related(
    event: _NothingEvent, client: AsyncOpenAI, **kwargs: t.Any
) -> None: ...
@t.overload
async def afetch_related(
    event: _EventLike, client: AsyncOpenAI, **kwargs: t.Any
) -> Related | None: ...
async def afetch_related(
    event: _EventLike, client: AsyncOpenAI, **kwargs: t.Any
) -> Related | None:
    """:func:`fetch_related` for an ``openai.AsyncOpenAI`` client, for
    ``async def`` receivers.

    It is memoised in the same way, on the same :data:`flask.g`; the
    object is stored, not the coroutine, so it can be awaited again. Two
    receivers awaiting it concurrently (rather than one after the other)
    may both make the request.
    """
    target = _target(event, kwargs)

    if target is None:
        return None

    kind, object_id = target
    return await _afetch(client, kind, object_id, kwargs)


def _target(
    event: _EventLike, kwargs: c.Mapping[str, t.Any]
) -> tuple[_Kind, str] | None:
    """What to fetch for ``event``: the kind of object and its ID, or
    ``None`` for nothing. Checks the arguments before any request is made.
    """
    kind = _KINDS.get(event.type)

    if kind is None:
        return None

    object_id = getattr(event.data, "id", None)

    if not isinstance(object_id, str) or not object_id:
        raise ValueError(f"{event.type} event has no string data.id to fetch")

    if kind == "eval.run" and not kwargs.get("eval_id"):
        raise MissingEvalIdError(
            f"{event.type} events carry only the run ID ({object_id}), and the"
            " API finds a run only under its eval: pass"
            " fetch_related(event, client, eval_id=...). The eval ID is the"
            " 'id' returned by client.evals.create() and the first argument"
            " of client.evals.runs.create(eval_id, ...); store it with the"
            " run ID when you start the run (run.eval_id)."
        )

    if kind == "response" and "stream" in kwargs:
        # A stream can be read once; handing the same one to every receiver
        # of the delivery would be a bug.
        raise TypeError(
            "fetch_related returns the response object; to stream it, call"
            " client.responses.retrieve(id, stream=True) yourself"
        )

    return kind, object_id


class _Memo:
    """The place in the current delivery's memo for one object.

    Inside an app context the memo is a dict on :data:`flask.g`, replaced
    when the request changes; outside an app context, or when ``kwargs``
    cannot be made into a key, there is none and :meth:`get` always misses.
    """

    def __init__(
        self, client: object, kind: str, object_id: str, kwargs: c.Mapping[str, t.Any]
    ) -> None:
        self._store: dict[t.Hashable, tuple[object, object]] | None = None
        self._key: t.Hashable = None

        if not has_app_context():
            return

        try:
            self._key = (id(client), kind, object_id, _freeze(kwargs))
        except TypeError:
            return

        # Flask reuses an app context that is already pushed when it handles
        # a request (a test client inside ``app.app_context()``, or under
        # pytest-flask), so ``g`` alone could outlive the delivery. Tie the
        # memo to the request too: its WSGI environ is new for each one.
        owner = request.environ if has_request_context() else None
        slot: tuple[object, dict[t.Hashable, tuple[object, object]]] | None
        slot = g.get(_MEMO_ATTR)

        if slot is None or slot[0] is not owner:
            slot = (owner, {})
            setattr(g, _MEMO_ATTR, slot)

        self._store = slot[1]

    def get(self) -> object:
        """The remembered object, or :data:`_MISSING`."""
        if self._store is None or self._key not in self._store:
            return _MISSING

        return self._store[self._key][1]

    def set(self, client: object, value: object) -> None:
        if self._store is not None:
            # The client is kept with the object so that its id() cannot be
            # reused by another client while the memo lives.
            self._store[self._key] = (client, value)


_MISSING = object()


def _freeze(value: t.Any) -> t.Hashable:
    """Turn ``value`` into something hashable that compares equal exactly
    when the values do. Dicts, lists and sets are converted; anything else
    must be hashable already.

    :raises TypeError: Something unhashable that is not one of those.
    """
    if isinstance(value, c.Mapping):
        return (
            "mapping",
            frozenset((_freeze(k), _freeze(v)) for k, v in value.items()),
        )

    if isinstance(value, (list, tuple)):
        return (type(value).__name__, tuple(_freeze(v) for v in value))

    if isinstance(value, (set, frozenset)):
        return ("set", frozenset(_freeze(v) for v in value))

    hash(value)
    return t.cast(t.Hashable, value)


def _fetch(
    client: OpenAI, kind: _Kind, object_id: str, kwargs: dict[str, t.Any]
) -> Related:
    memo = _Memo(client, kind, object_id, kwargs)
    found = memo.get()

    if found is not _MISSING:
        return t.cast("Related", found)

    result = _retrieve(client, kind, object_id, kwargs)
    memo.set(client, result)
    return result


async def _afetch(
    client: AsyncOpenAI, kind: _Kind, object_id: str, kwargs: dict[str, t.Any]
) -> Related:
    memo = _Memo(client, kind, object_id, kwargs)
    found = memo.get()

    if found is not _MISSING:
        return t.cast("Related", found)

    result = await _aretrieve(client, kind, object_id, kwargs)
    memo.set(client, result)
    return result


def _retrieve(
    client: OpenAI, kind: _Kind, object_id: str, kwargs: dict[str, t.Any]
) -> Related:
    if kind == "batch":
        return client.batches.retrieve(object_id, **kwargs)

    if kind == "response":
        return t.cast("Response", client.responses.retrieve(object_id, **kwargs))

    if kind == "fine_tuning.job":
        return client.fine_tuning.jobs.retrieve(object_id, **kwargs)

    if kind == "eval.run":
        return client.evals.runs.retrieve(object_id, **kwargs)

    if kind == "agent.session":
        return client.beta.agents.sessions.retrieve(object_id, **kwargs)

    if kind == "agent.environment":
        return client.beta.agents.environments.retrieve(object_id, **kwargs)

    if kind == "safety.alert":
        return client.safety.alerts.retrieve(object_id, **kwargs)

    return client.safety.cases.retrieve(object_id, **kwargs)


async def _aretrieve(
    client: AsyncOpenAI, kind: _Kind, object_id: str, kwargs: dict[str, t.Any]
) -> Related:
    if kind == "batch":
        return await client.batches.retrieve(object_id, **kwargs)

    if kind == "response":
        response = await client.responses.retrieve(object_id, **kwargs)
        return t.cast("Response", response)

    if kind == "fine_tuning.job":
        return await client.fine_tuning.jobs.retrieve(object_id, **kwargs)

    if kind == "eval.run":
        return await client.evals.runs.retrieve(object_id, **kwargs)

    if kind == "agent.session":
        return await client.beta.agents.sessions.retrieve(object_id, **kwargs)

    if kind == "agent.environment":
        return await client.beta.agents.environments.retrieve(object_id, **kwargs)

    if kind == "safety.alert":
        return await client.safety.alerts.retrieve(object_id, **kwargs)

    return await client.safety.cases.retrieve(object_id, **kwargs)


# --- Batch results -----------------------------------------------------------


class _Row(BaseModel):
    """Base of the batch result models: extra fields are kept (OpenAI may
    add some), instances are immutable.
    """

    model_config = ConfigDict(extra="allow", frozen=True)


class BatchResultError(_Row):
    """Why a request of the batch produced no response, e.g. the batch
    expired before it ran (``batch_expired``).
    """

    code: str | None = None
    message: str | None = None


class BatchResultResponse(_Row):
    """The HTTP response a request of the batch got."""

    status_code: int
    request_id: str
    body: dict[str, t.Any]
    """The JSON body, as the endpoint would have returned it."""


class BatchResultRow(_Row):
    """One line of a batch's output or error file: the outcome of one
    request of the input file.
    """

    id: str
    """The ID of this batch request (``batch_req_...``)."""

    custom_id: str
    """The ``custom_id`` of the input line; use it to match results to
    requests, since the files are not in input order.
    """

    response: BatchResultResponse | None = None
    error: BatchResultError | None = None

    @property
    def ok(self) -> bool:
        """The request got a 2xx response and no error."""
        return (
            self.error is None
            and self.response is not None
            and 200 <= self.response.status_code < 300
        )


#: Statuses in which a batch may still gain results: reading its files now
#: would silently give a partial answer.
_UNFINISHED = frozenset({"validating", "in_progress", "finalizing", "cancelling"})

_AnyBatch: t.TypeAlias = "SDKBatch | models.Batch | str"


def iter_batch_results(client: OpenAI, batch: _AnyBatch) -> c.Iterator[BatchResultRow]:
    """Yield the results of a finished batch, one row per line of its
    output file, then of its error file.

    The files are streamed, so memory stays bounded by one line (plus one
    network chunk) whatever their size. Works for every finished status: a
    completed batch, an expired or cancelled one (the output file holds
    what ran, the error file a ``batch_expired`` or ``batch_cancelled``
    error for the rest), or a failed one. A batch with neither file yields
    nothing; a batch that failed validation reports why in
    ``batch.errors``, not here.

    Lines are split on ``\\n`` only, as JSON Lines requires, and not with
    the SDK's ``iter_lines()``, which also splits on U+2028 and other
    Unicode line separators that JSON strings may contain unescaped. Blank
    lines are skipped.

    Stop early by closing the generator (or breaking out of a ``for``
    loop): the download is closed with it.

    :param client: An ``openai.OpenAI`` client.
    :param batch: The SDK's ``openai.types.Batch``, this package's
        :class:`~flask_openai_webhooks.models.Batch`, or a batch ID, which
        is retrieved first (memoised like :func:`fetch_related`).
    :raises ValueError: The batch is not finished yet.
    :raises MalformedBatchResultError: A line is not a batch result; rows
        before it have been yielded.
    """
    if isinstance(batch, str):
        batch = _fetch_batch(client, batch)

    for file_id in _result_files(batch):
        splitter = _LineSplitter()

        with client.files.with_streaming_response.content(file_id) as response:
            for chunk in response.iter_bytes():
                for line in splitter.feed(chunk):
                    row = _parse_row(line, file_id, splitter.line_number)

                    if row is not None:
                        yield row

        for line in splitter.flush():
            row = _parse_row(line, file_id, splitter.line_number)

            if row is not None:
                yield row


async def aiter_batch_results(
    client: AsyncOpenAI, batch: _AnyBatch
) -> c.AsyncIterator[BatchResultRow]:
    """:func:`iter_batch_results` for an ``openai.AsyncOpenAI`` client:
    ``async for row in aiter_batch_results(client, batch)``.

    Close it with ``await rows.aclose()`` if you stop early outside an
    ``async for`` that runs to the end, so the download is closed at once.
    """
    if isinstance(batch, str):
        batch = await _afetch_batch(client, batch)

    for file_id in _result_files(batch):
        splitter = _LineSplitter()

        async with client.files.with_streaming_response.content(file_id) as response:
            async for chunk in response.iter_bytes():
                for line in splitter.feed(chunk):
                    row = _parse_row(line, file_id, splitter.line_number)

                    if row is not None:
                        yield row

        for line in splitter.flush():
            row = _parse_row(line, file_id, splitter.line_number)

            if row is not None:
                yield row


def _fetch_batch(client: OpenAI, batch_id: str) -> SDKBatch:
    return t.cast("SDKBatch", _fetch(client, "batch", batch_id, {}))


async def _afetch_batch(client: AsyncOpenAI, batch_id: str) -> SDKBatch:
    return t.cast("SDKBatch", await _afetch(client, "batch", batch_id, {}))


def _result_files(batch: SDKBatch | models.Batch) -> list[str]:
    """The IDs of the files holding ``batch``'s results, output first."""
    if batch.status in _UNFINISHED:
        raise ValueError(
            f"batch {batch.id} is {batch.status}: its results are complete"
            " only once it is completed, expired, cancelled or failed"
        )

    return [f for f in (batch.output_file_id, batch.error_file_id) if f]


class _LineSplitter:
    """Split a stream of byte chunks into lines on ``\\n``, keeping at most
    one unfinished line. Safe on UTF-8: a ``\\n`` byte never occurs inside
    a multi-byte character.
    """

    def __init__(self) -> None:
        self._pending: list[bytes] = []
        #: The 1-based number of the last line returned.
        self.line_number = 0

    def feed(self, chunk: bytes) -> c.Iterator[bytes]:
        start = 0

        while (end := chunk.find(b"\n", start)) != -1:
            self._pending.append(chunk[start:end])
            line = b"".join(self._pending)
            self._pending.clear()
            self.line_number += 1
            yield line
            start = end + 1

        if start < len(chunk):
            self._pending.append(chunk[start:])

    def flush(self) -> c.Iterator[bytes]:
        """The last line, if the stream did not end with a newline."""
        if self._pending:
            line = b"".join(self._pending)
            self._pending.clear()
            self.line_number += 1
            yield line


#: How many validation errors a malformed-line message lists.
_MAX_ERRORS = 3


def _parse_row(line: bytes, file_id: str, line_number: int) -> BatchResultRow | None:
    """Parse one line; ``None`` for a blank one."""
    if not line.strip():
        return None

    try:
        return BatchResultRow.model_validate_json(line)
    except ValidationError as e:
        raise MalformedBatchResultError(file_id, line_number, _describe(e)) from None


def _describe(error: ValidationError) -> str:
    """Say in one line what is wrong, without the input values."""
    errors = error.errors(include_url=False, include_input=False)

    if errors[0]["type"] in ("json_invalid", "string_unicode"):
        return "not valid JSON"

    if errors[0]["type"] == "model_type":
        return "not a JSON object"

    parts = [
        f"{'.'.join(str(item) for item in e['loc']) or 'line'}: {e['msg']}"
        for e in errors[:_MAX_ERRORS]
    ]

    if len(errors) > _MAX_ERRORS:
        parts.append(f"and {len(errors) - _MAX_ERRORS} more")

    return "; ".join(parts)
