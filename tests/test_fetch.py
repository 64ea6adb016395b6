"""Tests for :mod:`flask_openai_webhooks.fetch`, driving the real ``openai``
SDK over HTTP against the stub API of :mod:`tests.stub_openai`.
"""

from __future__ import annotations

import asyncio
import collections.abc as c
import gc
import json
import subprocess
import sys
import time
import typing as t

import httpx2
import openai
import psutil
import pytest
from flask import Flask
from openai.types import Batch as SDKBatch
from openai.types.beta import AgentSession
from openai.types.beta.agents import EnvironmentInfo
from openai.types.evals import RunRetrieveResponse
from openai.types.fine_tuning import FineTuningJob
from openai.types.responses import Response
from openai.types.safety import SafetyAlert
from openai.types.safety import SafetyCase
from openai.types.webhooks import BatchCompletedWebhookEvent
from openai.types.webhooks.batch_completed_webhook_event import Data

from flask_openai_webhooks import models
from flask_openai_webhooks.fetch import afetch_related
from flask_openai_webhooks.fetch import aiter_batch_results
from flask_openai_webhooks.fetch import BatchResultRow
from flask_openai_webhooks.fetch import fetch_related
from flask_openai_webhooks.fetch import iter_batch_results
from flask_openai_webhooks.fetch import MalformedBatchResultError
from flask_openai_webhooks.fetch import MissingEvalIdError
from flask_openai_webhooks.models import parse_event
from flask_openai_webhooks.samples import make_event
from flask_openai_webhooks.signals import batch_completed
from flask_openai_webhooks.testing import post_event

from . import stub_openai as api
from .stub_openai import GeneratedFile
from .stub_openai import RecordedRequest
from .stub_openai import StubOpenAI

MB = 1024 * 1024


@pytest.fixture
def stub() -> c.Iterator[StubOpenAI]:
    with api.serve() as stub:
        yield stub


@pytest.fixture
def openai_client(stub: StubOpenAI) -> c.Iterator[openai.OpenAI]:
    with openai.OpenAI(
        base_url=stub.base_url, api_key="sk-test", max_retries=3
    ) as client:
        yield client


def event(event_type: str, **data: t.Any) -> models.WebhookEvent:
    """A parsed event of ``event_type``, as receivers get it."""
    overrides = {"data": data} if data else {}
    payload = make_event(event_type, allow_unknown=True, **overrides)
    return parse_event(json.dumps(payload))


def completed(batch_id: str) -> models.BatchCompletedWebhookEvent:
    """A ``batch.completed`` event, typed so that :func:`fetch_related`
    is known to return the SDK's ``Batch``.
    """
    parsed = event("batch.completed", id=batch_id)
    assert isinstance(parsed, models.BatchCompletedWebhookEvent)
    return parsed


def gets(*paths: str) -> list[RecordedRequest]:
    return [RecordedRequest("GET", path, {}) for path in paths]


# --- Importing -----------------------------------------------------------------


