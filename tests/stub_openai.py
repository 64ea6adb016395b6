"""A stand-in for the OpenAI API, for tests that drive the real ``openai``
SDK over real HTTP.

:func:`serve` starts it on 127.0.0.1 (an ephemeral port) in a background
thread and stops it afterwards; point a client at :attr:`StubOpenAI.base_url`:

.. code-block:: python

    with serve() as stub:
        client = openai.OpenAI(base_url=stub.base_url, api_key="sk-test")
        stub.add_batch(batch("batch_1"))
        client.batches.retrieve("batch_1")
        assert stub.requests_to("/v1/batches/batch_1") == [...]

Bodies have the shapes of the SDK's types (the helpers below build valid
ones). Every request is recorded. What it serves:

- ``GET`` of any object added with :meth:`StubOpenAI.add`, and the
  helpers for batches and fine-tuning jobs, which also list them;
- ``GET /v1/batches`` and ``GET /v1/fine_tuning/jobs``: cursor pages
  (``after``, ``limit``; ``has_more``, and ``first_id``/``last_id`` for
  batches), newest first;
- ``GET /v1/files/{id}/content``: the file's bytes, streamed in chunks;
  a :class:`GeneratedFile` is made on the fly, so a 200 MB file never sits
  in memory;
- 404 with an OpenAI-shaped error body for anything else;
- scripted failures (:meth:`StubOpenAI.fail`): 429 or 5xx for the next N
  requests to a path, with ``retry-after-ms: 10`` so the SDK's own retries
  are quick.
"""

from __future__ import annotations

import collections
import collections.abc as c
import contextlib
import dataclasses
import json
import threading
import typing as t

from werkzeug.serving import BaseWSGIServer
from werkzeug.serving import make_server
from werkzeug.serving import WSGIRequestHandler
from werkzeug.wrappers import Request
from werkzeug.wrappers import Response

JSON = dict[str, t.Any]

#: The ``created_at`` of every sample object.
CREATED_AT = 1_767_225_600


@dataclasses.dataclass(frozen=True)
class RecordedRequest:
    """One request the stub received."""

    method: str
    path: str
    query: dict[str, str]


@dataclasses.dataclass(frozen=True)
class GeneratedFile:
    """A JSONL batch output file made on the fly: ``lines`` rows of exactly
    ``line_size`` bytes each (newline included), the n-th (from 1) with
    ``custom_id`` ``request-{n}``.
    """

    lines: int
    line_size: int = 1024
    #: How many lines go into one chunk of the response.
    lines_per_chunk: int = 64

    @property
    def size(self) -> int:
        return self.lines * self.line_size

    def line(self, n: int) -> bytes:
        head = (
            f'{{"id":"batch_req_{n:09d}","custom_id":"request-{n}",'
            f'"response":{{"status_code":200,"request_id":"req_{n:09d}",'
            '"body":{"object":"chat.completion","pad":"'
        )
        tail = '"}},"error":null}\n'
        pad = self.line_size - len(head) - len(tail)
        if pad < 0:
            raise ValueError(f"line_size {self.line_size} is too small")
        return (head + "x" * pad + tail).encode()

    def chunks(self) -> c.Iterator[bytes]:
        for start in range(1, self.lines + 1, self.lines_per_chunk):
            stop = min(start + self.lines_per_chunk, self.lines + 1)
            yield b"".join(self.line(n) for n in range(start, stop))


FileContent = bytes | GeneratedFile


