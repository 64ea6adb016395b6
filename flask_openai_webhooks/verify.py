"""Standard Webhooks signature verification, as OpenAI signs deliveries.

Framework-free on purpose: it takes the raw body and any header mapping, so
it can be used from a queue consumer or a test as easily as from the
blueprint.

OpenAI signs ``"{webhook-id}.{webhook-timestamp}.{body}"`` with HMAC-SHA256
and sends ``v1,<base64>`` in ``webhook-signature``. The checks here agree
with the ``openai`` SDK on every genuine delivery, and are stricter where
the SDK is unsafe:

-   a ``whsec_`` secret must decode as strict base64 to a non-empty key (the
    SDK accepts ``whsec_`` with an empty key, so anyone can forge);
-   junk in the headers is a clean :exc:`WebhookVerificationError`, never a
    crash;
-   only ``v1,`` entries are compared (the SDK also compares bare entries).
"""

from __future__ import annotations

import base64
import binascii
import collections.abc as c
import functools
import hashlib
import hmac
import time
import typing as t

from .errors import WebhookVerificationError

#: Seconds a delivery's timestamp may differ from the local clock, either
#: way. The same default as the ``openai`` SDK and Stripe.
DEFAULT_TOLERANCE = 300

HEADER_ID = "webhook-id"
HEADER_TIMESTAMP = "webhook-timestamp"
HEADER_SIGNATURE = "webhook-signature"

#: Keys shorter than this are accepted but worth a warning: the Standard
#: Webhooks spec recommends 24 to 64 random bytes.
MIN_RECOMMENDED_KEY_BYTES = 24

_SECRET_PREFIX = "whsec_"
_MAX_ID_LENGTH = 256
_MAX_TIMESTAMP_LENGTH = 20
_SHA256_BLOCK = 64


class HeadersLike(t.Protocol):
    """Anything with a ``get`` method, such as Werkzeug's ``Headers``."""

    def get(self, key: str, /) -> str | None: ...


Secret: t.TypeAlias = "str | bytes"
SecretOrSecrets: t.TypeAlias = "str | bytes | c.Sequence[str | bytes]"


class Verified(t.NamedTuple):
    """What :func:`verify_with_keys` learned from an authentic delivery."""

    #: The ``webhook-id`` header, the same on every retry of one event.
    webhook_id: str
    #: The ``webhook-timestamp`` header as an integer.
    timestamp: int
    #: Index of the configured key that matched. Anything but 0 during a
    #: rotation means the old secret is still in use.
    key_index: int


def decode_secret(secret: Secret) -> bytes:
    """Turn a configured secret into the HMAC key, as the SDK does.

    -   ``whsec_<base64>``: the base64 part, decoded strictly;
    -   any other string: its UTF-8 bytes, used as the key directly;
    -   ``bytes``: used as the key directly.

    :raises ValueError: The secret is empty, or its ``whsec_`` part is not
        strict base64 of at least one byte. The message never contains the
        secret.
    """
    if isinstance(secret, bytes):
        key = secret
    elif isinstance(secret, str):
        if secret.startswith(_SECRET_PREFIX):
            try:
                key = base64.b64decode(secret[len(_SECRET_PREFIX) :], validate=True)
            except (binascii.Error, ValueError):
                raise ValueError(
                    "the part after 'whsec_' is not valid base64"
                ) from None
            if not key:
                raise ValueError("the part after 'whsec_' decodes to an empty key")
        else:
            key = secret.encode("utf-8")
    else:
        raise ValueError(f"a secret must be str or bytes, not {type(secret).__name__}")
    if not key:
        raise ValueError("the secret is empty")
    return key


def decode_secrets(secret: SecretOrSecrets) -> tuple[bytes, ...]:
    """Decode one secret or a list of them (for rotation), in order.

    :raises ValueError: The list is empty or an entry is invalid; the message
        names the entry by position.
    """
    if isinstance(secret, (str, bytes)):
        return (decode_secret(secret),)
    items = list(secret)
    if not items:
        raise ValueError("the list of secrets is empty")
    keys = []
    for index, item in enumerate(items):
        try:
            keys.append(decode_secret(item))
        except ValueError as e:
            raise ValueError(f"secret #{index + 1}: {e}") from None
    return tuple(keys)