def test_import_does_not_load_openai() -> None:
    code = (
        "import sys, flask_openai_webhooks, flask_openai_webhooks.fetch;"
        " print('openai' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


# --- fetch_related: one GET per family -------------------------------------------

#: (path, body, SDK type) of what each kind of event points at.
FAMILIES: dict[str, tuple[str, dict[str, t.Any], type[t.Any]]] = {
    "batch": ("/v1/batches/batch_1", api.batch("batch_1"), SDKBatch),
    "response": ("/v1/responses/resp_1", api.response("resp_1"), Response),
    "fine_tuning.job": (
        "/v1/fine_tuning/jobs/ftjob-1",
        api.fine_tuning_job("ftjob-1"),
        FineTuningJob,
    ),
    "eval.run": (
        "/v1/evals/eval_1/runs/evalrun_1",
        api.eval_run("eval_1", "evalrun_1"),
        RunRetrieveResponse,
    ),
    "agent.session": (
        "/v1/agents/sessions/sess_1",
        api.agent_session("sess_1"),
        AgentSession,
    ),
    "agent.environment": (
        "/v1/agents/environments/env_1",
        api.agent_environment("env_1"),
        EnvironmentInfo,
    ),
    "safety.alert": (
        "/v1/safety/alerts/alert_1",
        api.safety_alert("alert_1"),
        SafetyAlert,
    ),
    "safety.case": ("/v1/safety/cases/case_1", api.safety_case("case_1"), SafetyCase),
}

#: Every event type that points at something, with the kind it points at.
RELATED_TYPES = [
    ("batch.cancelled", "batch"),
    ("batch.completed", "batch"),
    ("batch.expired", "batch"),
    ("batch.failed", "batch"),
    ("response.cancelled", "response"),
    ("response.completed", "response"),
    ("response.failed", "response"),
    ("response.incomplete", "response"),
    ("fine_tuning.job.cancelled", "fine_tuning.job"),
    ("fine_tuning.job.failed", "fine_tuning.job"),
    ("fine_tuning.job.succeeded", "fine_tuning.job"),
    ("eval.run.canceled", "eval.run"),
    ("eval.run.failed", "eval.run"),
    ("eval.run.succeeded", "eval.run"),
    ("agent.session.action_required", "agent.session"),
    ("agent.session.created", "agent.session"),
    ("agent.session.failed", "agent.session"),
    ("agent.session.idle", "agent.session"),
    ("agent.session.in_progress", "agent.session"),
    ("agent.environment.expired", "agent.environment"),
    ("agent.environment.failed", "agent.environment"),
    ("agent.environment.ready", "agent.environment"),
    ("agent.environment.suspended", "agent.environment"),
    ("safety.alert.created", "safety.alert"),
    ("safety.org_alert.created", "safety.alert"),
    ("safety.warning_issued", "safety.case"),
    ("safety.deactivation_issued", "safety.case"),
]


def add_family(stub: StubOpenAI, kind: str) -> tuple[str, str, type[t.Any]]:
    """Serve the object of ``kind``; return its path, ID and SDK type."""
    path, body, sdk_type = FAMILIES[kind]
    stub.add(path, body)
    return path, body["id"], sdk_type


@pytest.mark.parametrize(("event_type", "kind"), RELATED_TYPES)
def test_fetch_related_gets_the_object_once(
    stub: StubOpenAI, openai_client: openai.OpenAI, event_type: str, kind: str
) -> None:
    path, object_id, sdk_type = add_family(stub, kind)
    kwargs = {"eval_id": "eval_1"} if kind == "eval.run" else {}

    result = fetch_related(event(event_type, id=object_id), openai_client, **kwargs)

    assert result is not None
    assert type(result) is sdk_type
    assert result.id == object_id
    assert stub.requests == gets(path)


def test_fetch_related_accepts_sdk_events(
    stub: StubOpenAI, openai_client: openai.OpenAI
) -> None:
    path, batch_id, _ = add_family(stub, "batch")
    sdk_event = BatchCompletedWebhookEvent.model_validate(
        make_event("batch.completed", data={"id": batch_id})
    )

    result = fetch_related(sdk_event, openai_client)

    assert isinstance(result, SDKBatch)
    assert result.status == "completed"
    assert stub.requests == gets(path)


def test_fetch_related_passes_kwargs_to_the_sdk(
    stub: StubOpenAI, openai_client: openai.OpenAI
) -> None:
    path, batch_id, _ = add_family(stub, "batch")

    result = fetch_related(
        completed(batch_id),
        openai_client,
        extra_query={"trace": "on"},
        timeout=5.0,
    )

    assert result.id == batch_id
    assert stub.requests == [RecordedRequest("GET", path, {"trace": "on"})]


def test_eval_run_without_eval_id_is_a_clear_error(
    stub: StubOpenAI, openai_client: openai.OpenAI
) -> None:
    with pytest.raises(MissingEvalIdError, match=r"eval_id=\.\.\.") as info:
        fetch_related(event("eval.run.succeeded", id="evalrun_1"), openai_client)

    assert isinstance(info.value, TypeError)
    assert "evalrun_1" in str(info.value)
    assert "client.evals.create()" in str(info.value)
    assert stub.requests == []


@pytest.mark.parametrize(
    "event_type",
    [
        "video.completed",
        "brand.new.thing",
        "realtime.call.incoming",
        "live.call.incoming",
        "live.transport.incoming",
        "live.transport.connected",
        "safety_identifier.blocked",
    ],
)
def test_nothing_to_fetch_returns_none(
    stub: StubOpenAI, openai_client: openai.OpenAI, event_type: str
) -> None:
    assert fetch_related(event(event_type), openai_client) is None
    assert stub.requests == []


def test_event_without_an_id_is_an_error(
    stub: StubOpenAI, openai_client: openai.OpenAI
) -> None:
    # The SDK's unwrap() builds events that do not match their model without
    # validation, e.g. with a number for data.id.
    wrong: dict[str, t.Any] = {"id": 123}
    broken = BatchCompletedWebhookEvent.model_construct(
        id="evt_1",
        created_at=0,
        type="batch.completed",
        data=Data.model_construct(**wrong),
    )

    with pytest.raises(ValueError, match="batch.completed event has no string data.id"):
        fetch_related(broken, openai_client)

    assert stub.requests == []


def test_a_stream_is_refused(stub: StubOpenAI, openai_client: openai.OpenAI) -> None:
    with pytest.raises(TypeError, match="stream=True"):
        fetch_related(
            event("response.completed", id="resp_1"), openai_client, stream=True
        )

    assert stub.requests == []


# --- fetch_related: errors and the SDK's retries -----------------------------------


def test_not_found_propagates_and_is_not_remembered(
    stub: StubOpenAI, openai_client: openai.OpenAI
) -> None:
    app = Flask(__name__)
    batch_event = completed("batch_1")

    with app.app_context():
        with pytest.raises(openai.NotFoundError) as info:
            fetch_related(batch_event, openai_client)

        assert info.value.status_code == 404
        assert info.value.code == "not_found"
        # 404 is not retried by the SDK.
        assert stub.requests == gets("/v1/batches/batch_1")

        add_family(stub, "batch")
        assert fetch_related(batch_event, openai_client).id == "batch_1"

    assert stub.requests == gets("/v1/batches/batch_1", "/v1/batches/batch_1")


def test_rate_limited_then_ok_succeeds_after_the_sdks_retry(
    stub: StubOpenAI, openai_client: openai.OpenAI
) -> None:
    path, response_id, _ = add_family(stub, "response")
    stub.fail(path, 429)

    result = fetch_related(event("response.completed", id=response_id), openai_client)

    assert isinstance(result, Response)
    assert result.output_text == "Hello."
    assert stub.requests == gets(path, path)


def test_server_errors_then_ok_succeeds_after_the_sdks_retries(
    stub: StubOpenAI, openai_client: openai.OpenAI
) -> None:
    path, job_id, _ = add_family(stub, "fine_tuning.job")
    stub.fail(path, 500, 500)

    result = fetch_related(event("fine_tuning.job.succeeded", id=job_id), openai_client)

    assert isinstance(result, FineTuningJob)
    assert result.status == "succeeded"
    assert stub.requests == gets(path, path, path)


def test_server_errors_beyond_max_retries_propagate(stub: StubOpenAI) -> None:
    path, batch_id, _ = add_family(stub, "batch")
    stub.fail(path, 500, 503)

    with openai.OpenAI(
        base_url=stub.base_url, api_key="sk-test", max_retries=1
    ) as client:
        with pytest.raises(openai.InternalServerError) as info:
            fetch_related(event("batch.completed", id=batch_id), client)

    assert info.value.status_code == 503
    assert stub.requests == gets(path, path)


# --- fetch_related: once per delivery ---------------------------------------------


def test_memoised_within_one_app_context(
    stub: StubOpenAI, openai_client: openai.OpenAI
) -> None:
    path, batch_id, _ = add_family(stub, "batch")
    batch_event = completed(batch_id)
    app = Flask(__name__)

    with app.app_context():
        first = fetch_related(batch_event, openai_client)
        second = fetch_related(batch_event, openai_client)
        # Another event about the same batch, in the same delivery.
        third = fetch_related(event("batch.failed", id=batch_id), openai_client)

    assert second is first
    assert third is first
    assert stub.requests == gets(path)

    with app.app_context():
        again = fetch_related(batch_event, openai_client)

    assert again is not first
    assert again == first
    assert stub.requests == gets(path, path)


def test_not_memoised_outside_an_app_context(
    stub: StubOpenAI, openai_client: openai.OpenAI
) -> None:
    path, batch_id, _ = add_family(stub, "batch")
    batch_event = completed(batch_id)

    fetch_related(batch_event, openai_client)
    fetch_related(batch_event, openai_client)

    assert stub.requests == gets(path, path)


def test_memo_key_includes_client_and_kwargs(stub: StubOpenAI) -> None:
    path, batch_id, _ = add_family(stub, "batch")
    batch_event = completed(batch_id)
    app = Flask(__name__)

    with (
        openai.OpenAI(base_url=stub.base_url, api_key="sk-test") as one,
        openai.OpenAI(base_url=stub.base_url, api_key="sk-test") as two,
        app.app_context(),
    ):
        fetch_related(batch_event, one)
        fetch_related(batch_event, two)
        # Equal dicts are the same key; a different dict is another one.
        fetch_related(batch_event, one, extra_headers={"x-a": "1", "x-b": "2"})
        fetch_related(batch_event, one, extra_headers={"x-b": "2", "x-a": "1"})
        fetch_related(batch_event, one, extra_headers={"x-a": "other"})
        # An unhashable value that is not a dict, list or set: not memoised.
        timeout = httpx2.Timeout(5.0)
        fetch_related(batch_event, one, timeout=timeout)
        fetch_related(batch_event, one, timeout=timeout)

    assert stub.requests == gets(*[path] * 6)


def test_two_receivers_of_one_delivery_share_one_get(
    stub: StubOpenAI, openai_client: openai.OpenAI, app: Flask
) -> None:
    path, batch_id, _ = add_family(stub, "batch")
    fetched: list[SDKBatch] = []

    def first(
        sender: Flask, event: models.BatchCompletedWebhookEvent, **_: t.Any
    ) -> None:
        fetched.append(fetch_related(event, openai_client))

    def second(
        sender: Flask, event: models.BatchCompletedWebhookEvent, **_: t.Any
    ) -> None:
        fetched.append(fetch_related(event, openai_client))

    with (
        batch_completed.connected_to(first, sender=app),
        batch_completed.connected_to(second, sender=app),
    ):
        test_client = app.test_client()
        response = post_event(test_client, "batch.completed", data={"id": batch_id})
        assert response.status_code == 200
        assert len(fetched) == 2
        assert fetched[0] is fetched[1]
        assert stub.requests == gets(path)

        # The next delivery is another request: a fresh fetch.
        response = post_event(test_client, "batch.completed", data={"id": batch_id})
        assert response.status_code == 200

    assert len(fetched) == 4
    assert fetched[2] is fetched[3]
    assert fetched[2] is not fetched[0]
    assert stub.requests == gets(path, path)


# --- afetch_related --------------------------------------------------------------


def test_afetch_related_with_the_async_client(stub: StubOpenAI) -> None:
    batch_path, batch_id, _ = add_family(stub, "batch")
    run_path, run_id, _ = add_family(stub, "eval.run")
    session_path, session_id, _ = add_family(stub, "agent.session")
    stub.fail(batch_path, 429)
    app = Flask(__name__)

    async def main() -> list[t.Any]:
        async with openai.AsyncOpenAI(
            base_url=stub.base_url, api_key="sk-test", max_retries=2
        ) as client:
            with app.app_context():
                batch_event = completed(batch_id)
                return [
                    await afetch_related(batch_event, client),
                    await afetch_related(batch_event, client),
                    await afetch_related(
                        event("eval.run.succeeded", id=run_id), client, eval_id="eval_1"
                    ),
                    await afetch_related(
                        event("agent.session.idle", id=session_id), client
                    ),
                    await afetch_related(event("video.completed"), client),
                ]

    batch, again, run, session, nothing = asyncio.run(main())

    assert isinstance(batch, SDKBatch)
    assert again is batch
    assert isinstance(run, RunRetrieveResponse)
    assert run.eval_id == "eval_1"
    assert isinstance(session, AgentSession)
    assert nothing is None
    # The 429 was retried by the SDK, then the batch was remembered.
    assert stub.requests == gets(batch_path, batch_path, run_path, session_path)


def test_afetch_related_eval_run_without_eval_id(stub: StubOpenAI) -> None:
    async def main() -> None:
        async with openai.AsyncOpenAI(
            base_url=stub.base_url, api_key="sk-test"
        ) as client:
            await afetch_related(event("eval.run.failed", id="evalrun_1"), client)

    with pytest.raises(MissingEvalIdError, match="eval_id="):
        asyncio.run(main())

    assert stub.requests == []


def test_afetch_related_not_found(stub: StubOpenAI) -> None:
    async def main() -> None:
        async with openai.AsyncOpenAI(
            base_url=stub.base_url, api_key="sk-test"
        ) as client:
            await afetch_related(event("safety.alert.created", id="alert_x"), client)

    with pytest.raises(openai.NotFoundError):
        asyncio.run(main())

    assert stub.requests == gets("/v1/safety/alerts/alert_x")


# --- Batch results ------------------------------------------------------------------


def serve_completed_batch(stub: StubOpenAI) -> dict[str, t.Any]:
    """A completed batch of 5 requests: 3 succeeded, 1 got a 400 and 1
    never ran.
    """
    stub.add_file(
        "file-out-1", api.jsonl(api.ok_row(f"request-{n}", n) for n in (1, 2, 4))
    )
    stub.add_file(
        "file-err-1",
        api.jsonl([api.http_error_row("request-3"), api.error_row("request-5")]),
    )
    return stub.add_batch(
        api.batch(
            "batch_1",
            output_file_id="file-out-1",
            error_file_id="file-err-1",
            counts=(3, 2),
        )
    )


@pytest.mark.parametrize("form", ["sdk", "ours", "id"])
def test_completed_batch_results(
    stub: StubOpenAI, openai_client: openai.OpenAI, form: str
) -> None:
    body = serve_completed_batch(stub)
    forms: dict[str, SDKBatch | models.Batch | str] = {
        "sdk": SDKBatch.model_validate(body),
        "ours": models.Batch.model_validate(body),
        "id": "batch_1",
    }
    batch = forms[form]

    rows = list(iter_batch_results(openai_client, batch))

    assert [r.custom_id for r in rows] == [
        "request-1",
        "request-2",
        "request-4",
        "request-3",
        "request-5",
    ]
    assert [r.ok for r in rows] == [True, True, True, False, False]
    assert len(rows) == body["request_counts"]["total"]
    assert sum(r.ok for r in rows) == body["request_counts"]["completed"]

    ok = rows[2]
    assert ok.id == "batch_req_request-4"
    assert ok.response is not None
    assert ok.response.status_code == 200
    assert ok.response.request_id == "req_request-4"
    assert ok.response.body == {"object": "chat.completion", "n": 4}
    assert ok.error is None

    http_error = rows[3]
    assert http_error.response is not None
    assert http_error.response.status_code == 400
    assert http_error.response.body["error"]["param"] == "model"

    never_ran = rows[4]
    assert never_ran.response is None
    assert never_ran.error is not None
    assert never_ran.error.code == "batch_expired"

    files = gets("/v1/files/file-out-1/content", "/v1/files/file-err-1/content")
    if form == "id":
        assert stub.requests == gets("/v1/batches/batch_1") + files
    else:
        assert stub.requests == files


def test_rows_are_frozen_and_keep_extra_fields() -> None:
    row = BatchResultRow.model_validate_json(
        json.dumps({**api.ok_row("request-1"), "new_field": 1})
    )

    assert row.model_extra == {"new_field": 1}
    with pytest.raises(ValueError, match="frozen"):
        row.custom_id = "other"  # type: ignore[misc]


def test_expired_batch_gives_partial_output_and_errors(
    stub: StubOpenAI, openai_client: openai.OpenAI
) -> None:
    stub.add_file("file-out-2", api.jsonl([api.ok_row("a"), api.ok_row("b")]))
    stub.add_file("file-err-2", api.jsonl(api.error_row(c) for c in "cde"))
    stub.add_batch(
        api.batch(
            "batch_2",
            "expired",
            output_file_id="file-out-2",
            error_file_id="file-err-2",
            counts=(2, 3),
        )
    )

    rows = list(iter_batch_results(openai_client, "batch_2"))

    assert [(r.custom_id, r.ok) for r in rows] == [
        ("a", True),
        ("b", True),
        ("c", False),
        ("d", False),
        ("e", False),
    ]
    assert {r.error.code for r in rows if r.error is not None} == {"batch_expired"}


def test_failed_batch_with_only_an_error_file(
    stub: StubOpenAI, openai_client: openai.OpenAI
) -> None:
    stub.add_file(
        "file-err-3",
        api.jsonl(
            [api.error_row("x", "invalid_request"), api.http_error_row("y", 422)]
        ),
    )
    stub.add_batch(
        api.batch("batch_3", "failed", error_file_id="file-err-3", counts=(0, 2))
    )

    rows = list(iter_batch_results(openai_client, "batch_3"))

    assert [r.custom_id for r in rows] == ["x", "y"]
    assert not any(r.ok for r in rows)
    assert stub.requests == gets("/v1/batches/batch_3", "/v1/files/file-err-3/content")


def test_batch_without_files_yields_nothing(
    stub: StubOpenAI, openai_client: openai.OpenAI
) -> None:
    stub.add_batch(api.batch("batch_4", "cancelled"))

    assert list(iter_batch_results(openai_client, "batch_4")) == []
    assert stub.requests == gets("/v1/batches/batch_4")


@pytest.mark.parametrize(
    "status", ["validating", "in_progress", "finalizing", "cancelling"]
)
def test_unfinished_batch_is_refused(
    stub: StubOpenAI, openai_client: openai.OpenAI, status: str
) -> None:
    stub.add_batch(api.batch("batch_5", status, output_file_id="file-out-5"))

    with pytest.raises(ValueError, match=f"batch_5 is {status}"):
        list(iter_batch_results(openai_client, "batch_5"))

    assert stub.requests == gets("/v1/batches/batch_5")


def test_batch_id_is_fetched_once_per_delivery(
    stub: StubOpenAI, openai_client: openai.OpenAI
) -> None:
    serve_completed_batch(stub)
    app = Flask(__name__)

    with app.app_context():
        batch = fetch_related(completed("batch_1"), openai_client)
        rows = list(iter_batch_results(openai_client, "batch_1"))

    assert batch.id == "batch_1"
    assert len(rows) == 5
    assert [r.path for r in stub.requests].count("/v1/batches/batch_1") == 1


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b'{"id": "batch_req_3", "custom_id": ', "not valid JSON"),
        (b"[1, 2, 3]", "not a JSON object"),
        (b'{"id": "batch_req_3"}', "custom_id: Field required"),
        (
            b'{"id": "r3", "custom_id": "c", "response": {"status_code": "x"}}',
            "response.status_code",
        ),
    ],
)
def test_malformed_line_names_file_and_line(
    stub: StubOpenAI, openai_client: openai.OpenAI, line: bytes, reason: str
) -> None:
    # Line 3 is blank: skipped, but counted.
    content = api.jsonl([api.ok_row("a"), api.ok_row("b")]) + b"\n" + line + b"\n"
    stub.add_file("file-bad", content)
    stub.add_batch(api.batch("batch_bad", output_file_id="file-bad"))
    rows: list[BatchResultRow] = []

    with pytest.raises(MalformedBatchResultError) as info:
        for row in iter_batch_results(openai_client, "batch_bad"):
            rows.append(row)

    error = info.value
    assert isinstance(error, ValueError)
    assert error.file_id == "file-bad"
    assert error.line_number == 4
    assert "line 4 of batch result file 'file-bad'" in str(error)
    assert reason in str(error)
    assert [r.custom_id for r in rows] == ["a", "b"]


