"""One attempt at a delivery, owned by one object.

An attempt starts with an acquired :class:`~flask_openai_webhooks.stores.Claim`
and ends with :meth:`Attempt.finish`. In between, every receiver's result
goes through :meth:`Attempt.ran`, which writes the results still unwritten
before the next receiver runs. So a worker killed half way loses at most
the result of the receiver that was running, and the finishing write
carries exactly what was not written yet, whichever way the attempt ends.

No Flask import: the blueprint, the replay and the task queue all use it.
"""

from __future__ import annotations

import logging
import time
import traceback as tb

from .errors import PermanentFailure
from .errors import RetryLater
from .errors import StoreError
from .stores import bounded
from .stores import DeliveryRecord
from .stores import DeliveryStatus
from .stores import DeliveryStore
from .stores import MAX_MESSAGE
from .stores import MAX_TRACEBACK
from .stores import Outcome
from .stores import ReceiverResult
from .stores import Source

logger = logging.getLogger(__name__.rpartition(".")[0])


def result_for(
    key: str,
    *,
    previous: DeliveryRecord | None,
    started: float,
    error: BaseException | None = None,
    outcome: Outcome | None = None,
) -> ReceiverResult:
    """The result of a receiver run that started at ``started`` (monotonic)
    and raised ``error`` (or not), counting earlier attempts from
    ``previous``. A bounded traceback is kept for failures, never locals.
    """
    ended = time.monotonic()
    earlier = previous.receiver(key) if previous is not None else None
    attempts = (earlier.attempts if earlier is not None else 0) + 1
    if error is None:
        return ReceiverResult(
            key,
            outcome or "ok",
            attempts=attempts,
            duration=ended - started,
            at=time.time(),
        )
    if outcome is None:
        if isinstance(error, PermanentFailure):
            outcome = "gave_up"
        elif isinstance(error, RetryLater):
            outcome = "retry_later"
        else:
            outcome = "failed"
    return ReceiverResult(
        key,
        outcome,
        attempts=attempts,
        duration=ended - started,
        at=time.time(),
        error_type=f"{type(error).__module__}.{type(error).__qualname__}",
        error_message=bounded(str(error), MAX_MESSAGE),
        traceback=bounded("".join(tb.format_exception(error)), MAX_TRACEBACK),
    )


class Attempt:
    """The owner of one attempt at a delivery: which receivers ran, what
    was written, and the final write.

    :param store: Where the delivery was claimed.
    :param webhook_id: The claimed delivery.
    :param token: The lease token of the claim.
    :param previous: The record as it was before the claim, if any.
    :param source: What started the attempt (a delivery, a replay, ...).
    :param retention: Seconds to keep the record after finishing.
    """

    def __init__(
        self,
        store: DeliveryStore,
        webhook_id: str,
        token: str,
        *,
        previous: DeliveryRecord | None,
        source: Source,
        retention: float,
    ) -> None:
        self.store = store
        self.webhook_id = webhook_id
        self.token = token
        self.previous = previous
        self.source: Source = source
        self.retention = retention
        #: Every result of this attempt, in the order the receivers ran.
        self.results: list[ReceiverResult] = []
        self._unwritten: list[ReceiverResult] = []
        self.finished = False

    def before_receiver(self) -> None:
        """Write the results still unwritten, before the next receiver
        runs. Best effort: on a store error they stay for :meth:`finish`,
        which fails the attempt (503) if it cannot write them either.
        """
        if not self._unwritten:
            return
        try:
            self.store.record(self.webhook_id, self.token, self._unwritten)
        except StoreError:
            logger.warning(
                "could not record receivers of webhook-id %s yet", self.webhook_id
            )
        else:
            self._unwritten = []

    def ran(self, result: ReceiverResult) -> None:
        """Note a receiver's result; it is written before the next receiver
        runs, or by :meth:`finish`."""
        self.results.append(result)
        self._unwritten.append(result)

    def result_for(
        self,
        key: str,
        started: float,
        error: BaseException | None = None,
        *,
        outcome: Outcome | None = None,
    ) -> ReceiverResult:
        """Build a receiver's result; see :func:`result_for`."""
        return result_for(
            key, previous=self.previous, started=started, error=error, outcome=outcome
        )

    def finish(self, status: DeliveryStatus, status_code: int | None) -> None:
        """Write what is unwritten, the status, and release the lease.

        :raises StoreError: Nothing could be written; the caller asks for a
            retry (503), since running a receiver again beats losing it.
        """
        self.store.finish(
            self.webhook_id,
            self.token,
            self._unwritten,
            status=status,
            status_code=status_code,
            source=self.source,
            retention=self.retention,
        )
        self._unwritten = []
        self.finished = True

    def abandon(self) -> None:
        """End an attempt cut short by a ``BaseException`` (a worker
        timeout's ``SystemExit``, a cancelled task): keep the successes so
        far, and release the lease so the retry runs the rest now rather
        than after the lease. Never raises.
        """
        if self.finished:
            return
        try:
            self.finish("failed", None)
        except Exception:
            logger.exception(
                "could not record the interrupted attempt of webhook-id %s",
                self.webhook_id,
            )

    @property
    def failures(self) -> list[ReceiverResult]:
        return [r for r in self.results if r.outcome != "ok"]

    def succeeded(self, key: str) -> bool:
        """Whether the receiver ``key`` succeeded in this attempt."""
        return any(r.key == key and r.outcome == "ok" for r in self.results)
