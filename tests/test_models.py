from __future__ import annotations

import inspect
import json
import types
import typing as t

import openai.types
import openai.types.batch
import openai.types.batch_usage
import openai.types.webhooks
import pydantic
import pytest
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from openai._models import construct_type

from flask_openai_webhooks import models
from flask_openai_webhooks.errors import WebhookPayloadError
from flask_openai_webhooks.models import EVENT_TYPES
from flask_openai_webhooks.models import parse_event
from flask_openai_webhooks.models import UnknownWebhookEvent
from flask_openai_webhooks.samples import make_event
from flask_openai_webhooks.samples import sip_headers

SDK_UNION_MEMBERS: tuple[type[pydantic.BaseModel], ...] = t.get_args(
    t.get_args(openai.types.webhooks.UnwrapWebhookEvent)[0]
)
#: Event models the SDK exports without putting them in its union.
SDK_OUTSIDE_UNION = (openai.types.webhooks.SafetyIdentifierBlockedWebhookEvent,)
SDK_EVENT_CLASSES = SDK_UNION_MEMBERS + SDK_OUTSIDE_UNION
TYPES = sorted(EVENT_TYPES)

BATCH_FAMILY: list[tuple[type[pydantic.BaseModel], type[pydantic.BaseModel]]] = [
    (models.Batch, openai.types.Batch),
    (models.Errors, openai.types.batch.Errors),
    (models.BatchError, openai.types.BatchError),
    (models.BatchRequestCounts, openai.types.BatchRequestCounts),
    (models.BatchUsage, openai.types.BatchUsage),
    (models.InputTokensDetails, openai.types.batch_usage.InputTokensDetails),
    (models.OutputTokensDetails, openai.types.batch_usage.OutputTokensDetails),
]


def type_of(cls: type[pydantic.BaseModel]) -> str:
    """The ``type`` string of an event class, read from its Literal."""
    (value,) = t.get_args(cls.model_fields["type"].annotation)
    assert isinstance(value, str)
    return value


def sdk_class(event_type: str) -> type[pydantic.BaseModel]:
    for cls in SDK_EVENT_CLASSES:
        if type_of(cls) == event_type:
            return cls

    raise LookupError(event_type)


def sdk_parse(payload: dict[str, t.Any]) -> pydantic.BaseModel:
    """Parse a payload the way ``client.webhooks.unwrap()`` does, or with
    the class itself for a model outside the SDK's union.
    """
    if payload["type"] in {type_of(cls) for cls in SDK_OUTSIDE_UNION}:
        return sdk_class(payload["type"]).model_validate(payload)

    result = construct_type(
        type_=openai.types.webhooks.UnwrapWebhookEvent, value=payload
    )
    assert isinstance(result, pydantic.BaseModel)
    return result


def shape(annotation: t.Any) -> t.Any:
    """A comparable description of an annotation: unions as sorted member
    lists (``Optional[X]`` and ``X | None`` alike), Literal values, list and
    dict item types, and pydantic models as their fields, recursively.
    """
    origin = t.get_origin(annotation)
    args = t.get_args(annotation)

    if origin is t.Union or origin is types.UnionType:
        return ["union", sorted((shape(a) for a in args), key=repr)]

    if origin is t.Literal:
        return ["literal", sorted(args)]

    if origin in (list, dict):
        return [origin.__name__, [shape(a) for a in args]]

    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        return model_shape(annotation)

    return annotation


def model_shape(cls: type[pydantic.BaseModel]) -> dict[str, t.Any]:
    """Field names, required-ness, defaults and annotation shapes of a
    model. The SDK's per-event classes named ``Data`` are shared per family
    here as ``...EventData``, so those names are not compared.
    """
    data_class = cls.__name__ == "Data" or cls.__name__.endswith("EventData")
    return {
        "name": None if data_class else cls.__name__,
        "fields": {
            name: {
                "required": field.is_required(),
                "default": repr(field.default),
                "annotation": shape(field.annotation),
            }
            for name, field in cls.model_fields.items()
        },
    }


def all_models() -> list[type[pydantic.BaseModel]]:
    return [
        obj
        for obj in vars(models).values()
        if inspect.isclass(obj)
        and issubclass(obj, pydantic.BaseModel)
        and obj.__module__ == models.__name__
    ]


