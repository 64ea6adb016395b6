"""Exceptions raised by the package and by receivers.

Nothing here imports Flask: the blueprint is the one place that turns these
into HTTP responses.
"""

from __future__ import annotations


class WebhookError(Exception):
    """Base class for every error raised for a bad delivery.

    :param message: Says which check failed. Safe to log and to return to
        the caller: it never contains a secret or a signature.
    :param code: A short machine-readable name for the failed check, used
        as the ``error`` field of the JSON error response.
    """

    code: str = "invalid_webhook"
    #: The HTTP status the blueprint answers with.
    status_code: int = 400

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class WebhookVerificationError(WebhookError, ValueError):
    """The delivery is not authentic: a header is missing or garbled, the
    timestamp is outside the tolerance, or no signature matches.

    A subclass of :class:`ValueError`, like the SDK's
    ``InvalidWebhookSignatureError``, so existing ``except ValueError`` code
    keeps working.
    """

    code = "invalid_signature"


class WebhookPayloadError(WebhookError, ValueError):
    """The delivery is authentic but its body is not a valid event: not
    JSON, not an object, no ``type``, or a known type with the wrong shape.
    """

    code = "invalid_payload"


class BodyTooLarge(WebhookError):
    """The body is over ``OPENAI_WEBHOOK_MAX_BODY``."""

    code = "body_too_large"
    status_code = 413


class StoreError(Exception):
    """The delivery store could not be reached or answered nonsense.

    The blueprint answers 503 so that OpenAI retries: an event is never
    acknowledged when its processing could not be recorded.
    """


class RetryLater(Exception):
    """Raise from a receiver to ask OpenAI to deliver the event again.

    The blueprint answers 503 with a ``Retry-After`` header (200 when
    ``OPENAI_WEBHOOK_ON_ERROR`` is ``"ack"``, which never asks for a retry).
    Receivers that already succeeded for this delivery are not run again on
    the retry.

    :param after: Seconds the sender should wait, a hint only: OpenAI uses
        its own backoff schedule.
    :param reason: Logged, never sent to the client.
    """

    def __init__(self, after: int | float = 60, reason: str = "") -> None:
        super().__init__(reason or f"retry after {after} seconds")
        self.after = max(0, int(after))
        self.reason = reason


class PermanentFailure(Exception):
    """Raise from a receiver when retrying cannot help, e.g. the batch it
    refers to belongs to another project.

    The failure is logged and recorded and ``webhook_failed`` is sent, but
    the delivery is acknowledged with a 2xx so OpenAI stops retrying.

    :param reason: Logged, never sent to the client.
    """

    def __init__(self, reason: str = "") -> None:
        super().__init__(reason or "permanent failure")
        self.reason = reason
