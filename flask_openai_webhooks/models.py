"""Pydantic models for OpenAI webhook events, and :func:`parse_event`.

The models mirror the ones in the ``openai`` SDK (3.54): same class names,
same field names, types, defaults and nesting, so ``model_dump()`` gives the
same result for the same payload. Unlike the SDK, a known event type with
the wrong shape is an error (:class:`.WebhookPayloadError`), and a type this
module does not know becomes an :class:`UnknownWebhookEvent` instead of
being passed off as some other class.

Nothing here imports Flask.

Dispatch on ``event.type``, or use ``match``/``isinstance`` on the classes:
:data:`WebhookEvent` is a plain union, so type checkers narrow it.
"""

from __future__ import annotations

import types
import typing as t

from pydantic import BaseModel
from pydantic import ConfigDict
from pydantic import Field
from pydantic import GetCoreSchemaHandler
from pydantic import TypeAdapter
from pydantic import ValidationError
from pydantic_core import core_schema
from pydantic_core import ErrorDetails
from pydantic_core import PydanticCustomError

from .errors import WebhookPayloadError

__all__ = [
    "AgentEnvironmentEventData",
    "AgentEnvironmentExpiredWebhookEvent",
    "AgentEnvironmentFailedWebhookEvent",
    "AgentEnvironmentReadyWebhookEvent",
    "AgentEnvironmentSuspendedWebhookEvent",
    "AgentSessionActionRequiredEventData",
    "AgentSessionActionRequiredWebhookEvent",
    "AgentSessionCreatedEventData",
    "AgentSessionCreatedWebhookEvent",
    "AgentSessionEventData",
    "AgentSessionFailedWebhookEvent",
    "AgentSessionIdleWebhookEvent",
    "AgentSessionInProgressWebhookEvent",
    "Batch",
    "BatchCancelledWebhookEvent",
    "BatchCompletedWebhookEvent",
    "BatchError",
    "BatchErrors",
    "BatchEventData",
    "BatchExpiredWebhookEvent",
    "BatchFailedWebhookEvent",
    "BatchRequestCounts",
    "BatchUsage",
    "DataConnect",
    "DataRequiredAction",
    "DataSipHeader",
    "EVENT_TYPES",
    "Errors",
    "EvalRunCanceledWebhookEvent",
    "EvalRunEventData",
    "EvalRunFailedWebhookEvent",
    "EvalRunSucceededWebhookEvent",
    "FineTuningJobCancelledWebhookEvent",
    "FineTuningJobEventData",
    "FineTuningJobFailedWebhookEvent",
    "FineTuningJobSucceededWebhookEvent",
    "InputTokensDetails",
    "LiveCallIncomingEventData",
    "LiveCallIncomingWebhookEvent",
    "LiveTransportConnectedEventData",
    "LiveTransportConnectedWebhookEvent",
    "LiveTransportIncomingEventData",
    "LiveTransportIncomingWebhookEvent",
    "Metadata",
    "OutputTokensDetails",
    "RealtimeCallIncomingEventData",
    "RealtimeCallIncomingWebhookEvent",
    "ResponseCancelledWebhookEvent",
    "ResponseCompletedWebhookEvent",
    "ResponseEventData",
    "ResponseFailedWebhookEvent",
    "ResponseIncompleteWebhookEvent",
    "SafetyAlertCreatedWebhookEvent",
    "SafetyAlertEventData",
    "SafetyCaseEventData",
    "SafetyDeactivationIssuedWebhookEvent",
    "SafetyIdentifierBlockedEventData",
    "SafetyIdentifierBlockedWebhookEvent",
    "SafetyOrgAlertCreatedWebhookEvent",
    "SafetyWarningIssuedWebhookEvent",
    "UnknownWebhookEvent",
    "WebhookEvent",
    "parse_event",
]


class _Model(BaseModel):
    """Base of every model here. Extra fields are kept, so fields OpenAI
    adds later are still available through attribute access and
    ``model_extra``. Instances are immutable.
    """

    model_config = ConfigDict(extra="allow", frozen=True, use_attribute_docstrings=True)


# --- Batch -------------------------------------------------------------------

Metadata: t.TypeAlias = dict[str, str]
"""Up to 16 key-value pairs attached to an object. Keys are at most 64
characters long, values at most 512.
"""


class BatchError(_Model):
    """One error from a batch's validation or processing."""

    code: str | None = None
    """An error code identifying the error type."""

    line: int | None = None
    """The line number of the input file where the error occurred, if
    applicable.
    """

    message: str | None = None
    """A human-readable message providing more details about the error."""

    param: str | None = None
    """The name of the parameter that caused the error, if applicable."""


class Errors(_Model):
    """The list of errors of a batch (:attr:`Batch.errors`)."""

    data: list[BatchError] | None = None

    object: str | None = None
    """The object type, which is always ``list``."""


BatchErrors = Errors
"""Alias of :class:`Errors` with a less ambiguous name."""