def sign(
    payload: bytes | str,
    *,
    secret: Secret,
    webhook_id: str,
    timestamp: int | str,
) -> str:
    """Return the ``v1,<base64>`` signature OpenAI would send for a body.

    Used by the test kit and the ``send`` command; handy for tests of your
    own.
    """
    key = decode_secret(secret)
    body = payload.encode("utf-8") if isinstance(payload, str) else payload
    return "v1," + _mac(key, webhook_id, str(timestamp), body).decode("ascii")


def verify_signature(
    payload: bytes | str,
    headers: c.Mapping[str, str] | HeadersLike,
    *,
    secret: SecretOrSecrets,
    tolerance: int = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> None:
    """Check that a delivery was signed by OpenAI, recently.

    :param payload: The raw request body, exactly as received. Re-serialised
        JSON will not match.
    :param headers: The request headers: Werkzeug's ``request.headers`` or
        any mapping. Names are matched case-insensitively.
    :param secret: The endpoint's signing secret, or a list of them while
        rotating. Any one matching is enough.
    :param tolerance: Seconds the ``webhook-timestamp`` may be away from
        ``now``, in the past or the future (inclusive). Limits replays.
    :param now: The current Unix time; defaults to the clock. Tests pass it
        instead of patching time.
    :raises WebhookVerificationError: A check failed; the message names it.
    :raises ValueError: The configured secret itself is invalid.
    """
    verify_with_keys(
        payload, headers, decode_secrets(secret), tolerance=tolerance, now=now
    )


def verify_with_keys(
    payload: bytes | str,
    headers: c.Mapping[str, str] | HeadersLike,
    keys: c.Sequence[bytes],
    *,
    tolerance: int = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> Verified:
    """Like :func:`verify_signature`, with keys decoded in advance, and
    returning what was verified. For many deliveries with the same keys, a
    :class:`Verifier` (what the blueprint uses) skips the header lookups.
    """
    return _verifier(tuple(keys), tolerance).verify(
        payload,
        _header(headers, HEADER_ID),
        _header(headers, HEADER_TIMESTAMP),
        _header(headers, HEADER_SIGNATURE),
        now=now,
    )


@functools.lru_cache(maxsize=16)
def _verifier(keys: tuple[bytes, ...], tolerance: int) -> Verifier:
    """The functional API's verifiers, kept for the few keys a process uses
    so each call does not redo the HMAC key setup."""
    return Verifier(keys, tolerance=tolerance)


class Verifier:
    """Verifies deliveries against fixed keys and a fixed tolerance.

    The blueprint builds one per registration. The SHA-256 states of each
    key's HMAC pads are computed here, once, so a delivery costs two hash
    state copies instead of a full HMAC setup: about a third of the time of
    :func:`hmac.digest`, with the same result.

    :param keys: Decoded HMAC keys (see :func:`decode_secrets`), in order of
        preference.
    :param tolerance: Seconds the timestamp may be off, either way.
    """

    __slots__ = ("keys", "tolerance", "_states")

    def __init__(
        self, keys: c.Sequence[bytes], *, tolerance: int = DEFAULT_TOLERANCE
    ) -> None:
        if not keys or not all(keys):
            raise ValueError("at least one non-empty key is needed")
        #: The decoded keys.
        self.keys = tuple(keys)
        #: Seconds the timestamp may be off, either way.
        self.tolerance = tolerance
        self._states = tuple(_pad_states(key) for key in self.keys)

    def verify(
        self,
        payload: bytes | str,
        webhook_id: object,
        raw_timestamp: object,
        signature_header: object,
        *,
        now: float | None = None,
    ) -> Verified:
        """Check one delivery, given its three header values (``None`` where
        missing). The blueprint reads them straight from the WSGI environ,
        saving three case-insensitive header lookups.

        :raises WebhookVerificationError: A check failed; the message names it.
        """
        # The common shapes are tested inline; _require only runs to raise
        # (or to accept a str subclass).
        if type(webhook_id) is not str or not webhook_id:
            webhook_id = _require(webhook_id, HEADER_ID)
        if type(raw_timestamp) is not str or not raw_timestamp:
            raw_timestamp = _require(raw_timestamp, HEADER_TIMESTAMP)
        if type(signature_header) is not str or not signature_header:
            signature_header = _require(signature_header, HEADER_SIGNATURE)

        if not (
            len(webhook_id) <= _MAX_ID_LENGTH
            and webhook_id.isascii()
            and webhook_id.isprintable()
            and " " not in webhook_id
        ):
            # Used as a storage key and in logs: printable ASCII only.
            raise WebhookVerificationError(
                f"the {HEADER_ID} header is malformed", code="invalid_webhook_id"
            )

        stripped = raw_timestamp.strip()
        if not (
            stripped.isdigit()
            and stripped.isascii()
            and len(stripped) <= _MAX_TIMESTAMP_LENGTH
        ):
            raise WebhookVerificationError(
                f"the {HEADER_TIMESTAMP} header is not a Unix time in whole seconds",
                code="invalid_timestamp",
            )
        timestamp = int(stripped)
        current = int(time.time() if now is None else now)
        tolerance = self.tolerance
        # Both ways: a stale timestamp is a replay, a future one is a replay
        # prepared in advance. Inclusive bounds, as in the SDK.
        if current - timestamp > tolerance:
            raise WebhookVerificationError(
                f"the {HEADER_TIMESTAMP} is too old (more than {tolerance} seconds"
                " in the past); check the server clock",
                code="timestamp_too_old",
            )
        if timestamp - current > tolerance:
            raise WebhookVerificationError(
                f"the {HEADER_TIMESTAMP} is too new (more than {tolerance} seconds"
                " in the future); check the server clock",
                code="timestamp_too_new",
            )

        if (
            signature_header[:3] == "v1,"
            and signature_header.isascii()
            and len(signature_header.split(None, 1)) == 1
            and len(signature_header) > 3
        ):
            # The usual case: one signature, no rotation in progress.
            candidates = [signature_header[3:].strip().encode("ascii")]
        else:
            candidates = [
                entry[3:].encode("ascii")
                for entry in signature_header.split()
                if entry[:3] == "v1," and len(entry) > 3 and entry.isascii()
            ]
        if not candidates:
            raise WebhookVerificationError(
                f"the {HEADER_SIGNATURE} header has no v1 signature",
                code="invalid_signature_header",
            )

        # The raw timestamp text is signed, spaces included, as in the SDK.
        prefix = f"{webhook_id}.{raw_timestamp}.".encode()
        body = payload.encode("utf-8") if isinstance(payload, str) else payload
        for index, (inner_pad, outer_pad) in enumerate(self._states):
            inner = inner_pad.copy()
            inner.update(prefix)
            inner.update(body)
            outer = outer_pad.copy()
            outer.update(inner.digest())
            expected = binascii.b2a_base64(outer.digest(), newline=False)
            matched = False
            # Compare against every entry, so the time taken does not depend
            # on which entry (if any) matched.
            for candidate in candidates:
                matched |= hmac.compare_digest(expected, candidate)
            if matched:
                return Verified(webhook_id, timestamp, index)
        raise WebhookVerificationError(
            "no signature in the webhook-signature header matches the secret",
            code="signature_mismatch",
        )


def _pad_states(key: bytes) -> tuple[t.Any, t.Any]:
    """SHA-256 states after absorbing the HMAC inner and outer pads
    (RFC 2104), ready to be copied for each message."""
    if len(key) > _SHA256_BLOCK:
        key = hashlib.sha256(key).digest()
    key = key.ljust(_SHA256_BLOCK, b"\0")
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
    outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))
    return inner, outer


def _mac(key: bytes, webhook_id: str, timestamp: str, body: bytes) -> bytes:
    """Base64 of the HMAC-SHA256 over the raw bytes, no decode round trip."""
    message = f"{webhook_id}.{timestamp}.".encode() + body
    return base64.b64encode(hmac.digest(key, message, hashlib.sha256))


def _header(headers: c.Mapping[str, str] | HeadersLike, name: str) -> object:
    value: object = headers.get(name)
    if value is None and isinstance(headers, c.Mapping):
        # A plain dict may use any case; Werkzeug's headers already ignore it.
        for key, item in headers.items():
            if isinstance(key, str) and key.lower() == name:
                return item
    return value


def _require(value: object, name: str) -> str:
    if value is None or value == "":
        raise WebhookVerificationError(
            f"the {name} header is missing", code="missing_header"
        )
    if not isinstance(value, str):
        raise WebhookVerificationError(
            f"the {name} header is not text", code="missing_header"
        )
    return value