def optional_paths(cls: type[pydantic.BaseModel]) -> list[tuple[str, ...]]:
    """Paths of the fields that are not required in a model and its nested
    models.
    """
    paths: list[tuple[str, ...]] = []

    for name, field in cls.model_fields.items():
        if not field.is_required():
            paths.append((name,))
        elif isinstance(field.annotation, type) and issubclass(
            field.annotation, pydantic.BaseModel
        ):
            paths.extend((name, *p) for p in optional_paths(field.annotation))

    return paths


# --- Structure ----------------------------------------------------------------


def test_sdk_union_members_are_all_known() -> None:
    """Fails when a newer SDK adds an event type we do not model yet."""
    sdk_types = {type_of(cls) for cls in SDK_UNION_MEMBERS}
    assert len(sdk_types) == 31
    assert sdk_types - set(EVENT_TYPES) == set()


def test_sdk_exported_event_models_are_all_known() -> None:
    """Also catches event models the SDK exports outside its union."""
    exported = {
        type_of(obj)
        for name, obj in vars(openai.types.webhooks).items()
        if name.endswith("WebhookEvent")
        and inspect.isclass(obj)
        and issubclass(obj, pydantic.BaseModel)
    }
    assert exported == set(EVENT_TYPES)
    assert len(EVENT_TYPES) == 32


def test_event_types_mapping() -> None:
    assert isinstance(EVENT_TYPES, types.MappingProxyType)
    assert all(type_of(cls) == key for key, cls in EVENT_TYPES.items())

    with pytest.raises(TypeError):
        EVENT_TYPES["video.completed"] = UnknownWebhookEvent  # type: ignore[index]


def test_webhook_event_union_matches_event_types() -> None:
    members = set(t.get_args(models.WebhookEvent))
    assert members == {*EVENT_TYPES.values(), UnknownWebhookEvent}


@pytest.mark.parametrize("event_type", TYPES)
def test_event_class_matches_sdk(event_type: str) -> None:
    ours = EVENT_TYPES[event_type]
    sdk = sdk_class(event_type)
    assert ours.__name__ == sdk.__name__
    assert model_shape(ours) == model_shape(sdk)


@pytest.mark.parametrize(
    ("ours", "sdk"), BATCH_FAMILY, ids=[ours.__name__ for ours, _ in BATCH_FAMILY]
)
def test_batch_class_matches_sdk(
    ours: type[pydantic.BaseModel], sdk: type[pydantic.BaseModel]
) -> None:
    assert ours.__name__ == sdk.__name__
    assert model_shape(ours) == model_shape(sdk)


def test_batch_errors_alias() -> None:
    assert models.BatchErrors is models.Errors


def test_nested_models_keep_sdk_names() -> None:
    fields = models.RealtimeCallIncomingEventData.model_fields
    assert t.get_args(fields["sip_headers"].annotation) == (models.DataSipHeader,)
    fields = models.AgentSessionCreatedEventData.model_fields
    assert fields["connect"].annotation == models.DataConnect | None
    fields = models.AgentSessionActionRequiredEventData.model_fields
    assert fields["required_action"].annotation is models.DataRequiredAction


@pytest.mark.parametrize("cls", all_models(), ids=lambda cls: cls.__name__)
def test_model_config(cls: type[pydantic.BaseModel]) -> None:
    assert cls.model_config["extra"] == "allow"
    assert cls.model_config["frozen"] is True
    assert cls.model_config["use_attribute_docstrings"] is True
    # ``from __future__ import annotations``: every annotation was resolved.
    assert cls.__pydantic_complete__


@pytest.mark.parametrize(
    ("ours", "sdk"),
    [(EVENT_TYPES[name], sdk_class(name)) for name in TYPES] + BATCH_FAMILY,
    ids=[*TYPES, *(ours.__name__ for ours, _ in BATCH_FAMILY)],
)
def test_documented_like_sdk(
    ours: type[pydantic.BaseModel], sdk: type[pydantic.BaseModel]
) -> None:
    """Every field the SDK documents is documented here too, nested models
    included.
    """
    pairs = [(ours, sdk)]

    while pairs:
        ours, sdk = pairs.pop()

        for name, sdk_field in sdk.model_fields.items():
            field = ours.model_fields[name]

            if sdk_field.description:
                assert field.description, f"{ours.__name__}.{name}"

            nested = [
                (a, b)
                for a, b in zip(
                    t.get_args(field.annotation) or (field.annotation,),
                    t.get_args(sdk_field.annotation) or (sdk_field.annotation,),
                    strict=True,
                )
                if inspect.isclass(a) and issubclass(a, pydantic.BaseModel)
            ]
            pairs.extend(nested)