class BatchRequestCounts(_Model):
    """The request counts for different statuses within the batch."""

    completed: int
    """Number of requests that have been completed successfully."""

    failed: int
    """Number of requests that have failed."""

    total: int
    """Total number of requests in the batch."""


class InputTokensDetails(_Model):
    """A detailed breakdown of the input tokens."""

    cached_tokens: int
    """The number of tokens that were retrieved from the cache."""


class OutputTokensDetails(_Model):
    """A detailed breakdown of the output tokens."""

    reasoning_tokens: int
    """The number of reasoning tokens."""


class BatchUsage(_Model):
    """Token usage of a batch: input tokens, output tokens, a breakdown of
    both, and the total. Only filled in for batches created after
    September 7, 2025.
    """

    input_tokens: int
    """The number of input tokens."""

    input_tokens_details: InputTokensDetails
    """A detailed breakdown of the input tokens."""

    output_tokens: int
    """The number of output tokens."""

    output_tokens_details: OutputTokensDetails
    """A detailed breakdown of the output tokens."""

    total_tokens: int
    """The total number of tokens used."""


class Batch(_Model):
    """A batch, as returned by ``client.batches.retrieve(id)``.

    ``batch.*`` webhook events carry only the batch ID; fetch the batch to
    get this object.
    """

    id: str

    completion_window: str
    """The time frame within which the batch should be processed."""

    created_at: int
    """The Unix timestamp (in seconds) for when the batch was created."""

    endpoint: str
    """The OpenAI API endpoint used by the batch."""

    input_file_id: str
    """The ID of the input file for the batch."""

    object: t.Literal["batch"]
    """The object type, which is always ``batch``."""

    status: t.Literal[
        "validating",
        "failed",
        "in_progress",
        "finalizing",
        "completed",
        "expired",
        "cancelling",
        "cancelled",
    ]
    """The current status of the batch."""

    cancelled_at: int | None = None
    """The Unix timestamp (in seconds) for when the batch was cancelled."""

    cancelling_at: int | None = None
    """The Unix timestamp (in seconds) for when the batch started cancelling."""

    completed_at: int | None = None
    """The Unix timestamp (in seconds) for when the batch was completed."""

    error_file_id: str | None = None
    """The ID of the file containing the outputs of requests with errors."""

    errors: Errors | None = None

    expired_at: int | None = None
    """The Unix timestamp (in seconds) for when the batch expired."""

    expires_at: int | None = None
    """The Unix timestamp (in seconds) for when the batch will expire."""

    failed_at: int | None = None
    """The Unix timestamp (in seconds) for when the batch failed."""

    finalizing_at: int | None = None
    """The Unix timestamp (in seconds) for when the batch started finalizing."""

    in_progress_at: int | None = None
    """The Unix timestamp (in seconds) for when the batch started processing."""

    metadata: Metadata | None = None
    """Up to 16 key-value pairs attached to the batch. Keys are at most 64
    characters long, values at most 512.
    """

    model: str | None = None
    """The ID of the model used to process the batch."""

    output_file_id: str | None = None
    """The ID of the file containing the outputs of successfully executed
    requests.
    """

    request_counts: BatchRequestCounts | None = None
    """The request counts for different statuses within the batch."""

    usage: BatchUsage | None = None
    """Token usage of the batch. Only filled in for batches created after
    September 7, 2025.
    """


# --- Event data --------------------------------------------------------------


class BatchEventData(_Model):
    """Data of the ``batch.*`` events."""

    id: str
    """The unique ID of the batch API request."""


class ResponseEventData(_Model):
    """Data of the ``response.*`` events."""

    id: str
    """The unique ID of the model response."""


class EvalRunEventData(_Model):
    """Data of the ``eval.run.*`` events."""

    id: str
    """The unique ID of the eval run."""


class FineTuningJobEventData(_Model):
    """Data of the ``fine_tuning.job.*`` events."""

    id: str
    """The unique ID of the fine-tuning job."""


class DataSipHeader(_Model):
    """A header from the SIP INVITE."""

    name: str
    """Name of the SIP header."""

    value: str
    """Value of the SIP header."""


class RealtimeCallIncomingEventData(_Model):
    """Data of the ``realtime.call.incoming`` event."""

    call_id: str
    """The ID of the pending SIP call. Pass it unchanged when accepting or
    rejecting the call through the Realtime API. For the Live API, use the
    ``session_id`` from ``live.transport.incoming`` instead.
    """

    sip_headers: list[DataSipHeader]
    """Headers from the SIP INVITE, without the SIP authorization headers.
    Names, values, repeated entries and order are kept. Treat these values as
    untrusted call metadata.
    """

    sip_media_security: t.Literal["rtp", "srtp"] | str | None = None
    """Media protection selected on the SIP leg during SDP negotiation:
    ``srtp`` means SRTP, ``rtp`` unencrypted RTP. Left out when unknown. It
    says nothing about SIP signaling security or whether media has flowed.
    Treat unrecognized values as unknown.
    """