def test_lines_split_on_newline_only(
    stub: StubOpenAI, openai_client: openai.OpenAI
) -> None:
    # JSON allows U+2028 and U+2029 unescaped in strings; str.splitlines()
    # (and so the SDK's iter_lines()) would cut these rows in two.
    rows = [api.ok_row("a"), api.ok_row("b"), api.ok_row("c")]
    rows[0]["response"]["body"]["text"] = "one\u2028two\u2029three\x85four"
    content = api.jsonl(rows, ensure_ascii=False)
    # CRLF line ends, and no newline after the last line.
    content = content.replace(b"\n", b"\r\n").removesuffix(b"\r\n")
    stub.add_file("file-u", content)
    stub.add_batch(api.batch("batch_u", output_file_id="file-u"))

    got = list(iter_batch_results(openai_client, "batch_u"))

    assert [r.custom_id for r in got] == ["a", "b", "c"]
    assert got[0].response is not None
    assert got[0].response.body["text"] == "one\u2028two\u2029three\x85four"


def test_missing_file_propagates_not_found(
    stub: StubOpenAI, openai_client: openai.OpenAI
) -> None:
    stub.add_batch(api.batch("batch_6", output_file_id="file-gone"))

    with pytest.raises(openai.NotFoundError):
        list(iter_batch_results(openai_client, "batch_6"))


