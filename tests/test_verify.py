from __future__ import annotations

import base64
import hashlib
import hmac
import json
import typing as t
from datetime import datetime
from datetime import timezone

import openai
import pytest
import standardwebhooks
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from flask_openai_webhooks import verify
from flask_openai_webhooks.errors import WebhookVerificationError
from flask_openai_webhooks.verify import decode_secret
from flask_openai_webhooks.verify import decode_secrets
from flask_openai_webhooks.verify import sign
from flask_openai_webhooks.verify import signed_headers
from flask_openai_webhooks.verify import Verifier
from flask_openai_webhooks.verify import verify_signature
from flask_openai_webhooks.verify import verify_with_keys

KEY = bytes(range(32))
SECRET = "whsec_" + base64.b64encode(KEY).decode()
OTHER_SECRET = "whsec_" + base64.b64encode(b"\xff" * 32).decode()
NOW = 1_750_287_078
BODY = json.dumps(
    {
        "id": "evt_685343a1381c819085d44c354e1b330e",
        "object": "event",
        "created_at": NOW,
        "type": "batch.completed",
        "data": {"id": "batch_abc"},
    }
).encode()


def headers_for(
    body: bytes = BODY,
    *,
    secret: str | bytes = SECRET,
    webhook_id: str = "wh_685342e6c53c8190a1be43f081506c52",
    timestamp: int = NOW,
) -> dict[str, str]:
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(
            body, secret=secret, webhook_id=webhook_id, timestamp=timestamp
        ),
    }


def sdk_client() -> openai.OpenAI:
    return openai.OpenAI(api_key="unused", webhook_secret=SECRET)


def test_signature_matches_hand_computed_hmac() -> None:
    signed = b"wh_1.123." + BODY
    expected = base64.b64encode(hmac.new(KEY, signed, hashlib.sha256).digest())
    assert sign(BODY, secret=SECRET, webhook_id="wh_1", timestamp=123) == (
        "v1," + expected.decode()
    )


def test_standardwebhooks_signature_verifies() -> None:
    hook = standardwebhooks.Webhook(SECRET)
    ts = datetime.fromtimestamp(NOW, tz=timezone.utc)
    signature = hook.sign("wh_std", ts, BODY.decode())
    headers = {
        "webhook-id": "wh_std",
        "webhook-timestamp": str(NOW),
        "webhook-signature": signature,
    }
    verify_signature(BODY, headers, secret=SECRET, now=NOW)


def test_our_signature_verifies_with_standardwebhooks_and_sdk() -> None:
    import time

    now = int(time.time())
    headers = headers_for(timestamp=now)
    standardwebhooks.Webhook(SECRET).verify(BODY, headers)
    sdk_client().webhooks.verify_signature(BODY, headers, secret=SECRET)


@pytest.mark.parametrize(
    "offset",
    [-300, -299, 0, 299, 300, -301, 301],
    ids=lambda o: f"offset{o:+d}",
)
def test_tolerance_agrees_with_sdk_both_ways(offset: int) -> None:
    """Exactly the tolerance is accepted, one second more is not, in both
    directions, the same as the SDK."""
    import time

    sdk = sdk_client()
    # The SDK reads the clock itself: an attempt during which the second
    # ticked tested another offset, so it is tried again.
    for _attempt in range(5):
        now = int(time.time())
        headers = headers_for(timestamp=now + offset)
        try:
            sdk.webhooks.verify_signature(BODY, headers, secret=SECRET)
            sdk_ok = True
        except ValueError:
            sdk_ok = False
        if int(time.time()) == now:
            break
    try:
        verify_signature(BODY, headers, secret=SECRET, now=now)
        ours_ok = True
    except WebhookVerificationError:
        ours_ok = False
    assert ours_ok == sdk_ok == (abs(offset) <= 300)


@pytest.mark.parametrize(
    ("offset", "code"),
    [(-301, "timestamp_too_old"), (301, "timestamp_too_new")],
    ids=["past", "future"],
)
def test_timestamp_outside_tolerance_names_direction(offset: int, code: str) -> None:
    headers = headers_for(timestamp=NOW + offset)
    with pytest.raises(WebhookVerificationError) as info:
        verify_signature(BODY, headers, secret=SECRET, now=NOW)
    assert info.value.code == code


