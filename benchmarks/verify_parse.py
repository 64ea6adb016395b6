"""Section 1: verify and parse one delivery, against the floor and the
other libraries.

Each case takes the raw body and a plain ``dict`` of headers, checks the
signature and returns the decoded event, which is all a webhook endpoint
needs before dispatch:

``floor``
    The shortest honest route: read the three headers, HMAC-SHA256 over
    ``id.timestamp.body`` with :func:`hmac.digest`, base64, one
    :func:`hmac.compare_digest`, and :meth:`pydantic.TypeAdapter.validate_json`
    into *the one* model of that type (the adapter built once). No header
    validation, no timestamp check, no union to pick from. Ours against this
    is the price of being careful.
``blueprint``
    What the blueprint runs per delivery: the
    :class:`~flask_openai_webhooks.verify.Verifier` it builds once per
    registration (keys decoded, HMACs prepared), given the three header
    values, then :func:`~flask_openai_webhooks.parse_event`.
``public``
    The public functional API, as a queue consumer or another framework
    would call it: ``verify_signature(body, headers, secret=SECRET)`` then
    ``parse_event(body)``; the secret is a ``whsec_`` string, as configured.
``sdk``
    ``client.webhooks.unwrap(body, headers)`` on one
    ``openai.OpenAI(api_key="unused", webhook_secret=SECRET)`` built before
    timing (its constructor alone takes ~20 ms). Judged against ``public``,
    its counterpart.
``standardwebhooks``
    ``standardwebhooks.Webhook(SECRET).verify(body, headers)``, built once;
    it returns ``json.loads(body)``, a dict, not a model.
``svix``
    ``svix.Webhook(SECRET).verify(body, headers)`` then :func:`json.loads`
    (svix 2.x returns ``None``).

Every library checks the timestamp against the real clock (the SDK has no
way to pass ``now``), so each batch is signed with the current time just
before it runs, untimed. Batches last a few milliseconds, far inside the
300 s tolerance.
"""

from __future__ import annotations

import base64
import collections.abc as c
import hashlib
import hmac
import json
import typing as t

from pydantic import BaseModel
from pydantic import TypeAdapter

from flask_openai_webhooks import models
from flask_openai_webhooks import verify

from . import deliveries
from .harness import Batch
from .harness import calibrate
from .harness import Case
from .harness import format_seconds
from .harness import paired_ratio
from .harness import Row
from .harness import run_interleaved
from .harness import Samples
from .harness import Target

#: ``(label, event type)`` of the three payloads, in table order.
PAYLOADS = (
    ("known", deliveries.KNOWN),
    ("unknown", deliveries.UNKNOWN),
    ("16 SIP headers", deliveries.SIP),
)

#: Acceptance targets of this section.
BLUEPRINT_VS_FLOOR = Target("verify + parse, blueprint path / floor", "<=", 1.3)
PUBLIC_VS_FLOOR = Target("verify + parse, public functional API / floor", "<=", 1.3)
SDK_VS_OURS = Target("SDK unwrap / ours (public functional API)", ">=", 6.0)

Verifier: t.TypeAlias = c.Callable[[bytes, dict[str, str]], object]

#: The cases, by name, with their titles in the details table.
TITLES = {
    "floor": "floor (hmac.digest + TypeAdapter)",
    "blueprint": "ours, blueprint path (Verifier.verify + parse_event)",
    "public": "ours, public API (verify_signature + parse_event)",
    "sdk": "SDK client.webhooks.unwrap",
    "standardwebhooks": "standardwebhooks Webhook.verify",
    "svix": "svix Webhook.verify + json.loads",
}


def floor_model(event_type: str) -> type[BaseModel]:
    """The single model a body of ``event_type`` becomes."""
    return models.EVENT_TYPES.get(event_type, models.UnknownWebhookEvent)


def make_floor(event_type: str) -> Verifier:
    """The floor for one event type: see the module docstring."""
    key = verify.decode_secret(deliveries.SECRET)
    validate = TypeAdapter(floor_model(event_type)).validate_json
    digest = hmac.digest
    sha256 = hashlib.sha256
    b64encode = base64.b64encode
    compare = hmac.compare_digest

    def floor(body: bytes, headers: dict[str, str]) -> object:
        signed = (
            f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
        )
        expected = b64encode(digest(key, signed, sha256))
        if not compare(expected, headers["webhook-signature"][3:].encode()):
            raise ValueError("bad signature")
        return validate(body)

    return floor


def make_blueprint_path() -> Verifier:
    checker = verify.Verifier(verify.decode_secrets(deliveries.SECRET))
    check = checker.verify
    parse_event = models.parse_event

    def blueprint(body: bytes, headers: dict[str, str]) -> object:
        check(
            body,
            headers["webhook-id"],
            headers["webhook-timestamp"],
            headers["webhook-signature"],
        )
        return parse_event(body)

    return blueprint


def make_public() -> Verifier:
    verify_signature = verify.verify_signature
    parse_event = models.parse_event
    secret = deliveries.SECRET

    def public(body: bytes, headers: dict[str, str]) -> object:
        verify_signature(body, headers, secret=secret)
        return parse_event(body)

    return public