class _QuietHandler(WSGIRequestHandler):
    """Werkzeug's handler without the access log on stderr."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class StubOpenAI:
    """The stub's state, and the WSGI app that serves it.

    Tests add objects and files, script failures, then read
    :attr:`requests`. All of it is safe to use while the server thread
    answers requests.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._objects: dict[str, JSON] = {}
        self._lists: dict[str, list[JSON]] = {
            "/v1/batches": [],
            "/v1/fine_tuning/jobs": [],
        }
        self._files: dict[str, FileContent] = {}
        self._failures: dict[str, collections.deque[int]] = {}
        self._requests: list[RecordedRequest] = []
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    # --- Setup ---------------------------------------------------------------

    def add(self, path: str, obj: JSON) -> JSON:
        """Serve ``obj`` at ``GET path`` (e.g. ``/v1/responses/resp_1``)."""
        with self._lock:
            self._objects[path] = obj
        return obj

    def add_batch(self, obj: JSON) -> JSON:
        """Serve a batch at ``/v1/batches/{id}`` and first in the list."""
        return self._add_listed("/v1/batches", obj)

    def add_fine_tuning_job(self, obj: JSON) -> JSON:
        """Serve a job at ``/v1/fine_tuning/jobs/{id}`` and first in the
        list.
        """
        return self._add_listed("/v1/fine_tuning/jobs", obj)

    def _add_listed(self, collection: str, obj: JSON) -> JSON:
        with self._lock:
            self._objects[f"{collection}/{obj['id']}"] = obj
            items = [o for o in self._lists[collection] if o["id"] != obj["id"]]
            self._lists[collection] = [obj, *items]
        return obj

    def add_file(self, file_id: str, content: FileContent) -> None:
        """Serve ``content`` at ``GET /v1/files/{file_id}/content``."""
        with self._lock:
            self._files[file_id] = content

    def fail(self, path: str, *statuses: int) -> None:
        """Answer the next requests to ``path`` with these statuses, one
        each, before serving it normally again.
        """
        with self._lock:
            self._failures.setdefault(path, collections.deque()).extend(statuses)

    # --- Inspection ------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def requests_to(self, path: str, method: str = "GET") -> list[RecordedRequest]:
        return [r for r in self.requests if r.path == path and r.method == method]

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("the stub is not running")
        return f"http://127.0.0.1:{self._server.server_port}/v1"

    # --- Server ------------------------------------------------------------------

    def start(self) -> None:
        self._server = make_server(
            "127.0.0.1", 0, self, threaded=True, request_handler=_QuietHandler
        )
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="stub-openai",
            daemon=True,
        )
        self._thread.start()

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server = None
        self._thread = None

    # --- WSGI ----------------------------------------------------------------------

    def __call__(
        self, environ: dict[str, t.Any], start_response: t.Any
    ) -> c.Iterable[bytes]:
        request = Request(environ)
        response = self._respond(request)
        return response(environ, start_response)

    def _respond(self, request: Request) -> Response:
        path = request.path
        with self._lock:
            self._requests.append(
                RecordedRequest(request.method, path, dict(request.args.items()))
            )
            failures = self._failures.get(path)
            status = failures.popleft() if failures else None

        if status is not None:
            return _failure(status)

        if request.method != "GET":
            return _error(405, f"{request.method} is not served by the stub", None)

        if path in self._lists:
            return self._list(path, request)

        prefix, suffix = "/v1/files/", "/content"
        if path.startswith(prefix) and path.endswith(suffix):
            return self._file(path[len(prefix) : -len(suffix)])

        with self._lock:
            obj = self._objects.get(path)

        if obj is None:
            return _error(404, f"No object found at {path}.", "not_found")

        return _json(obj)

    def _list(self, collection: str, request: Request) -> Response:
        with self._lock:
            items = list(self._lists[collection])

        after = request.args.get("after")
        limit = request.args.get("limit", 20, type=int)

        if after is not None:
            ids = [o["id"] for o in items]
            if after not in ids:
                return _error(400, f"Invalid 'after': {after!r}", "invalid_cursor")
            items = items[ids.index(after) + 1 :]

        page = items[:limit]
        body: JSON = {
            "object": "list",
            "data": page,
            "has_more": len(items) > limit,
        }
        if collection == "/v1/batches":
            body["first_id"] = page[0]["id"] if page else None
            body["last_id"] = page[-1]["id"] if page else None
        return _json(body)

    def _file(self, file_id: str) -> Response:
        with self._lock:
            content = self._files.get(file_id)

        if content is None:
            return _error(404, f"No such File object: {file_id}", "not_found")

        if isinstance(content, GeneratedFile):
            # No Content-Length: sent with chunked transfer encoding.
            return Response(
                content.chunks(),
                content_type="application/octet-stream",
                direct_passthrough=True,
            )

        def chunks(data: bytes = content, size: int = 4096) -> c.Iterator[bytes]:
            for start in range(0, len(data), size):
                yield data[start : start + size]

        response = Response(
            chunks(), content_type="application/octet-stream", direct_passthrough=True
        )
        response.content_length = len(content)
        return response