class LiveCallIncomingEventData(_Model):
    """Data of the deprecated ``live.call.incoming`` event."""

    session_id: str
    """The ``live_...`` ID of the pending SIP session. Pass it unchanged to
    Live call controls and sideband connections. The matching
    ``realtime.call.incoming`` event uses a separate ``rtc_...`` call ID.
    """

    sip_headers: list[DataSipHeader]
    """Headers from the SIP INVITE, without the SIP authorization headers.
    Names, values, repeated entries and order are kept. Treat these values as
    untrusted call metadata.
    """

    sip_media_security: t.Literal["rtp", "srtp"] | str | None = None
    """Media protection selected on the SIP leg during SDP negotiation:
    ``srtp`` means SRTP, ``rtp`` unencrypted RTP. Left out when unknown. It
    says nothing about SIP signaling security or whether media has flowed.
    Treat unrecognized values as unknown.
    """


class LiveTransportIncomingEventData(_Model):
    """Data of the ``live.transport.incoming`` event."""

    session_id: str
    """The ``live_...`` ID of the pending SIP session. Pass it unchanged
    when accepting or rejecting the call through the Live API.
    """

    sip_headers: list[DataSipHeader]
    """Headers from the SIP INVITE, without the SIP authorization headers.
    Names, values, repeated entries and order are kept. Treat these values as
    untrusted call metadata.
    """

    type: t.Literal["sip"]
    """The incoming transport type. Always ``sip``."""

    sip_media_security: t.Literal["rtp", "srtp"] | str | None = None
    """Media protection selected on the SIP leg during SDP negotiation:
    ``srtp`` means SRTP, ``rtp`` unencrypted RTP. Left out when unknown. It
    says nothing about SIP signaling security or whether media has flowed.
    Treat unrecognized values as unknown.
    """


class LiveTransportConnectedEventData(_Model):
    """Data of the ``live.transport.connected`` event."""

    session_id: str
    """The Live session ID to use with the sideband attach endpoint."""

    type: t.Literal["webrtc"]
    """The session transport."""


class AgentEnvironmentEventData(_Model):
    """Identifies the environment whose lifecycle changed."""

    id: str
    """The ID of the environment."""


class DataConnect(_Model):
    """How to connect a self-hosted environment."""

    remote_url: str
    """The URL used to connect the self-hosted environment."""


class AgentSessionCreatedEventData(_Model):
    """Data of the ``agent.session.created`` event."""

    id: str
    """The ID of the session."""

    environment_type: str
    """The environment type: ``none``, ``openai_hosted`` or ``self_hosted``."""

    connect: DataConnect | None = None

    environment_id: str | None = None
    """The ID of the environment, when one exists."""


class AgentSessionEventData(_Model):
    """Data of the ``agent.session.in_progress``, ``agent.session.idle`` and
    ``agent.session.failed`` events.
    """

    id: str
    """The ID of the session."""

    environment_type: str
    """The environment type: ``none``, ``openai_hosted`` or ``self_hosted``."""

    environment_id: str | None = None
    """The ID of the environment, when one exists."""


class DataRequiredAction(_Model):
    """The kind of action a session needs. The details are not in the
    webhook: retrieve the session for them.
    """

    type: t.Literal[
        "computer_use_approval_request",
        "mcp_approval_request",
        "function_call",
        "environment_connection",
    ]


class AgentSessionActionRequiredEventData(_Model):
    """Data of the ``agent.session.action_required`` event."""

    id: str
    """The ID of the session."""

    required_action: DataRequiredAction
    """The action type. Retrieve the session for action details."""


class SafetyAlertEventData(_Model):
    """Data of the ``safety.alert.created`` and ``safety.org_alert.created``
    events.
    """

    id: str
    """The safety alert ID to pass to ``GET /v1/safety/alerts/{id}``."""


class SafetyCaseEventData(_Model):
    """Data of the ``safety.warning_issued`` and
    ``safety.deactivation_issued`` events.
    """

    id: str
    """The safety case ID to pass to ``GET /v1/safety/cases/{id}``."""


class SafetyIdentifierBlockedEventData(_Model):
    """Data of the ``safety_identifier.blocked`` event."""

    safety_category: str
    """The safety category that triggered the block, such as ``bio`` or
    ``cyber``.
    """

    safety_identifier: str
    """The stable safety identifier associated with the blocked request."""

    model: str | None = None
    """The model used for the blocked request, if available."""

    project_id: str | None = None
    """The project associated with the blocked request, if available."""

    request_id: str | None = None
    """The OpenAI request ID for the blocked request, if available."""


# --- Events: agent.* ---------------------------------------------------------


