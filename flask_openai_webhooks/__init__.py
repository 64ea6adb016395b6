"""Receive, verify and dispatch OpenAI webhooks in Flask.

.. code-block:: python

    from flask_openai_webhooks import make_blueprint, batch_completed

    app.register_blueprint(make_blueprint())

    @batch_completed.connect
    def on_batch_completed(app, event, **extra):
        ...
"""

from __future__ import annotations

import typing as t

from . import log as log
from .blueprint import make_blueprint as make_blueprint
from .errors import PermanentFailure as PermanentFailure
from .errors import RetryLater as RetryLater
from .errors import StoreError as StoreError
from .errors import WebhookError as WebhookError
from .errors import WebhookPayloadError as WebhookPayloadError
from .errors import WebhookVerificationError as WebhookVerificationError
from .models import (
    AgentEnvironmentExpiredWebhookEvent as AgentEnvironmentExpiredWebhookEvent,
)
from .models import (
    AgentEnvironmentFailedWebhookEvent as AgentEnvironmentFailedWebhookEvent,
)
from .models import (
    AgentEnvironmentReadyWebhookEvent as AgentEnvironmentReadyWebhookEvent,
)
from .models import (
    AgentEnvironmentSuspendedWebhookEvent as AgentEnvironmentSuspendedWebhookEvent,
)
from .models import (
    AgentSessionActionRequiredWebhookEvent as AgentSessionActionRequiredWebhookEvent,
)
from .models import AgentSessionCreatedWebhookEvent as AgentSessionCreatedWebhookEvent
from .models import AgentSessionFailedWebhookEvent as AgentSessionFailedWebhookEvent
from .models import AgentSessionIdleWebhookEvent as AgentSessionIdleWebhookEvent
from .models import (
    AgentSessionInProgressWebhookEvent as AgentSessionInProgressWebhookEvent,
)
from .models import Batch as Batch
from .models import BatchCancelledWebhookEvent as BatchCancelledWebhookEvent
from .models import BatchCompletedWebhookEvent as BatchCompletedWebhookEvent
from .models import BatchError as BatchError
from .models import BatchErrors as BatchErrors
from .models import BatchExpiredWebhookEvent as BatchExpiredWebhookEvent
from .models import BatchFailedWebhookEvent as BatchFailedWebhookEvent
from .models import BatchRequestCounts as BatchRequestCounts
from .models import BatchUsage as BatchUsage
from .models import EvalRunCanceledWebhookEvent as EvalRunCanceledWebhookEvent
from .models import EvalRunFailedWebhookEvent as EvalRunFailedWebhookEvent
from .models import EvalRunSucceededWebhookEvent as EvalRunSucceededWebhookEvent
from .models import EVENT_TYPES as EVENT_TYPES
from .models import (
    FineTuningJobCancelledWebhookEvent as FineTuningJobCancelledWebhookEvent,
)
from .models import FineTuningJobFailedWebhookEvent as FineTuningJobFailedWebhookEvent
from .models import (
    FineTuningJobSucceededWebhookEvent as FineTuningJobSucceededWebhookEvent,
)
from .models import LiveCallIncomingWebhookEvent as LiveCallIncomingWebhookEvent
from .models import (
    LiveTransportConnectedWebhookEvent as LiveTransportConnectedWebhookEvent,
)
from .models import (
    LiveTransportIncomingWebhookEvent as LiveTransportIncomingWebhookEvent,
)
from .models import parse_event as parse_event
from .models import RealtimeCallIncomingWebhookEvent as RealtimeCallIncomingWebhookEvent
from .models import ResponseCancelledWebhookEvent as ResponseCancelledWebhookEvent
from .models import ResponseCompletedWebhookEvent as ResponseCompletedWebhookEvent
from .models import ResponseFailedWebhookEvent as ResponseFailedWebhookEvent
from .models import ResponseIncompleteWebhookEvent as ResponseIncompleteWebhookEvent
from .models import SafetyAlertCreatedWebhookEvent as SafetyAlertCreatedWebhookEvent
from .models import (
    SafetyDeactivationIssuedWebhookEvent as SafetyDeactivationIssuedWebhookEvent,
)
from .models import (
    SafetyIdentifierBlockedWebhookEvent as SafetyIdentifierBlockedWebhookEvent,
)
from .models import (
    SafetyOrgAlertCreatedWebhookEvent as SafetyOrgAlertCreatedWebhookEvent,
)
from .models import SafetyWarningIssuedWebhookEvent as SafetyWarningIssuedWebhookEvent
from .models import UnknownWebhookEvent as UnknownWebhookEvent
from .models import WebhookEvent as WebhookEvent
from .signals import agent_environment_expired as agent_environment_expired
from .signals import agent_environment_failed as agent_environment_failed
from .signals import agent_environment_ready as agent_environment_ready
from .signals import agent_environment_suspended as agent_environment_suspended
from .signals import agent_session_action_required as agent_session_action_required
from .signals import agent_session_created as agent_session_created
from .signals import agent_session_failed as agent_session_failed
from .signals import agent_session_idle as agent_session_idle
from .signals import agent_session_in_progress as agent_session_in_progress
from .signals import batch_cancelled as batch_cancelled
from .signals import batch_completed as batch_completed
from .signals import batch_expired as batch_expired
from .signals import batch_failed as batch_failed
from .signals import eval_run_canceled as eval_run_canceled
from .signals import eval_run_failed as eval_run_failed
from .signals import eval_run_succeeded as eval_run_succeeded
from .signals import event_signal as event_signal
from .signals import fine_tuning_job_cancelled as fine_tuning_job_cancelled
from .signals import fine_tuning_job_failed as fine_tuning_job_failed
from .signals import fine_tuning_job_succeeded as fine_tuning_job_succeeded
from .signals import live_call_incoming as live_call_incoming
from .signals import live_transport_connected as live_transport_connected
from .signals import live_transport_incoming as live_transport_incoming
from .signals import realtime_call_incoming as realtime_call_incoming
from .signals import receiver as receiver
from .signals import response_cancelled as response_cancelled
from .signals import response_completed as response_completed
from .signals import response_failed as response_failed
from .signals import response_incomplete as response_incomplete
from .signals import safety_alert_created as safety_alert_created
from .signals import safety_deactivation_issued as safety_deactivation_issued
from .signals import safety_identifier_blocked as safety_identifier_blocked
from .signals import safety_org_alert_created as safety_org_alert_created
from .signals import safety_warning_issued as safety_warning_issued
from .signals import webhook_failed as webhook_failed
from .signals import webhook_received as webhook_received
from .signals import webhook_rejected as webhook_rejected
from .stores import DeliveryRecord as DeliveryRecord
from .stores import DeliveryStore as DeliveryStore
from .stores.memory import MemoryStore as MemoryStore
from .stores.sqlite import SQLiteStore as SQLiteStore
from .verify import sign as sign
from .verify import verify_signature as verify_signature


def __getattr__(name: str) -> t.Any:
    # Stores whose driver is an optional extra: imported on first use, so
    # importing the package never needs redis or SQLAlchemy.
    if name in ("RedisStore", "SQLStore"):
        from . import stores

        return getattr(stores, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