def make_sdk() -> Verifier:
    import openai

    client = openai.OpenAI(api_key="unused", webhook_secret=deliveries.SECRET)
    unwrap = client.webhooks.unwrap

    def sdk(body: bytes, headers: dict[str, str]) -> object:
        return unwrap(body, headers)

    return sdk


def make_standardwebhooks() -> Verifier:
    import standardwebhooks

    webhook_verify = standardwebhooks.Webhook(deliveries.SECRET).verify

    def standard(body: bytes, headers: dict[str, str]) -> object:
        return webhook_verify(body, headers)

    return standard


def make_svix() -> Verifier:
    import svix

    webhook_verify = svix.Webhook(deliveries.SECRET).verify
    loads = json.loads

    def svix_verify(body: bytes, headers: dict[str, str]) -> object:
        webhook_verify(body, headers)
        return loads(body)

    return svix_verify


def _case(name: str, fn: Verifier, body: bytes) -> Case:
    def prepare(ops: int) -> Batch:
        # Signed now, so the timestamp is fresh for every library's clock
        # check; the same delivery is verified ``ops`` times (no dedup here).
        headers = deliveries.sign(body).headers
        fn(body, headers)  # fail loudly, before timing, if it is rejected

        def batch() -> int:
            for _ in range(ops):
                fn(body, headers)
            return ops

        return batch

    return Case(name, prepare)


def run(*, rounds: int, batch_seconds: float) -> tuple[list[Row], dict[str, t.Any]]:
    """Time every library on every payload, interleaved, and build the rows.

    All 18 cases (3 payloads x 6 verifiers) run in every round, so every
    ratio is paired.
    """
    libraries: dict[str, Verifier] = {
        "blueprint": make_blueprint_path(),
        "public": make_public(),
        "sdk": make_sdk(),
        "standardwebhooks": make_standardwebhooks(),
        "svix": make_svix(),
    }
    cases: list[Case] = []
    sizes: dict[str, int] = {}
    for label, event_type in PAYLOADS:
        body = deliveries.make_body(event_type)
        sizes[label] = len(body)
        cases.append(_case(f"{label}/floor", make_floor(event_type), body))
        for name, fn in libraries.items():
            cases.append(_case(f"{label}/{name}", fn, body))
    ops = {case.name: calibrate(case, batch_seconds) for case in cases}
    samples = run_interleaved(cases, ops, rounds)
    return _rows(samples, sizes), {
        "rounds": rounds,
        "ops_per_batch": ops,
        "body_bytes": sizes,
        "samples_cpu_seconds": {k: v.cpu for k, v in samples.items()},
        "samples_wall_seconds": {k: v.wall for k, v in samples.items()},
    }


def _judged(
    key: str, what: str, ours: Samples, floor: Samples, target: Target, label: str
) -> Row:
    return Row(
        "1",
        what,
        format_seconds(ours.median),
        ratio=paired_ratio(ours, floor),
        ratio_label=label,
        target=target,
        floor=format_seconds(floor.median),
        key=key,
        note="CPU time",
        data={
            "median_seconds": ours.median,
            "floor_median_seconds": floor.median,
            "per_round": ours.per_op,
            "floor_per_round": floor.per_op,
        },
    )


def _rows(samples: dict[str, Samples], sizes: dict[str, int]) -> list[Row]:
    known = f"``{deliveries.KNOWN}``"
    floor = samples["known/floor"]
    public = samples["known/public"]
    blueprint = samples["known/blueprint"]
    sdk = samples["known/sdk"]
    rows = [
        _judged(
            "verify-blueprint",
            f"verify + parse, blueprint path ({known})",
            blueprint,
            floor,
            BLUEPRINT_VS_FLOOR,
            "× floor",
        ),
        _judged(
            "verify-public",
            f"verify + parse, public functional API ({known})",
            public,
            floor,
            PUBLIC_VS_FLOOR,
            "× floor",
        ),
        _judged(
            "verify-sdk",
            f"SDK ``webhooks.unwrap`` ({known}), floor = ours (public API)",
            sdk,
            public,
            SDK_VS_OURS,
            "× ours",
        ),
    ]
    rows[
        2
    ].note = (
        f"CPU time; {paired_ratio(sdk, blueprint):.2f} × ours on the blueprint path"
    )
    for label, event_type in PAYLOADS:
        floor = samples[f"{label}/floor"]
        for name, title in TITLES.items():
            s = samples[f"{label}/{name}"]
            row = Row(
                "1",
                f"{event_type} {sizes[label]} B: {title}",
                format_seconds(s.median),
                data={"median_seconds": s.median, "per_round": s.per_op},
            )
            if name != "floor":
                row.ratio, row.ratio_label = paired_ratio(s, floor), "× floor"
                row.floor = format_seconds(floor.median)
            rows.append(row)
    rows.append(
        Row(
            "1",
            f"ours (blueprint path), {deliveries.UNKNOWN} / {deliveries.KNOWN}",
            ratio=paired_ratio(
                samples["unknown/blueprint"], samples["known/blueprint"]
            ),
            ratio_label="×",
            note="an unknown type costs about what a known one does",
        )
    )
    return rows