class AgentEnvironmentExpiredWebhookEvent(_Model):
    """Sent when an agent environment expires and can no longer resume from a
    snapshot.
    """

    id: str
    """The unique ID of the event."""

    created_at: int
    """The Unix timestamp, in seconds, when the event was created."""

    data: AgentEnvironmentEventData
    """Identifies the environment whose lifecycle changed."""

    object: t.Literal["event"]
    """The object type. Always ``event``."""

    type: t.Literal["agent.environment.expired"]
    """The event type. Always ``agent.environment.expired``."""


class AgentEnvironmentFailedWebhookEvent(_Model):
    """Sent when setup fails for a prewarmed OpenAI-hosted environment before
    it is attached to a session.
    """

    id: str
    """The unique ID of the event."""

    created_at: int
    """The Unix timestamp, in seconds, when the event was created."""

    data: AgentEnvironmentEventData
    """Identifies the environment whose lifecycle changed."""

    object: t.Literal["event"]
    """The object type. Always ``event``."""

    type: t.Literal["agent.environment.failed"]
    """The event type. Always ``agent.environment.failed``."""


class AgentEnvironmentReadyWebhookEvent(_Model):
    """Sent when a prewarmed OpenAI-hosted environment finishes setup before
    being attached to a session.
    """

    id: str
    """The unique ID of the event."""

    created_at: int
    """The Unix timestamp, in seconds, when the event was created."""

    data: AgentEnvironmentEventData
    """Identifies the environment whose lifecycle changed."""

    object: t.Literal["event"]
    """The object type. Always ``event``."""

    type: t.Literal["agent.environment.ready"]
    """The event type. Always ``agent.environment.ready``."""


class AgentEnvironmentSuspendedWebhookEvent(_Model):
    """Sent when an agent environment is suspended and can resume from a
    snapshot.
    """

    id: str
    """The unique ID of the event."""

    created_at: int
    """The Unix timestamp, in seconds, when the event was created."""

    data: AgentEnvironmentEventData
    """Identifies the environment whose lifecycle changed."""

    object: t.Literal["event"]
    """The object type. Always ``event``."""

    type: t.Literal["agent.environment.suspended"]
    """The event type. Always ``agent.environment.suspended``."""


class AgentSessionActionRequiredWebhookEvent(_Model):
    """Sent when an agent session requires an action. Retrieve the session
    for the action's details.
    """

    id: str
    """The unique ID of the event."""

    created_at: int
    """The Unix timestamp, in seconds, when the event was created."""

    data: AgentSessionActionRequiredEventData

    object: t.Literal["event"]
    """The object type. Always ``event``."""

    type: t.Literal["agent.session.action_required"]
    """The event type. Always ``agent.session.action_required``."""


class AgentSessionCreatedWebhookEvent(_Model):
    """Sent when an agent session is created."""

    id: str
    """The unique ID of the event."""

    created_at: int
    """The Unix timestamp, in seconds, when the event was created."""

    data: AgentSessionCreatedEventData

    object: t.Literal["event"]
    """The object type. Always ``event``."""

    type: t.Literal["agent.session.created"]
    """The event type. Always ``agent.session.created``."""


class AgentSessionFailedWebhookEvent(_Model):
    """Sent when an agent session fails."""

    id: str
    """The unique ID of the event."""

    created_at: int
    """The Unix timestamp, in seconds, when the event was created."""

    data: AgentSessionEventData

    object: t.Literal["event"]
    """The object type. Always ``event``."""

    type: t.Literal["agent.session.failed"]
    """The event type. Always ``agent.session.failed``."""


class AgentSessionIdleWebhookEvent(_Model):
    """Sent when an agent session becomes idle."""

    id: str
    """The unique ID of the event."""

    created_at: int
    """The Unix timestamp, in seconds, when the event was created."""

    data: AgentSessionEventData

    object: t.Literal["event"]
    """The object type. Always ``event``."""

    type: t.Literal["agent.session.idle"]
    """The event type. Always ``agent.session.idle``."""


class AgentSessionInProgressWebhookEvent(_Model):
    """Sent when an agent session enters the in-progress state."""

    id: str
    """The unique ID of the event."""

    created_at: int
    """The Unix timestamp, in seconds, when the event was created."""

    data: AgentSessionEventData

    object: t.Literal["event"]
    """The object type. Always ``event``."""

    type: t.Literal["agent.session.in_progress"]
    """The event type. Always ``agent.session.in_progress``."""


# --- Events: batch.* ---------------------------------------------------------


class BatchCancelledWebhookEvent(_Model):
    """Sent when a batch API request has been cancelled."""

    id: str
    """The unique ID of the event."""

    created_at: int
    """The Unix timestamp (in seconds) of when the batch API request was
    cancelled.
    """

    data: BatchEventData
    """Event data payload."""

    type: t.Literal["batch.cancelled"]
    """The type of the event. Always ``batch.cancelled``."""

    object: t.Literal["event"] | None = None
    """The object of the event. Always ``event``."""