def test_custom_tolerance() -> None:
    headers = headers_for(timestamp=NOW - 1000)
    verify_signature(BODY, headers, secret=SECRET, now=NOW, tolerance=1000)
    with pytest.raises(WebhookVerificationError):
        verify_signature(BODY, headers, secret=SECRET, now=NOW, tolerance=999)


@pytest.mark.parametrize(
    ("mutate", "code"),
    [
        (lambda h: h.pop("webhook-id"), "missing_header"),
        (lambda h: h.pop("webhook-timestamp"), "missing_header"),
        (lambda h: h.pop("webhook-signature"), "missing_header"),
        (lambda h: h.update({"webhook-id": ""}), "missing_header"),
        (lambda h: h.update({"webhook-id": "wh 1"}), "invalid_webhook_id"),
        (lambda h: h.update({"webhook-id": "wh_\x00"}), "invalid_webhook_id"),
        (lambda h: h.update({"webhook-id": "x" * 257}), "invalid_webhook_id"),
        (lambda h: h.update({"webhook-id": "wh_é"}), "invalid_webhook_id"),
        (lambda h: h.update({"webhook-timestamp": "abc"}), "invalid_timestamp"),
        (
            lambda h: h.update({"webhook-timestamp": "1750287078.5"}),
            "invalid_timestamp",
        ),
        (lambda h: h.update({"webhook-timestamp": "-1"}), "invalid_timestamp"),
        (lambda h: h.update({"webhook-timestamp": "١٢٣"}), "invalid_timestamp"),
        (lambda h: h.update({"webhook-timestamp": "9" * 40}), "invalid_timestamp"),
        (lambda h: h.update({"webhook-signature": "v1"}), "invalid_signature_header"),
        (lambda h: h.update({"webhook-signature": " "}), "invalid_signature_header"),
        (lambda h: h.update({"webhook-signature": "v1,"}), "invalid_signature_header"),
        (
            lambda h: h.update({"webhook-signature": "v2,abc"}),
            "invalid_signature_header",
        ),
        (
            lambda h: h.update({"webhook-signature": "v1,  v1,,  ,v1 v1,é"}),
            "signature_mismatch",
        ),
        (
            lambda h: h.update({"webhook-signature": h["webhook-signature"][3:]}),
            "invalid_signature_header",
        ),
        (
            lambda h: h.update(
                {"webhook-signature": "v1a," + h["webhook-signature"][3:]}
            ),
            "invalid_signature_header",
        ),
        (
            lambda h: h.update(
                {"webhook-signature": "v1,AAAA" + h["webhook-signature"][7:]}
            ),
            "signature_mismatch",
        ),
        (lambda h: h.update({"webhook-id": "wh_other"}), "signature_mismatch"),
        (lambda h: h.update({"webhook-timestamp": str(NOW - 1)}), "signature_mismatch"),
    ],
    ids=[
        "no-id",
        "no-timestamp",
        "no-signature",
        "empty-id",
        "id-with-space",
        "id-with-nul",
        "id-too-long",
        "id-non-ascii",
        "timestamp-letters",
        "timestamp-fraction",
        "timestamp-negative",
        "timestamp-arabic-digits",
        "timestamp-huge",
        "sig-v1-no-comma",
        "sig-blank",
        "sig-v1-empty",
        "sig-v2",
        "sig-junk-entries",
        "sig-bare-base64",
        "sig-v1a",
        "sig-altered",
        "id-changed",
        "timestamp-changed",
    ],
)
def test_bad_headers_raise_named_error(
    mutate: t.Callable[[dict[str, str]], object], code: str
) -> None:
    headers = headers_for()
    mutate(headers)
    with pytest.raises(WebhookVerificationError) as info:
        verify_signature(BODY, headers, secret=SECRET, now=NOW)
    assert info.value.code == code
    assert isinstance(info.value, ValueError)
    assert SECRET[6:] not in str(info.value)


def test_tampered_body_is_rejected() -> None:
    headers = headers_for()
    with pytest.raises(WebhookVerificationError, match="no signature"):
        verify_signature(
            BODY.replace(b"batch_abc", b"batch_abd"), headers, secret=SECRET, now=NOW
        )


def test_wrong_secret_is_rejected() -> None:
    with pytest.raises(WebhookVerificationError):
        verify_signature(BODY, headers_for(), secret=OTHER_SECRET, now=NOW)