def test_file_download_is_retried_by_the_sdk(
    stub: StubOpenAI, openai_client: openai.OpenAI
) -> None:
    body = serve_completed_batch(stub)
    stub.fail("/v1/files/file-out-1/content", 500)

    rows = list(iter_batch_results(openai_client, SDKBatch.model_validate(body)))

    assert len(rows) == 5
    assert stub.requests == gets(
        "/v1/files/file-out-1/content",
        "/v1/files/file-out-1/content",
        "/v1/files/file-err-1/content",
    )


def test_aiter_batch_results(stub: StubOpenAI) -> None:
    serve_completed_batch(stub)

    async def main() -> list[BatchResultRow]:
        async with openai.AsyncOpenAI(
            base_url=stub.base_url, api_key="sk-test"
        ) as client:
            return [row async for row in aiter_batch_results(client, "batch_1")]

    rows = asyncio.run(main())

    assert [(r.custom_id, r.ok) for r in rows] == [
        ("request-1", True),
        ("request-2", True),
        ("request-4", True),
        ("request-3", False),
        ("request-5", False),
    ]
    assert stub.requests == gets(
        "/v1/batches/batch_1",
        "/v1/files/file-out-1/content",
        "/v1/files/file-err-1/content",
    )


def test_aiter_batch_results_malformed_line(stub: StubOpenAI) -> None:
    stub.add_file("file-bad", api.jsonl([api.ok_row("a")]) + b"not json\n")
    stub.add_batch(api.batch("batch_bad", output_file_id="file-bad"))

    async def main() -> list[str]:
        seen = []
        async with openai.AsyncOpenAI(
            base_url=stub.base_url, api_key="sk-test"
        ) as client:
            async for row in aiter_batch_results(client, "batch_bad"):
                seen.append(row.custom_id)
        return seen

    with pytest.raises(MalformedBatchResultError, match="line 2 of batch result file"):
        asyncio.run(main())