class BatchCompletedWebhookEvent(_Model):
    """Sent when a batch API request has been completed."""

    id: str
    """The unique ID of the event."""

    created_at: int
    """The Unix timestamp (in seconds) of when the batch API request was
    completed.
    """

    data: BatchEventData
    """Event data payload."""

    type: t.Literal["batch.completed"]
    """The type of the event. Always ``batch.completed``."""

    object: t.Literal["event"] | None = None
    """The object of the event. Always ``event``."""


class BatchExpiredWebhookEvent(_Model):
    """Sent when a batch API request has expired."""

    id: str
    """The unique ID of the event."""

    created_at: int
    """The Unix timestamp (in seconds) of when the batch API request expired."""

    data: BatchEventData
    """Event data payload."""

    type: t.Literal["batch.expired"]
    """The type of the event. Always ``batch.expired``."""

    object: t.Literal["event"] | None = None
    """The object of the event. Always ``event``."""


class BatchFailedWebhookEvent(_Model):
    """Sent when a batch API request has failed."""

    id: str
    """The unique ID of the event."""

    created_at: int
    """The Unix timestamp (in seconds) of when the batch API request failed."""

    data: BatchEventData
    """Event data payload."""

    type: t.Literal["batch.failed"]
    """The type of the event. Always ``batch.failed``."""

    object: t.Literal["event"] | None = None
    """The object of the event. Always ``event``."""


# --- Events: eval.run.* ------------------------------------------------------


class EvalRunCanceledWebhookEvent(_Model):
    """Sent when an eval run has been canceled."""

    id: str
    """The unique ID of the event."""

    created_at: int
    """The Unix timestamp (in seconds) of when the eval run was canceled."""

    data: EvalRunEventData
    """Event data payload."""

    type: t.Literal["eval.run.canceled"]
    """The type of the event. Always ``eval.run.canceled``."""

    object: t.Literal["event"] | None = None
    """The object of the event. Always ``event``."""


class EvalRunFailedWebhookEvent(_Model):
    """Sent when an eval run has failed."""

    id: str
    """The unique ID of the event."""

    created_at: int
    """The Unix timestamp (in seconds) of when the eval run failed."""

    data: EvalRunEventData
    """Event data payload."""

    type: t.Literal["eval.run.failed"]
    """The type of the event. Always ``eval.run.failed``."""

    object: t.Literal["event"] | None = None
    """The object of the event. Always ``event``."""


class EvalRunSucceededWebhookEvent(_Model):
    """Sent when an eval run has succeeded."""

    id: str
    """The unique ID of the event."""

    created_at: int
    """The Unix timestamp (in seconds) of when the eval run succeeded."""

    data: EvalRunEventData
    """Event data payload."""

    type: t.Literal["eval.run.succeeded"]
    """The type of the event. Always ``eval.run.succeeded``."""

    object: t.Literal["event"] | None = None
    """The object of the event. Always ``event``."""


# --- Events: fine_tuning.job.* -----------------------------------------------


class FineTuningJobCancelledWebhookEvent(_Model):
    """Sent when a fine-tuning job has been cancelled."""

    id: str
    """The unique ID of the event."""

    created_at: int
    """The Unix timestamp (in seconds) of when the fine-tuning job was
    cancelled.
    """

    data: FineTuningJobEventData
    """Event data payload."""

    type: t.Literal["fine_tuning.job.cancelled"]
    """The type of the event. Always ``fine_tuning.job.cancelled``."""

    object: t.Literal["event"] | None = None
    """The object of the event. Always ``event``."""


class FineTuningJobFailedWebhookEvent(_Model):
    """Sent when a fine-tuning job has failed."""

    id: str
    """The unique ID of the event."""

    created_at: int
    """The Unix timestamp (in seconds) of when the fine-tuning job failed."""

    data: FineTuningJobEventData
    """Event data payload."""

    type: t.Literal["fine_tuning.job.failed"]
    """The type of the event. Always ``fine_tuning.job.failed``."""

    object: t.Literal["event"] | None = None
    """The object of the event. Always ``event``."""


class FineTuningJobSucceededWebhookEvent(_Model):
    """Sent when a fine-tuning job has succeeded."""

    id: str
    """The unique ID of the event."""

    created_at: int
    """The Unix timestamp (in seconds) of when the fine-tuning job
    succeeded.
    """

    data: FineTuningJobEventData
    """Event data payload."""

    type: t.Literal["fine_tuning.job.succeeded"]
    """The type of the event. Always ``fine_tuning.job.succeeded``."""

    object: t.Literal["event"] | None = None
    """The object of the event. Always ``event``."""


# --- Events: live.* and realtime.* -------------------------------------------