def test_rotation_header_with_two_signatures() -> None:
    """During rotation OpenAI sends one entry per active secret."""
    old = headers_for(secret=OTHER_SECRET)["webhook-signature"]
    new = headers_for()["webhook-signature"]
    headers = headers_for()
    headers["webhook-signature"] = f"{old}  {new}"
    verify_signature(BODY, headers, secret=SECRET, now=NOW)
    verify_signature(BODY, headers, secret=OTHER_SECRET, now=NOW)


def test_secret_list_reports_matching_key() -> None:
    headers = headers_for(secret=OTHER_SECRET)
    keys = decode_secrets([SECRET, OTHER_SECRET])
    verified = verify_with_keys(BODY, headers, keys, now=NOW)
    assert verified.key_index == 1
    assert verified.webhook_id == headers["webhook-id"]
    assert verified.timestamp == NOW


def test_header_names_are_case_insensitive_in_plain_dicts() -> None:
    headers = {k.title(): v for k, v in headers_for().items()}
    verify_signature(BODY, headers, secret=SECRET, now=NOW)


def test_str_payload_is_signed_as_utf8() -> None:
    body = '{"type":"x","name":"é"}'
    headers = headers_for(body.encode())
    verify_signature(body, headers, secret=SECRET, now=NOW)


@pytest.mark.parametrize(
    "secret",
    ["", "whsec_", "whsec_!!!!", "whsec_abc", "whsec_ab=c", b""],
    ids=[
        "empty",
        "whsec-empty-key",
        "whsec-junk",
        "whsec-bad-padding",
        "whsec-inner-pad",
        "empty-bytes",
    ],
)
def test_invalid_secret_raises_value_error(secret: str | bytes) -> None:
    with pytest.raises(ValueError) as info:
        decode_secret(secret)
    assert not isinstance(info.value, WebhookVerificationError)


def test_sdk_accepts_forgery_with_empty_whsec_key_but_we_refuse() -> None:
    """The SDK decodes ``whsec_`` to an empty key, so anyone can sign."""
    import time

    timestamp = str(int(time.time()))
    mac = hmac.new(b"", f"wh_forged.{timestamp}.".encode() + BODY, hashlib.sha256)
    forged = {
        "webhook-id": "wh_forged",
        "webhook-timestamp": timestamp,
        "webhook-signature": "v1," + base64.b64encode(mac.digest()).decode(),
    }
    sdk = openai.OpenAI(api_key="unused")
    sdk.webhooks.verify_signature(BODY, forged, secret="whsec_")  # accepted!
    with pytest.raises(ValueError):
        verify_signature(BODY, forged, secret="whsec_")


@pytest.mark.parametrize(
    "signature",
    ["v1,abc  v1,def", "  ", "v1,abc junk"],
    ids=["double-space", "blank", "no-comma-entry"],
)
def test_sdk_or_standardwebhooks_crash_where_we_reject_cleanly(signature: str) -> None:
    """standardwebhooks raises a bare ValueError from tuple unpacking on
    entries without a comma; we raise our own named error."""
    import time

    headers = headers_for(timestamp=int(time.time()))
    headers["webhook-signature"] = signature
    with pytest.raises(ValueError) as crash:
        standardwebhooks.Webhook(SECRET).verify(BODY, headers)
    assert not isinstance(crash.value, standardwebhooks.WebhookVerificationError)
    with pytest.raises(WebhookVerificationError):
        verify_signature(BODY, headers, secret=SECRET)


def test_raw_key_must_be_bytes_where_the_sdk_takes_any_string() -> None:
    """The SDK uses a string without ``whsec_`` as a raw UTF-8 key. Here a
    raw key must be bytes, and the same string is refused with a hint."""
    import time

    raw = "a-raw-secret-of-plenty-of-bytes-123"
    now = int(time.time())
    headers = headers_for(secret=raw.encode(), timestamp=now)
    sdk_client().webhooks.verify_signature(BODY, headers, secret=raw)
    verify_signature(BODY, headers, secret=raw.encode(), now=now)
    assert decode_secret(raw.encode()) == raw.encode()
    with pytest.raises(ValueError, match="pass bytes for a raw key"):
        verify_signature(BODY, headers, secret=raw, now=now)