# --- Parsing known types ------------------------------------------------------


@pytest.mark.parametrize("event_type", TYPES)
def test_parse_each_type(event_type: str) -> None:
    payload = make_event(event_type)
    event = parse_event(json.dumps(payload).encode())
    assert type(event) is EVENT_TYPES[event_type]
    assert event.type == event_type
    assert event.id == payload["id"]
    assert event.model_dump() == payload


@pytest.mark.parametrize("event_type", TYPES)
def test_same_as_sdk(event_type: str) -> None:
    payload = make_event(event_type)
    ours = parse_event(json.dumps(payload))
    sdk = sdk_parse(payload)
    assert type(ours).__name__ == type(sdk).__name__
    assert ours.model_dump() == sdk.model_dump()
    assert ours.model_dump_json() == sdk.model_dump_json()


@pytest.mark.parametrize("event_type", TYPES)
def test_samples_pass_sdk_strict_validation(event_type: str) -> None:
    payload = make_event(event_type)
    sdk_class(event_type).model_validate(payload, strict=True)
    sdk_class(event_type).model_validate_json(json.dumps(payload), strict=True)


@pytest.mark.parametrize("event_type", TYPES)
def test_optional_fields_left_out(event_type: str) -> None:
    """Real deliveries may leave out ``object`` (where optional),
    ``sip_media_security``, ``environment_id`` and ``connect``.
    """
    payload = make_event(event_type)
    paths = optional_paths(sdk_class(event_type))

    for path in paths:
        container = payload

        for key in path[:-1]:
            container = container[key]

        container.pop(path[-1], None)

    ours = parse_event(json.dumps(payload))
    sdk = sdk_parse(payload)
    assert type(ours).__name__ == type(sdk).__name__
    assert ours.model_dump() == sdk.model_dump()
    assert ours.model_fields_set == sdk.model_fields_set


def test_optional_paths_cover_known_cases() -> None:
    assert ("object",) in optional_paths(sdk_class("batch.completed"))
    assert ("data", "sip_media_security") in optional_paths(
        sdk_class("realtime.call.incoming")
    )
    assert {("data", "connect"), ("data", "environment_id")} <= set(
        optional_paths(sdk_class("agent.session.created"))
    )
    assert ("object",) not in optional_paths(sdk_class("safety.alert.created"))


@pytest.mark.parametrize("value", ["rtp", "srtp", "zrtp", None])
def test_sip_media_security_values(value: str | None) -> None:
    """Unrecognised values are kept as strings, as in the SDK."""
    payload = make_event("realtime.call.incoming", data={"sip_media_security": value})
    event = parse_event(json.dumps(payload))
    assert isinstance(event, models.RealtimeCallIncomingWebhookEvent)
    assert event.data.sip_media_security == value
    assert event.model_dump() == sdk_parse(payload).model_dump()


def test_sixteen_sip_headers() -> None:
    headers = sip_headers(16)
    payload = make_event("realtime.call.incoming", data={"sip_headers": headers})
    event = parse_event(json.dumps(payload))
    assert isinstance(event, models.RealtimeCallIncomingWebhookEvent)
    assert [h.model_dump() for h in event.data.sip_headers] == headers
    assert all(isinstance(h, models.DataSipHeader) for h in event.data.sip_headers)


def test_lenient_coercion_like_sdk() -> None:
    payload = make_event("batch.completed")
    payload["created_at"] = str(payload["created_at"])
    event = parse_event(json.dumps(payload))
    assert isinstance(event.created_at, int)
    assert event.model_dump() == sdk_parse(payload).model_dump()


def test_extra_fields_kept() -> None:
    payload = make_event(
        "agent.session.created",
        livemode=True,
        data={"new_field": [1, {"a": None}], "connect": {"token_hint": "tk_1"}},
    )
    event = parse_event(json.dumps(payload))
    assert isinstance(event, models.AgentSessionCreatedWebhookEvent)
    assert event.model_extra == {"livemode": True}
    assert event.data.model_extra == {"new_field": [1, {"a": None}]}
    assert event.data.connect is not None
    assert event.data.connect.model_extra == {"token_hint": "tk_1"}
    assert event.model_dump() == payload
    assert event.model_dump() == sdk_parse(payload).model_dump()