class LiveCallIncomingWebhookEvent(_Model):
    """Deprecated: use ``live.transport.incoming``. Kept for existing
    subscriptions during migration; new subscriptions are refused.

    Sent when an incoming API SIP session is available for Live acceptance.
    The same pending session can also emit ``realtime.call.incoming``; the
    first successful Realtime or Live accept selects the runtime surface.
    """

    id: str
    """The unique ID of the event."""

    created_at: int
    """The Unix timestamp (in seconds) of when the event was created."""

    data: LiveCallIncomingEventData
    """Event data payload."""

    type: t.Literal["live.call.incoming"]
    """The type of the event. Always ``live.call.incoming``."""

    object: t.Literal["event"] | None = None
    """The object of the event. Always ``event``."""


class LiveTransportConnectedWebhookEvent(_Model):
    """Sent when a direct Live WebRTC session is created or an Instant
    Connect session activates. Use its session ID to attach a sideband
    observer.
    """

    id: str
    """The webhook event ID."""

    created_at: int
    """Unix time in seconds when the event was created."""

    data: LiveTransportConnectedEventData

    object: t.Literal["event"]
    """The object type. Always ``event``."""

    type: t.Literal["live.transport.connected"]
    """The event type. Always ``live.transport.connected``."""


class LiveTransportIncomingWebhookEvent(_Model):
    """Sent when an incoming API SIP session is available for Live
    acceptance. The same pending session can also emit
    ``realtime.call.incoming``; the first successful Realtime or Live accept
    selects the runtime surface.
    """

    id: str
    """The unique ID of the event."""

    created_at: int
    """The Unix timestamp (in seconds) of when the event was created."""

    data: LiveTransportIncomingEventData
    """Event data payload."""

    type: t.Literal["live.transport.incoming"]
    """The type of the event. Always ``live.transport.incoming``."""

    object: t.Literal["event"] | None = None
    """The object of the event. Always ``event``."""


class RealtimeCallIncomingWebhookEvent(_Model):
    """Sent when an incoming API SIP session is available for Realtime
    acceptance. The same pending session can also emit
    ``live.transport.incoming``; the first successful Realtime or Live accept
    selects the runtime surface.
    """

    id: str
    """The unique ID of the event."""

    created_at: int
    """The Unix timestamp (in seconds) of when the event was created."""

    data: RealtimeCallIncomingEventData
    """Event data payload."""

    type: t.Literal["realtime.call.incoming"]
    """The type of the event. Always ``realtime.call.incoming``."""

    object: t.Literal["event"] | None = None
    """The object of the event. Always ``event``."""


# --- Events: response.* ------------------------------------------------------


class ResponseCancelledWebhookEvent(_Model):
    """Sent when a background response has been cancelled."""

    id: str
    """The unique ID of the event."""

    created_at: int
    """The Unix timestamp (in seconds) of when the model response was
    cancelled.
    """

    data: ResponseEventData
    """Event data payload."""

    type: t.Literal["response.cancelled"]
    """The type of the event. Always ``response.cancelled``."""

    object: t.Literal["event"] | None = None
    """The object of the event. Always ``event``."""


class ResponseCompletedWebhookEvent(_Model):
    """Sent when a background response has been completed."""

    id: str
    """The unique ID of the event."""

    created_at: int
    """The Unix timestamp (in seconds) of when the model response was
    completed.
    """

    data: ResponseEventData
    """Event data payload."""

    type: t.Literal["response.completed"]
    """The type of the event. Always ``response.completed``."""

    object: t.Literal["event"] | None = None
    """The object of the event. Always ``event``."""


class ResponseFailedWebhookEvent(_Model):
    """Sent when a background response has failed."""

    id: str
    """The unique ID of the event."""

    created_at: int
    """The Unix timestamp (in seconds) of when the model response failed."""

    data: ResponseEventData
    """Event data payload."""

    type: t.Literal["response.failed"]
    """The type of the event. Always ``response.failed``."""

    object: t.Literal["event"] | None = None
    """The object of the event. Always ``event``."""


class ResponseIncompleteWebhookEvent(_Model):
    """Sent when a background response has been interrupted."""

    id: str
    """The unique ID of the event."""

    created_at: int
    """The Unix timestamp (in seconds) of when the model response was
    interrupted.
    """

    data: ResponseEventData
    """Event data payload."""

    type: t.Literal["response.incomplete"]
    """The type of the event. Always ``response.incomplete``."""

    object: t.Literal["event"] | None = None
    """The object of the event. Always ``event``."""


# --- Events: safety.* and safety_identifier.* --------------------------------


class SafetyAlertCreatedWebhookEvent(_Model):
    """Sent when an approved safety alert is available for an API project."""

    id: str
    """The unique ID of the webhook event."""

    created_at: int
    """The Unix timestamp in seconds when the event was created."""

    data: SafetyAlertEventData

    object: t.Literal["event"]
    """Always ``event``."""

    type: t.Literal["safety.alert.created"]
    """Always ``safety.alert.created``."""