def _json(
    body: JSON, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(
        json.dumps(body),
        status=status,
        headers=headers,
        content_type="application/json",
    )


def _error(
    status: int,
    message: str,
    code: str | None,
    *,
    kind: str = "invalid_request_error",
    headers: dict[str, str] | None = None,
) -> Response:
    """An error response shaped like OpenAI's."""
    body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return _json(body, status, headers)


def _failure(status: int) -> Response:
    # retry-after-ms wins over Retry-After in the SDK and keeps retries quick;
    # Retry-After is there because real 429s carry it.
    headers = {"Retry-After": "0", "retry-after-ms": "10"}

    if status == 429:
        return _error(
            429,
            "Rate limit reached for requests.",
            "rate_limit_exceeded",
            kind="requests",
            headers=headers,
        )

    return _error(
        status,
        "The server had an error while processing your request.",
        None,
        kind="server_error",
        headers=headers,
    )


@contextlib.contextmanager
def serve() -> c.Iterator[StubOpenAI]:
    """Run a :class:`StubOpenAI` for the duration of the block."""
    stub = StubOpenAI()
    stub.start()
    try:
        yield stub
    finally:
        stub.close()


# --- Bodies shaped like the SDK's types ----------------------------------------


def batch(
    batch_id: str,
    status: str = "completed",
    *,
    output_file_id: str | None = None,
    error_file_id: str | None = None,
    counts: tuple[int, int] = (0, 0),
) -> JSON:
    """An ``openai.types.Batch``. ``counts`` is (completed, failed)."""
    completed, failed = counts
    body: JSON = {
        "id": batch_id,
        "object": "batch",
        "endpoint": "/v1/chat/completions",
        "model": "gpt-4o-mini",
        "errors": None,
        "input_file_id": f"file-in-{batch_id}",
        "completion_window": "24h",
        "status": status,
        "output_file_id": output_file_id,
        "error_file_id": error_file_id,
        "created_at": CREATED_AT,
        "in_progress_at": CREATED_AT + 10,
        "expires_at": CREATED_AT + 86_400,
        "finalizing_at": None,
        "completed_at": None,
        "failed_at": None,
        "expired_at": None,
        "cancelling_at": None,
        "cancelled_at": None,
        "request_counts": {
            "total": completed + failed,
            "completed": completed,
            "failed": failed,
        },
        "metadata": {"job": "nightly"},
    }
    stamp = {
        "completed": "completed_at",
        "failed": "failed_at",
        "expired": "expired_at",
        "cancelled": "cancelled_at",
    }.get(status)
    if stamp is not None:
        body[stamp] = CREATED_AT + 3600
    return body


def response(response_id: str) -> JSON:
    """An ``openai.types.responses.Response`` of a finished background
    request.
    """
    return {
        "id": response_id,
        "object": "response",
        "created_at": CREATED_AT,
        "status": "completed",
        "background": True,
        "model": "gpt-4o-mini",
        "output": [
            {
                "type": "message",
                "id": f"msg_{response_id}",
                "status": "completed",
                "role": "assistant",
                "content": [
                    {"type": "output_text", "text": "Hello.", "annotations": []}
                ],
            }
        ],
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
    }


def fine_tuning_job(job_id: str, status: str = "succeeded") -> JSON:
    """An ``openai.types.fine_tuning.FineTuningJob``."""
    return {
        "id": job_id,
        "object": "fine_tuning.job",
        "created_at": CREATED_AT,
        "finished_at": CREATED_AT + 3600 if status == "succeeded" else None,
        "model": "gpt-4o-mini-2024-07-18",
        "fine_tuned_model": f"ft:gpt-4o-mini:org::{job_id}",
        "organization_id": "org-test",
        "result_files": [],
        "status": status,
        "validation_file": None,
        "training_file": "file-train",
        "hyperparameters": {"n_epochs": 3, "batch_size": 1},
        "trained_tokens": 1000,
        "seed": 42,
        "error": None,
    }


def eval_run(eval_id: str, run_id: str) -> JSON:
    """An ``openai.types.evals.RunRetrieveResponse``."""
    return {
        "id": run_id,
        "object": "eval.run",
        "eval_id": eval_id,
        "created_at": CREATED_AT,
        "name": "nightly",
        "model": "gpt-4o-mini",
        "status": "completed",
        "data_source": {
            "type": "jsonl",
            "source": {"type": "file_id", "id": "file-eval"},
        },
        "error": {"code": "", "message": ""},
        "per_model_usage": [],
        "per_testing_criteria_results": [],
        "report_url": f"https://platform.openai.com/evaluations/{eval_id}",
        "result_counts": {"errored": 0, "failed": 1, "passed": 9, "total": 10},
        "metadata": None,
    }


def agent_session(session_id: str) -> JSON:
    """An ``openai.types.beta.AgentSession`` waiting for an action."""
    return {
        "id": session_id,
        "object": "agent.session",
        "created_at": CREATED_AT,
        "last_active_at": CREATED_AT + 60,
        "status": "idle",
        "agent": {
            "id": "agent_1",
            "model": "gpt-4o-mini",
            "multi_agent": {"enabled": False},
            "reasoning": {},
            "service_tier": "auto",
            "text": {"format": {"type": "text"}, "verbosity": "medium"},
            "tools": [],
        },
        "environment": {"type": "none"},
        "metadata": {},
        "required_actions": [],
        "vault_ids": [],
    }


def agent_environment(environment_id: str) -> JSON:
    """An ``openai.types.beta.agents.EnvironmentInfo``."""
    return {
        "id": environment_id,
        "object": "agent.environment",
        "status": "ready",
        "type": "openai_hosted",
        "files": [],
        "plugins": [],
        "skills": [],
    }


def safety_alert(alert_id: str) -> JSON:
    """An ``openai.types.safety.SafetyAlert``."""
    return {
        "id": alert_id,
        "object": "safety.alert",
        "created_at": CREATED_AT,
        "error_type": "other",
        "model": "gpt-4o-mini",
        "request_id": "req_1",
        "request_paused": False,
        "response_id": "resp_1",
    }


def safety_case(case_id: str) -> JSON:
    """An ``openai.types.safety.SafetyCase``."""
    return {
        "id": case_id,
        "object": "safety.case",
        "created_at": CREATED_AT,
        "entity_identifier": "user-1234",
        "notice": {"type": "warning"},
    }


# --- Batch result files ---------------------------------------------------------


def ok_row(custom_id: str, n: int = 0) -> JSON:
    """An output file line: the request got a 200."""
    return {
        "id": f"batch_req_{custom_id}",
        "custom_id": custom_id,
        "response": {
            "status_code": 200,
            "request_id": f"req_{custom_id}",
            "body": {"object": "chat.completion", "n": n},
        },
        "error": None,
    }


def http_error_row(custom_id: str, status_code: int = 400) -> JSON:
    """An error file line: the request got an error response."""
    return {
        "id": f"batch_req_{custom_id}",
        "custom_id": custom_id,
        "response": {
            "status_code": status_code,
            "request_id": f"req_{custom_id}",
            "body": {
                "error": {
                    "message": "Invalid value for 'model'.",
                    "type": "invalid_request_error",
                    "param": "model",
                    "code": None,
                }
            },
        },
        "error": None,
    }


def error_row(custom_id: str, code: str = "batch_expired") -> JSON:
    """An error file line: the request never ran."""
    return {
        "id": f"batch_req_{custom_id}",
        "custom_id": custom_id,
        "response": None,
        "error": {
            "code": code,
            "message": "This request could not be executed before the"
            " completion window expired.",
        },
    }


def jsonl(rows: c.Iterable[JSON], *, ensure_ascii: bool = True) -> bytes:
    """Rows as a JSON Lines file, each line ending in a newline."""
    return "".join(
        json.dumps(row, ensure_ascii=ensure_ascii) + "\n" for row in rows
    ).encode()