def test_bytes_key_is_the_decoded_whsec_secret() -> None:
    assert decode_secret(KEY) == decode_secret(SECRET) == KEY
    verify_signature(BODY, headers_for(), secret=KEY, now=NOW)
    keys = decode_secrets([b"x" * 32, KEY])
    verified = verify_with_keys(BODY, headers_for(), keys, now=NOW)
    assert verified.key_index == 1


# A secret whose base64 part is easy to look for in a message.
MARKED_SECRET = "whsec_" + base64.b64encode(b"MARKED-webhook-signing-key!").decode()
MARK = MARKED_SECRET[10:30]
API_KEY_MARK = "T3BlbkFJmarkedApiKeyText"


@pytest.mark.parametrize(
    ("secret", "leak", "message"),
    [
        (MARKED_SECRET + "\n", MARK, "leading or trailing whitespace (a newline"),
        (MARKED_SECRET + "\r\n", MARK, "leading or trailing whitespace"),
        (" " + MARKED_SECRET, MARK, "leading or trailing whitespace"),
        ("\t" + MARKED_SECRET + " ", MARK, "leading or trailing whitespace"),
        (f'"{MARKED_SECRET}"', MARK, "the secret is wrapped in quotes"),
        (f"'{MARKED_SECRET}'", MARK, "the secret is wrapped in quotes"),
        ("sk-" + API_KEY_MARK, API_KEY_MARK, "this is an OpenAI API key, not"),
        ("sk-proj-" + API_KEY_MARK, API_KEY_MARK, "this is an OpenAI API key"),
        ("sk-svcacct-" + API_KEY_MARK, API_KEY_MARK, "this is an OpenAI API key"),
        ("sk-admin-" + API_KEY_MARK, API_KEY_MARK, "this is an OpenAI API key"),
        (
            json.dumps([MARKED_SECRET, SECRET]),
            MARK,
            "a list of secrets must be given as a Python list in app.config (or"
            " FLASK_OPENAI_WEBHOOK_SECRET parsed as JSON by"
            " app.config.from_prefixed_env), not as a string",
        ),
        (json.dumps([MARKED_SECRET]), MARK, "given as a Python list in app.config"),
        (f"{MARKED_SECRET},{SECRET}", MARK, "given as a Python list in app.config"),
        (f"{MARKED_SECRET} {SECRET}", MARK, "given as a Python list in app.config"),
        (
            MARKED_SECRET[6:],
            MARK,
            "the secret does not start with 'whsec_'; copy the signing secret"
            " exactly as the OpenAI dashboard shows it, or pass bytes for a raw key",
        ),
        ("WHSEC_" + MARKED_SECRET[6:], MARK, "does not start with 'whsec_'"),
        ("whsec_" + MARK + "!", MARK, "the part after 'whsec_' is not valid base64"),
        (MARKED_SECRET[:-1], MARK, "the part after 'whsec_' is not valid base64"),
        (MARKED_SECRET.encode(), MARK, "bytes starting with 'whsec_'"),
    ],
    ids=[
        "trailing-newline",
        "trailing-crlf",
        "leading-space",
        "tab-and-space",
        "double-quotes",
        "single-quotes",
        "api-key-legacy",
        "api-key-project",
        "api-key-service-account",
        "api-key-admin",
        "json-list",
        "json-list-of-one",
        "comma-separated",
        "space-separated",
        "no-prefix",
        "prefix-upper-case",
        "bad-base64",
        "bad-padding",
        "whsec-as-bytes",
    ],
)
def test_secret_mistake_is_named_without_echoing_the_secret(
    secret: str | bytes, leak: str, message: str
) -> None:
    with pytest.raises(ValueError) as info:
        decode_secret(secret)
    assert message in str(info.value)
    assert leak not in str(info.value)
    assert leak not in repr(info.value)
    assert not isinstance(info.value, WebhookVerificationError)

    # In a rotation list the entry is named by position; verification
    # refuses to start rather than rejecting every delivery.
    with pytest.raises(ValueError) as info:
        decode_secrets([SECRET, secret])
    assert str(info.value).startswith("secret #2: ")
    assert message in str(info.value)
    assert leak not in str(info.value)
    with pytest.raises(ValueError):
        verify_signature(BODY, headers_for(), secret=secret, now=NOW)