class SafetyDeactivationIssuedWebhookEvent(_Model):
    """Sent when a deactivation is issued for a safety identifier in your
    organization.
    """

    id: str
    """The unique ID of the webhook event."""

    created_at: int
    """The Unix timestamp in seconds when the event was created."""

    data: SafetyCaseEventData

    object: t.Literal["event"]
    """Always ``event``."""

    type: t.Literal["safety.deactivation_issued"]
    """Always ``safety.deactivation_issued``."""


class SafetyOrgAlertCreatedWebhookEvent(_Model):
    """Sent when an approved safety alert is available for an enterprise
    workspace.
    """

    id: str
    """The unique ID of the webhook event."""

    created_at: int
    """The Unix timestamp in seconds when the event was created."""

    data: SafetyAlertEventData

    object: t.Literal["event"]
    """Always ``event``."""

    type: t.Literal["safety.org_alert.created"]
    """Always ``safety.org_alert.created``."""


class SafetyWarningIssuedWebhookEvent(_Model):
    """Sent when a warning is issued for a safety identifier in your
    organization.
    """

    id: str
    """The unique ID of the webhook event."""

    created_at: int
    """The Unix timestamp in seconds when the event was created."""

    data: SafetyCaseEventData

    object: t.Literal["event"]
    """Always ``event``."""

    type: t.Literal["safety.warning_issued"]
    """Always ``safety.warning_issued``."""


class SafetyIdentifierBlockedWebhookEvent(_Model):
    """Sent when a request associated with a safety identifier has been
    blocked.

    The SDK exports this model but leaves it out of its ``unwrap()`` union;
    here it is a known type like the others.
    """

    id: str
    """The unique ID of the event."""

    created_at: int
    """The Unix timestamp (in seconds) of when the request was blocked."""

    data: SafetyIdentifierBlockedEventData
    """Event data payload."""

    type: t.Literal["safety_identifier.blocked"]
    """The type of the event. Always ``safety_identifier.blocked``."""

    object: t.Literal["event"] | None = None
    """The object of the event. Always ``event``."""


# --- Unknown events ----------------------------------------------------------


class UnknownWebhookEvent(_Model):
    """An event whose ``type`` this version does not model, for example
    ``video.completed``.

    Nothing is dropped: ``data`` holds the decoded JSON as is, and any other
    top-level field is an extra (``model_extra``, attribute access).
    """

    type: str
    """The event type, as sent."""

    id: str | None = None
    """The unique ID of the event, if sent."""

    created_at: int | None = None
    """The Unix timestamp (in seconds) of when the event was created, if
    sent.
    """

    object: str | None = None
    """The object of the event, normally ``event``."""

    data: t.Any = None
    """The event data payload, decoded from JSON but not validated."""


# --- Unions, lookup table and parsing ----------------------------------------

_KnownWebhookEvent: t.TypeAlias = (
    AgentEnvironmentExpiredWebhookEvent
    | AgentEnvironmentFailedWebhookEvent
    | AgentEnvironmentReadyWebhookEvent
    | AgentEnvironmentSuspendedWebhookEvent
    | AgentSessionActionRequiredWebhookEvent
    | AgentSessionCreatedWebhookEvent
    | AgentSessionFailedWebhookEvent
    | AgentSessionIdleWebhookEvent
    | AgentSessionInProgressWebhookEvent
    | BatchCancelledWebhookEvent
    | BatchCompletedWebhookEvent
    | BatchExpiredWebhookEvent
    | BatchFailedWebhookEvent
    | EvalRunCanceledWebhookEvent
    | EvalRunFailedWebhookEvent
    | EvalRunSucceededWebhookEvent
    | FineTuningJobCancelledWebhookEvent
    | FineTuningJobFailedWebhookEvent
    | FineTuningJobSucceededWebhookEvent
    | LiveCallIncomingWebhookEvent
    | LiveTransportConnectedWebhookEvent
    | LiveTransportIncomingWebhookEvent
    | RealtimeCallIncomingWebhookEvent
    | ResponseCancelledWebhookEvent
    | ResponseCompletedWebhookEvent
    | ResponseFailedWebhookEvent
    | ResponseIncompleteWebhookEvent
    | SafetyAlertCreatedWebhookEvent
    | SafetyDeactivationIssuedWebhookEvent
    | SafetyIdentifierBlockedWebhookEvent
    | SafetyOrgAlertCreatedWebhookEvent
    | SafetyWarningIssuedWebhookEvent
)

WebhookEvent: t.TypeAlias = _KnownWebhookEvent | UnknownWebhookEvent
"""Any event :func:`parse_event` returns: one of the 32 known event classes,
or :class:`UnknownWebhookEvent`.
"""

EVENT_TYPES: t.Mapping[str, type[BaseModel]] = types.MappingProxyType(
    {
        t.get_args(cls.model_fields["type"].annotation)[0]: cls
        for cls in t.get_args(_KnownWebhookEvent)
    }
)
"""Maps each known ``type`` string to its model class (read-only)."""