@pytest.mark.timeout(240)
def test_200_mb_output_file_streams_in_bounded_memory(
    stub: StubOpenAI, openai_client: openai.OpenAI
) -> None:
    """Memory, not speed: RSS may not grow by 50 MB while 200 MB of rows
    stream through (reading the file whole grows it by about 230 MB).
    Takes about 1.5 s on a 2-vCPU machine; the timeout is only a backstop.
    """
    big = GeneratedFile(lines=200 * 1024, line_size=1024)
    assert big.size == 200 * MB
    stub.add_file("file-big", big)
    stub.add_batch(api.batch("batch_big", output_file_id="file-big"))
    process = psutil.Process()
    gc.collect()
    before = process.memory_info().rss
    peak = before
    count = 0
    last = ""
    started = time.monotonic()

    for row in iter_batch_results(openai_client, "batch_big"):
        count += 1
        last = row.custom_id
        if count % 5000 == 0:
            peak = max(peak, process.memory_info().rss)

    gc.collect()
    after = process.memory_info().rss
    elapsed = time.monotonic() - started
    growth = (peak - before) / MB
    print(f"200 MB streamed in {elapsed:.1f} s; peak RSS growth {growth:.1f} MB")

    assert count == big.lines
    assert last == f"request-{big.lines}"
    assert peak - before < 50 * MB
    assert after - before < 50 * MB


# --- The stub's list endpoints (used by reconcile) ----------------------------


def test_batches_list_paginates(stub: StubOpenAI, openai_client: openai.OpenAI) -> None:
    for n in range(1, 6):
        stub.add_batch(api.batch(f"batch_{n}"))

    page = openai_client.batches.list(limit=2)
    ids = [b.id for b in page]

    assert ids == ["batch_5", "batch_4", "batch_3", "batch_2", "batch_1"]
    assert [r.query for r in stub.requests_to("/v1/batches")] == [
        {"limit": "2"},
        {"limit": "2", "after": "batch_4"},
        {"limit": "2", "after": "batch_2"},
    ]
    assert page.has_more is True


def test_fine_tuning_jobs_list_paginates(
    stub: StubOpenAI, openai_client: openai.OpenAI
) -> None:
    for n in range(1, 4):
        stub.add_fine_tuning_job(api.fine_tuning_job(f"ftjob-{n}"))

    jobs = list(openai_client.fine_tuning.jobs.list(limit=2))

    assert [j.id for j in jobs] == ["ftjob-3", "ftjob-2", "ftjob-1"]
    assert all(isinstance(j, FineTuningJob) for j in jobs)
    assert len(stub.requests_to("/v1/fine_tuning/jobs")) == 2