def test_events_are_frozen() -> None:
    event = parse_event(json.dumps(make_event("response.completed")))

    with pytest.raises(pydantic.ValidationError, match="frozen"):
        event.id = "evt_other"  # type: ignore[misc]


def test_str_and_bytes_give_the_same_event() -> None:
    body = json.dumps(make_event("eval.run.failed"))
    assert parse_event(body) == parse_event(body.encode())


def test_narrowing() -> None:
    event = parse_event(json.dumps(make_event("fine_tuning.job.failed")))

    match event:
        case models.FineTuningJobFailedWebhookEvent(data=data):
            assert data.id.startswith("ftjob-")
        case _:
            pytest.fail(f"unexpected {type(event).__name__}")


# --- Unknown types ------------------------------------------------------------


def test_unknown_type() -> None:
    payload = {
        "id": "evt_1",
        "object": "event",
        "created_at": 1_750_000_000,
        "type": "video.completed",
        "data": {"id": "video_1", "seconds": 8, "tags": ["a", None]},
        "livemode": False,
    }
    event = parse_event(json.dumps(payload))
    assert type(event) is UnknownWebhookEvent
    assert event.type == "video.completed"
    assert event.data == payload["data"]
    assert event.model_extra == {"livemode": False}
    assert event.model_dump() == payload


def test_unknown_type_minimal() -> None:
    event = parse_event(b'{"type": "brand.new.thing"}')
    assert isinstance(event, UnknownWebhookEvent)
    assert (event.id, event.created_at, event.object, event.data) == (
        None,
        None,
        None,
        None,
    )


def test_unknown_type_from_samples() -> None:
    payload = make_event("video.failed", allow_unknown=True)
    event = parse_event(json.dumps(payload))
    assert isinstance(event, UnknownWebhookEvent)
    assert event.model_dump() == payload


def test_known_type_never_becomes_unknown() -> None:
    payload = make_event("batch.completed", data={"id": None})

    with pytest.raises(WebhookPayloadError, match="batch.completed"):
        parse_event(json.dumps(payload))


# --- Errors -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param(b"", "body is not valid JSON", id="empty"),
        pytest.param(b"not json", "body is not valid JSON", id="garbage"),
        pytest.param(b'{"type": "batch.completed"', "body is not valid JSON", id="cut"),
        pytest.param(b"\xff\xfe{}", "body is not valid JSON", id="bad-utf8"),
        pytest.param(
            b'{"type": "video.completed", "data": "\xc3\x28"}',
            "body is not valid JSON",
            id="bad-utf8-in-string",
        ),
        pytest.param('"\ud800"', "body is not valid JSON", id="lone-surrogate-str"),
        pytest.param(b"[" * 10_000, "body is not valid JSON", id="deep-nesting"),
        pytest.param(b"[]", "body is not a JSON object", id="array"),
        pytest.param(b"1", "body is not a JSON object", id="number"),
        pytest.param(b"null", "body is not a JSON object", id="null"),
        pytest.param(b'"batch.completed"', "body is not a JSON object", id="string"),
        pytest.param(b"{}", "event has no string 'type' field", id="no-type"),
        pytest.param(b'{"type": 5}', "event has no string 'type' field", id="int"),
        pytest.param(b'{"type": null}', "event has no string 'type' field", id="null"),
        pytest.param(
            b'{"type": ["batch.completed"]}',
            "event has no string 'type' field",
            id="list",
        ),
        pytest.param(
            b'{"type": {"name": "x"}}', "event has no string 'type' field", id="obj"
        ),
    ],
)
def test_bad_body(body: bytes | str, message: str) -> None:
    with pytest.raises(WebhookPayloadError) as info:
        parse_event(body)

    assert info.value.message == message
    assert str(info.value) == message
    assert info.value.code == "invalid_payload"
    assert isinstance(info.value.__cause__, pydantic.ValidationError)