def _reject_known_type(event: UnknownWebhookEvent) -> UnknownWebhookEvent:
    # Only reached when the known union failed: a known type with the wrong
    # shape must stay an error, not become an unknown event.
    if event.type in EVENT_TYPES:
        raise PydanticCustomError("known_type", "known type with the wrong shape")

    return event


class _EventSchema:
    """Validation schema of :data:`WebhookEvent`: the known events as a union
    tagged by ``type``, then, only if that fails, an
    :class:`UnknownWebhookEvent` whose type is not a known one.

    pydantic-core parses the JSON once, looks the tag up natively and tries
    the second choice without raising, so an unknown type costs about as
    much as a known one. The choices are labelled ``known`` and ``unknown``
    in error locations.
    """

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: t.Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        known = handler.generate_schema(
            t.Annotated[_KnownWebhookEvent, Field(discriminator="type")]
        )
        unknown = core_schema.no_info_after_validator_function(
            _reject_known_type, handler.generate_schema(UnknownWebhookEvent)
        )
        return core_schema.union_schema(
            [(known, "known"), (unknown, "unknown")], mode="left_to_right"
        )


_adapter: TypeAdapter[WebhookEvent] = TypeAdapter(
    t.Annotated[WebhookEvent, _EventSchema]
)
# The core validator directly: TypeAdapter.validate_json adds about 0.3 us of
# Python per call, 15% of a small event's parse.
_validate_json: t.Callable[[bytes | str], WebhookEvent] = (
    _adapter.validator.validate_json
)

#: How many pydantic errors a schema error message lists before "and N more".
_MAX_ERRORS = 3


def parse_event(payload: bytes | str) -> WebhookEvent:
    """Parse and validate a webhook body.

    The body is validated against the model for its ``type``. A ``type``
    this module does not know gives an :class:`UnknownWebhookEvent` holding
    everything that was sent.

    :param payload: The raw request body, exactly as received.
    :raises WebhookPayloadError: The body is not UTF-8 JSON, not a JSON
        object, has no string ``type``, or is a known type with the wrong
        shape. Nothing else is raised, whatever the input.
    """
    try:
        return _validate_json(payload)
    except ValidationError as e:
        raise WebhookPayloadError(_describe(e)) from e


def _describe(error: ValidationError) -> str:
    """Say in one line why a body failed validation, without echoing the
    input.
    """
    errors = error.errors(include_url=False, include_input=False)
    # The first error is from the known-types choice, or has an empty
    # location if the JSON itself is bad.
    first = errors[0]
    kind = first["type"]

    if kind == "json_invalid" or kind == "string_unicode":
        return "body is not valid JSON"

    if kind == "dict_type":
        return "body is not a JSON object"

    if kind == "union_tag_not_found":
        return "event has no string 'type' field"

    if kind == "union_tag_invalid":
        # Not a known type: the second choice says what is wrong.
        unknown = [e for e in errors if e["loc"][:1] == ("unknown",)]

        if not unknown or any(e["loc"] == ("unknown", "type") for e in unknown):
            return "event has no string 'type' field"

        tag = _short(str(first.get("ctx", {}).get("tag", "")))
        return (
            f"{tag} event does not match the generic event schema:"
            f" {_summarize(unknown, skip=1)}"
        )

    # A known type with the wrong shape. Locations are ("known", tag, ...).
    known = [e for e in errors if e["loc"][:1] == ("known",)]
    what = f"{first['loc'][1]} event" if len(first["loc"]) > 1 else "event"
    return f"{what} does not match its schema: {_summarize(known, skip=2)}"


def _summarize(errors: list[ErrorDetails], *, skip: int) -> str:
    """Describe validation errors in one short line, without the input
    values (which could be large or sensitive).

    :param errors: From ``ValidationError.errors(include_input=False)``.
    :param skip: How many leading location items to leave out (the union
        tag).
    """
    parts = []

    for error in errors[:_MAX_ERRORS]:
        loc = ".".join(str(item) for item in error["loc"][skip:]) or "event"
        parts.append(f"{loc}: {error['msg']}")

    if len(errors) > _MAX_ERRORS:
        parts.append(f"and {len(errors) - _MAX_ERRORS} more")

    return "; ".join(parts)


def _short(text: str, limit: int = 64) -> str:
    """Make text taken from the payload safe to put in a message: at most
    ``limit`` characters, and quoted if it is not printable.
    """
    if len(text) > limit:
        text = f"{text[: limit - 3]}..."

    return text if text.isprintable() else repr(text)


def object_id_of(event: WebhookEvent) -> str | None:
    """The id of the object an event names, for the delivery log and for
    fetching it: ``data.id`` (batches, responses, jobs, runs, sessions,
    alerts), ``data.call_id`` (realtime calls) or ``data.session_id`` (live
    transports); ``None`` when the event names none.
    """
    data = event.data
    for name in ("id", "call_id", "session_id"):
        value = data.get(name) if isinstance(data, dict) else getattr(data, name, None)
        if isinstance(value, str):
            return value
    return None
