"""Standard Webhooks signature verification, as OpenAI signs deliveries.

Framework-free on purpose: it takes the raw body and any header mapping, so
it can be used from a queue consumer or a test as easily as from the
blueprint.

OpenAI signs ``"{webhook-id}.{webhook-timestamp}.{body}"`` with HMAC-SHA256
and sends ``v1,<base64>`` in ``webhook-signature``. The checks here agree
with the ``openai`` SDK on every genuine delivery, and are stricter where
the SDK is unsafe or lets a misconfiguration pass silently:

-   a secret given as text must be ``whsec_`` plus strict base64 of a
    non-empty key (the SDK accepts ``whsec_`` with an empty key, so anyone
    can forge, and uses any other string as a raw key, so a quoted secret
    or an API key fails every delivery with no hint why). A raw key is
    passed explicitly, as ``bytes``;
-   junk in the headers is a clean :exc:`WebhookVerificationError`, never a
    crash;
-   only ``v1,`` entries are compared (the SDK also compares bare entries).
"""

from __future__ import annotations

import base64
import binascii
import collections.abc as c
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
# Every OpenAI API key starts with this (``sk-proj-``, ``sk-svcacct-``,
# ``sk-admin-`` and the legacy ``sk-``).
_API_KEY_PREFIX = "sk-"
_QUOTES = "\"'"


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
    """Turn a configured secret into the HMAC key.

    -   ``str``: must be ``whsec_<base64>``, exactly as the OpenAI dashboard
        shows it; the base64 part, decoded strictly, is the key;
    -   ``bytes``: used as the key directly. This is the only way to give a
        raw key, so that a mangled ``whsec_`` secret cannot pass as one.

    The SDK uses any string without ``whsec_`` as a raw UTF-8 key. Here
    that is an error instead, because in practice such a string is a
    mistake (quotes kept by an env-file, a newline read from a file, an API
    key) that would otherwise fail every delivery with only
    ``signature_mismatch`` to go on.

    :raises ValueError: The secret is not usable; the message names the
        likely mistake. It never contains the secret or any part of it, so
        it is safe to log.
    """
    if isinstance(secret, bytes):
        if not secret:
            raise ValueError("the secret is empty")
        if secret.startswith(_SECRET_PREFIX.encode()):
            raise ValueError(
                "the secret is bytes starting with 'whsec_'; pass the signing"
                " secret as a str (bytes are used as a raw key)"
            )
        return secret
    if not isinstance(secret, str):
        raise ValueError(_wrong_type(secret))
    if not secret:
        raise ValueError("the secret is empty")
    if secret != secret.strip():
        raise ValueError(
            "the secret has leading or trailing whitespace (a newline from a file?)"
        )
    if (secret[0] == "[" and secret[-1] == "]") or secret.count(_SECRET_PREFIX) > 1:
        raise ValueError(
            "the secret looks like a list of secrets in one string; a list of"
            " secrets must be given as a Python list in app.config (or"
            " FLASK_OPENAI_WEBHOOK_SECRET parsed as JSON by"
            " app.config.from_prefixed_env), not as a string"
        )
    if len(secret) > 1 and secret[0] == secret[-1] and secret[0] in _QUOTES:
        raise ValueError("the secret is wrapped in quotes")
    if secret.startswith(_API_KEY_PREFIX):
        raise ValueError(
            "this is an OpenAI API key, not the endpoint's signing secret (whsec_...)"
        )
    if not secret.startswith(_SECRET_PREFIX):
        raise ValueError(
            "the secret does not start with 'whsec_'; copy the signing secret"
            " exactly as the OpenAI dashboard shows it, or pass bytes for a raw key"
        )
    try:
        key = base64.b64decode(secret[len(_SECRET_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the part after 'whsec_' is not valid base64") from None
    if not key:
        raise ValueError("the part after 'whsec_' decodes to an empty key")
    return key


def decode_secrets(secret: SecretOrSecrets) -> tuple[bytes, ...]:
    """Decode one secret or a list (or tuple) of them, for rotation, in
    order.

    :raises ValueError: The list is empty, is not a list, or an entry is
        invalid; the message names the entry by position, never its value.
    """
    if isinstance(secret, (str, bytes)):
        return (decode_secret(secret),)
    if not isinstance(secret, (list, tuple)):
        # Not just any iterable: a set or a dict has no order to rotate by,
        # and a bytearray would pass for a list of numbers.
        raise ValueError(_wrong_type(secret, or_list=True))
    if not secret:
        raise ValueError("the list of secrets is empty")
    keys = []
    for index, item in enumerate(secret):
        try:
            keys.append(decode_secret(item))
        except ValueError as e:
            raise ValueError(f"secret #{index + 1}: {e}") from None
    return tuple(keys)


def _wrong_type(secret: object, *, or_list: bool = False) -> str:
    # The type only: the value may be the secret.
    allowed = "str (whsec_...), bytes (a raw key) or a list of them"
    if not or_list:
        allowed = "str (whsec_...) or bytes (a raw key)"
    return f"a secret must be a {allowed}, not {type(secret).__name__}"


def sign(
    payload: bytes | str,
    *,
    secret: Secret,
    webhook_id: str,
    timestamp: int | str,
) -> str:
    """Return the ``v1,<base64>`` signature OpenAI would send for a body.

    See :func:`signed_headers` for all three headers at once.
    """
    return _signature(decode_secret(secret), webhook_id, str(timestamp), payload)


def signed_headers(
    body: bytes | str,
    *,
    secret: SecretOrSecrets,
    webhook_id: str,
    timestamp: int | None = None,
) -> dict[str, str]:
    """Return the three headers OpenAI would send with a body:
    ``webhook-id``, ``webhook-timestamp`` and ``webhook-signature``.

    What the test kit and the ``send`` command post; handy to sign a
    delivery for any other receiver too.

    :param body: The exact bytes that will be sent; text is signed as UTF-8.
    :param secret: The signing secret, or a list of them, in which case the
        first signs (the one :class:`Verified` reports as ``key_index`` 0).
        Every entry is checked, as the blueprint would.
    :param webhook_id: The delivery's id. Reuse one to simulate a retry.
    :param timestamp: Unix time of the signature; defaults to now. Pass an
        old one to test the tolerance.
    :raises ValueError: The secret is not usable (see :func:`decode_secret`).
    """
    key = decode_secrets(secret)[0]
    stamp = str(int(time.time() if timestamp is None else timestamp))
    return {
        HEADER_ID: webhook_id,
        HEADER_TIMESTAMP: stamp,
        HEADER_SIGNATURE: _signature(key, webhook_id, stamp, body),
    }


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
    returning what was verified.

    Nothing is cached between calls, so a retired key is not kept alive by
    this module. For many deliveries with the same keys, a :class:`Verifier`
    (what the blueprint uses) prepares the keys once and skips the header
    lookups.
    """
    return Verifier(keys, tolerance=tolerance).verify(
        payload,
        _header(headers, HEADER_ID),
        _header(headers, HEADER_TIMESTAMP),
        _header(headers, HEADER_SIGNATURE),
        now=now,
    )


class Verifier:
    """Verifies deliveries against fixed keys and a fixed tolerance.

    The blueprint builds one per registration. Each key's HMAC is set up
    here, once, and copied for each delivery, which is cheaper than setting
    it up again from the key (:meth:`hmac.HMAC.copy`).

    :param keys: Decoded HMAC keys (see :func:`decode_secrets`), in order of
        preference.
    :param tolerance: Seconds the timestamp may be off, either way.
    """

    __slots__ = ("keys", "tolerance", "_macs")

    def __init__(
        self, keys: c.Sequence[bytes], *, tolerance: int = DEFAULT_TOLERANCE
    ) -> None:
        if not keys or not all(keys):
            raise ValueError("at least one non-empty key is needed")
        #: The decoded keys.
        self.keys = tuple(keys)
        #: Seconds the timestamp may be off, either way.
        self.tolerance = tolerance
        self._macs = tuple(hmac.new(key, digestmod=hashlib.sha256) for key in self.keys)

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
        for index, prepared in enumerate(self._macs):
            mac = prepared.copy()
            mac.update(prefix)
            mac.update(body)
            expected = binascii.b2a_base64(mac.digest(), newline=False)
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


def _signature(key: bytes, webhook_id: str, timestamp: str, body: bytes | str) -> str:
    """``v1,`` and the base64 of the HMAC-SHA256 over the raw bytes."""
    payload = body.encode("utf-8") if isinstance(body, str) else body
    message = f"{webhook_id}.{timestamp}.".encode() + payload
    mac = hmac.digest(key, message, hashlib.sha256)
    return "v1," + base64.b64encode(mac).decode("ascii")


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