@pytest.mark.parametrize(
    ("event_type", "change", "message"),
    [
        pytest.param(
            "batch.completed",
            {"data": {"id": None}},
            "batch.completed event does not match its schema:"
            " data.id: Input should be a valid string",
        ),
        pytest.param(
            "response.failed",
            {"data": [], "created_at": "yesterday"},
            "response.failed event does not match its schema: created_at: Input"
            " should be a valid integer, unable to parse string as an integer;"
            " data: Input should be an object",
        ),
        pytest.param(
            "safety.alert.created",
            {"object": None},
            "safety.alert.created event does not match its schema:"
            " object: Input should be 'event'",
        ),
        pytest.param(
            "agent.session.action_required",
            {"data": {"required_action": {"type": "brand_new"}}},
            "agent.session.action_required event does not match its schema:"
            " data.required_action.type: Input should be"
            " 'computer_use_approval_request', 'mcp_approval_request',"
            " 'function_call' or 'environment_connection'",
        ),
        pytest.param(
            "realtime.call.incoming",
            {"data": {"sip_headers": [{"name": "From"}]}},
            "realtime.call.incoming event does not match its schema:"
            " data.sip_headers.0.value: Field required",
        ),
        pytest.param(
            "live.transport.incoming",
            {"data": {"type": "webrtc"}},
            "live.transport.incoming event does not match its schema:"
            " data.type: Input should be 'sip'",
        ),
    ],
)
def test_known_type_wrong_shape(
    event_type: str, change: dict[str, t.Any], message: str
) -> None:
    payload = make_event(event_type, **change)

    with pytest.raises(WebhookPayloadError) as info:
        parse_event(json.dumps(payload))

    assert info.value.message == message


def test_missing_fields_message() -> None:
    with pytest.raises(WebhookPayloadError) as info:
        parse_event(b'{"type": "batch.failed"}')

    assert info.value.message == (
        "batch.failed event does not match its schema: id: Field required;"
        " created_at: Field required; data: Field required"
    )


def test_many_errors_are_summarized() -> None:
    payload = {"type": "live.transport.incoming", "data": {"sip_headers": [1] * 50}}

    with pytest.raises(WebhookPayloadError) as info:
        parse_event(json.dumps(payload))

    assert info.value.message.startswith(
        "live.transport.incoming event does not match its schema: id: Field required;"
    )
    assert info.value.message.endswith("and 51 more")


def test_object_required_where_sdk_requires_it() -> None:
    payload = make_event("agent.environment.ready")
    del payload["object"]

    with pytest.raises(WebhookPayloadError, match="object: Field required"):
        parse_event(json.dumps(payload))


def test_unknown_type_with_wrong_common_field() -> None:
    with pytest.raises(WebhookPayloadError) as info:
        parse_event(b'{"type": "video.completed", "id": 5}')

    assert info.value.message == (
        "video.completed event does not match the generic event schema:"
        " id: Input should be a valid string"
    )


@pytest.mark.parametrize(
    "payload",
    [
        {"type": "batch.completed", "data": {"id": ["x" * 100_000]}},
        {"type": "video." + "t" * 100_000, "created_at": "y" * 100_000},
        {"type": "\n\x1b[31m" + "z" * 1000, "id": 1},
        {"type": 1, "data": "x" * 100_000},
    ],
    ids=["long-known", "long-unknown", "control-chars", "long-non-string"],
)
def test_messages_do_not_echo_input(payload: dict[str, t.Any]) -> None:
    with pytest.raises(WebhookPayloadError) as info:
        parse_event(json.dumps(payload))

    assert len(info.value.message) < 300
    assert "t" * 100 not in info.value.message
    assert "xxxxxxxxxx" not in info.value.message
    assert "yyyyyyyyyy" not in info.value.message
    assert "\n" not in info.value.message
    assert "\x1b" not in info.value.message


# --- Fuzzing ------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
type_strings = st.sampled_from(TYPES) | st.text(max_size=30)