def test_whsec_with_no_key_is_named() -> None:
    with pytest.raises(ValueError) as info:
        decode_secret("whsec_")
    assert str(info.value) == "the part after 'whsec_' decodes to an empty key"


@pytest.mark.parametrize(
    ("secret", "type_name"),
    [
        (12345678, "int"),
        (None, "NoneType"),
        (1.5, "float"),
        ({SECRET}, "set"),
        ({"key": SECRET}, "dict"),
        (bytearray(KEY), "bytearray"),
    ],
    ids=["int", "none", "float", "set", "dict", "bytearray"],
)
def test_secret_of_wrong_type_names_the_type_not_the_value(
    secret: object, type_name: str
) -> None:
    with pytest.raises(ValueError) as info:
        decode_secrets(secret)  # type: ignore[arg-type]
    assert str(info.value).endswith(f", not {type_name}")
    assert "12345678" not in str(info.value)
    assert SECRET[6:] not in str(info.value)
    assert "list" in str(info.value)

    with pytest.raises(ValueError) as info:
        decode_secret(secret)  # type: ignore[arg-type]
    assert str(info.value) == (
        f"a secret must be a str (whsec_...) or bytes (a raw key), not {type_name}"
    )


def test_wrong_type_inside_a_list_is_named_by_position() -> None:
    with pytest.raises(ValueError) as info:
        decode_secrets([SECRET, None])  # type: ignore[list-item]
    assert str(info.value) == (
        "secret #2: a secret must be a str (whsec_...) or bytes (a raw key),"
        " not NoneType"
    )
    with pytest.raises(ValueError, match="secret #1: .* not int"):
        verify_signature(BODY, headers_for(), secret=[7], now=NOW)  # type: ignore[list-item]


def test_empty_list_of_secrets_is_refused() -> None:
    with pytest.raises(ValueError, match="the list of secrets is empty"):
        decode_secrets([])
    with pytest.raises(ValueError, match="the list of secrets is empty"):
        decode_secrets(())


def test_tuple_of_secrets_is_a_rotation_list() -> None:
    assert decode_secrets((SECRET, KEY)) == (KEY, KEY)


def test_functional_api_keeps_no_keys_between_calls() -> None:
    """Retired keys must not stay alive in a module-level cache."""
    verify_signature(BODY, headers_for(), secret=SECRET, now=NOW)
    verify_with_keys(BODY, headers_for(), [KEY], now=NOW)
    cached = [
        name
        for name, value in vars(verify).items()
        if hasattr(value, "cache_info") or hasattr(value, "cache_clear")
    ]
    assert cached == []


def test_signed_headers_round_trip_through_us_and_the_sdk() -> None:
    import time

    before = int(time.time())
    headers = signed_headers(BODY, secret=SECRET, webhook_id="wh_round_trip")
    after = int(time.time())

    assert set(headers) == {"webhook-id", "webhook-timestamp", "webhook-signature"}
    assert headers["webhook-id"] == "wh_round_trip"
    assert before <= int(headers["webhook-timestamp"]) <= after
    assert headers["webhook-signature"] == sign(
        BODY,
        secret=SECRET,
        webhook_id="wh_round_trip",
        timestamp=headers["webhook-timestamp"],
    )
    verify_signature(BODY, headers, secret=SECRET)
    sdk_client().webhooks.verify_signature(BODY, headers, secret=SECRET)
    standardwebhooks.Webhook(SECRET).verify(BODY, headers)


def test_signed_headers_with_a_given_timestamp_and_text_body() -> None:
    text = '{"type":"batch.completed","note":"é"}'
    headers = signed_headers(text, secret=SECRET, webhook_id="wh_1", timestamp=NOW)
    assert headers == signed_headers(
        text.encode(), secret=SECRET, webhook_id="wh_1", timestamp=NOW
    )
    assert headers["webhook-timestamp"] == str(NOW)
    verify_signature(text.encode(), headers, secret=SECRET, now=NOW)
    with pytest.raises(WebhookVerificationError, match="too old"):
        verify_signature(text, headers, secret=SECRET, now=NOW + 301)


def test_signed_headers_signs_with_the_first_of_a_list() -> None:
    import time

    headers = signed_headers(BODY, secret=[OTHER_SECRET, SECRET], webhook_id="wh_2")
    keys = decode_secrets([SECRET, OTHER_SECRET])
    assert verify_with_keys(BODY, headers, keys).key_index == 1
    sdk_client().webhooks.verify_signature(BODY, headers, secret=OTHER_SECRET)
    with pytest.raises(WebhookVerificationError, match="no signature"):
        verify_signature(BODY, headers, secret=SECRET, now=int(time.time()))


def test_signed_headers_with_a_raw_bytes_key() -> None:
    headers = signed_headers(BODY, secret=KEY, webhook_id="wh_3", timestamp=NOW)
    assert headers == headers_for(webhook_id="wh_3")


def test_signed_headers_checks_every_secret_in_the_list() -> None:
    with pytest.raises(ValueError, match="secret #2: the secret is wrapped"):
        signed_headers(BODY, secret=[SECRET, f'"{MARKED_SECRET}"'], webhook_id="wh_4")


header_text = st.text(
    alphabet=st.characters(codec="latin-1"), max_size=80
) | st.sampled_from(["v1,", "v1", "", " ", "v2,x", "v1,x v1,y", "\t"])


@settings(max_examples=300, deadline=None)
@given(
    body=st.binary(max_size=200),
    webhook_id=header_text,
    timestamp=header_text | st.integers(NOW - 400, NOW + 400).map(str),
    signature=header_text,
)
def test_junk_headers_never_crash_and_never_verify(
    body: bytes, webhook_id: str, timestamp: str, signature: str
) -> None:
    headers = {
        "webhook-id": webhook_id,
        "webhook-timestamp": timestamp,
        "webhook-signature": signature,
    }
    with pytest.raises(WebhookVerificationError):
        verify_signature(body, headers, secret=SECRET, now=NOW)


_SDK = openai.OpenAI(api_key="unused")


@settings(max_examples=150, deadline=None)
@given(
    body=st.text(max_size=300),
    webhook_id=st.text(
        alphabet="abcdefghijklmnopqrstuvwxyz0123456789_-", min_size=1, max_size=40
    ),
    offset=st.integers(-300, 300),
    key=st.binary(min_size=24, max_size=64),
)
def test_valid_deliveries_verify_with_us_and_the_sdk(
    body: str, webhook_id: str, offset: int, key: bytes
) -> None:
    """Whatever standardwebhooks signs within the tolerance, the SDK and we
    both accept."""
    import time

    secret = "whsec_" + base64.b64encode(key).decode()
    now = int(time.time())
    ts = now + offset
    signature = standardwebhooks.Webhook(secret).sign(
        webhook_id, datetime.fromtimestamp(ts, tz=timezone.utc), body
    )
    headers = {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": signature,
    }
    payload = body.encode()
    verify_signature(payload, headers, secret=secret, now=now)
    try:
        _SDK.webhooks.verify_signature(payload, headers, secret=secret)
    except openai.InvalidWebhookSignatureError:
        # The SDK reads the clock itself: only a tick at the edge excuses it.
        assert abs(offset) >= 299 and int(time.time()) != now


@pytest.mark.parametrize("length", [1, 32, 63, 64, 65, 200])
def test_verifier_matches_hmac_module_for_any_key_length(length: int) -> None:
    """Keys longer than SHA-256's block are hashed first (RFC 2104)."""
    key = bytes(range(256))[:length]
    secret = "whsec_" + base64.b64encode(key).decode()
    headers = headers_for(secret=secret)
    expected = base64.b64encode(
        hmac.new(
            key,
            f"{headers['webhook-id']}.{NOW}.".encode() + BODY,
            hashlib.sha256,
        ).digest()
    ).decode()
    assert headers["webhook-signature"] == "v1," + expected
    verifier = Verifier([key])
    verified = verifier.verify(
        BODY,
        headers["webhook-id"],
        headers["webhook-timestamp"],
        headers["webhook-signature"],
        now=NOW,
    )
    assert verified.key_index == 0
    with pytest.raises(WebhookVerificationError):
        Verifier([key + b"!"]).verify(
            BODY,
            headers["webhook-id"],
            headers["webhook-timestamp"],
            headers["webhook-signature"],
            now=NOW,
        )


def test_verifier_needs_keys() -> None:
    with pytest.raises(ValueError):
        Verifier([])
    with pytest.raises(ValueError):
        Verifier([b""])