def check_parse(body: bytes | str) -> None:
    try:
        event = parse_event(body)
    except WebhookPayloadError as e:
        assert e.message
    else:
        assert isinstance(event, (*EVENT_TYPES.values(), UnknownWebhookEvent))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_bytes(body: bytes) -> None:
    check_parse(body)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_fuzz_text(body: str) -> None:
    check_parse(body)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_fuzz_json_values(value: t.Any) -> None:
    check_parse(json.dumps(value))


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["id", "created_at", "object", "data", "extra"]),
        json_values,
    ),
    type_strings,
)
def test_fuzz_event_objects(fields: dict[str, t.Any], event_type: str) -> None:
    check_parse(json.dumps({**fields, "type": event_type}))


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(TYPES), st.data())
def test_fuzz_mutated_samples(event_type: str, data: st.DataObject) -> None:
    """Valid samples with one value replaced, anywhere in the tree."""
    payload = make_event(event_type)
    paths: list[tuple[t.Any, t.Any]] = []
    stack: list[t.Any] = [payload]

    while stack:
        node = stack.pop()
        keys = node.keys() if isinstance(node, dict) else range(len(node))

        for key in keys:
            paths.append((node, key))

            if isinstance(node[key], (dict, list)):
                stack.append(node[key])

    node, key = data.draw(st.sampled_from(paths))
    node[key] = data.draw(json_values)
    body = json.dumps(payload)
    check_parse(body)

    try:
        event = parse_event(body)
    except WebhookPayloadError:
        return

    # Whatever is accepted is accepted by the SDK too, with the same result.
    sdk = sdk_parse(payload)
    assert type(event).__name__ == type(sdk).__name__ or isinstance(
        event, UnknownWebhookEvent
    )

    if not isinstance(event, UnknownWebhookEvent):
        assert event.model_dump() == sdk.model_dump()


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=40), st.sampled_from(TYPES))
def test_fuzz_corrupted_sample(noise: bytes, event_type: str) -> None:
    body = json.dumps(make_event(event_type)).encode()
    cut = len(body) // 2
    check_parse(body[:cut] + noise + body[cut:])


# --- Batch ----------------------------------------------------------------------

BATCH_JSON = json.dumps(
    {
        "id": "batch_685343a1381c819085d44c354e1b330e",
        "object": "batch",
        "endpoint": "/v1/responses",
        "model": "gpt-5-mini-2025-08-07",
        "errors": {
            "object": "list",
            "data": [
                {
                    "code": "invalid_json",
                    "message": "Line 7 is not valid JSON.",
                    "param": None,
                    "line": 7,
                },
                {
                    "code": "missing_required_parameter",
                    "message": "Missing required parameter: 'input'.",
                    "param": "input",
                    "line": 12,
                },
            ],
        },
        "input_file_id": "file-2NbYAvJ7mW3pQhZ8xKcR1s",
        "completion_window": "24h",
        "status": "completed",
        "output_file_id": "file-7TyQ4LmN9pW2xVbK3cZd8e",
        "error_file_id": "file-5GhJ2kLp8QwE4rTy6UiO1a",
        "created_at": 1_750_000_000,
        "in_progress_at": 1_750_000_012,
        "expires_at": 1_750_086_400,
        "finalizing_at": 1_750_003_600,
        "completed_at": 1_750_003_700,
        "failed_at": None,
        "expired_at": None,
        "cancelling_at": None,
        "cancelled_at": None,
        "request_counts": {"total": 100, "completed": 98, "failed": 2},
        "usage": {
            "input_tokens": 15_230,
            "input_tokens_details": {"cached_tokens": 4_096},
            "output_tokens": 8_812,
            "output_tokens_details": {"reasoning_tokens": 2_048},
            "total_tokens": 24_042,
        },
        "metadata": {"customer_id": "user_123456789", "job": "nightly-eval"},
    }
)


def test_batch_same_as_sdk() -> None:
    ours = models.Batch.model_validate_json(BATCH_JSON)
    sdk = openai.types.Batch.model_validate_json(BATCH_JSON)
    assert ours.model_dump() == sdk.model_dump() == json.loads(BATCH_JSON)
    assert ours.errors is not None and ours.errors.data is not None
    assert ours.errors.data[1].param == "input"
    assert ours.usage is not None
    assert ours.usage.output_tokens_details.reasoning_tokens == 2_048
    assert ours.request_counts == models.BatchRequestCounts(
        total=100, completed=98, failed=2
    )


def test_batch_minimal_same_as_sdk() -> None:
    minimal = {
        "id": "batch_1",
        "object": "batch",
        "endpoint": "/v1/chat/completions",
        "input_file_id": "file-1",
        "completion_window": "24h",
        "status": "validating",
        "created_at": 1_750_000_000,
        "new_field": {"kept": True},
    }
    ours = models.Batch.model_validate(minimal)
    sdk = openai.types.Batch.model_validate(minimal)
    assert ours.model_dump() == sdk.model_dump()
    assert ours.model_extra == {"new_field": {"kept": True}}


def test_batch_rejects_unknown_status() -> None:
    payload = {**json.loads(BATCH_JSON), "status": "paused"}

    with pytest.raises(pydantic.ValidationError):
        models.Batch.model_validate(payload)
