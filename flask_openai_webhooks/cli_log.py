"""The delivery-log commands of ``flask openai-webhooks``: ``log``,
``show``, ``replay`` and ``prune``.

``log --json`` and ``show --json`` are for scripts: one JSON object per
line, whose field names (``webhook_id``, ``type``, ``event_id``,
``object_id``, ``status``, ``attempts``, ``received_at``, ``receivers``
with ``key``, ``outcome`` and ``attempts``) are a contract.
"""

from __future__ import annotations

import datetime
import functools
import json
import time
import typing as t

import click
from flask import current_app
from flask import Flask
from flask.cli import with_appcontext

from . import log
from .errors import StoreError
from .errors import WebhookPayloadError
from .signals import match_event_types
from .state import states
from .stores import DELIVERY_STATUSES
from .stores import DeliveryRecord
from .stores import ReceiverResult
from .stores.memory import MemoryStore

_blueprint_option = click.option(
    "--blueprint",
    metavar="NAME",
    help="The webhook blueprint to use; needed only when several are registered.",
)


def _app() -> Flask:
    return current_app._get_current_object()  # type: ignore[attr-defined, no-any-return]


def _duration(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> float | None:
    if value is None:
        return None
    try:
        return log.parse_duration(value)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None


def _iso(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    moment = datetime.datetime.fromtimestamp(timestamp, tz=datetime.timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M:%SZ")


def _lookup_error(e: LookupError) -> t.NoReturn:
    raise click.ClickException(str(e.args[0] if e.args else e))


F = t.TypeVar("F", bound=t.Callable[..., t.Any])


def _log_command(fn: F) -> F:
    """What every log command shares: a store that fails is one line
    naming ``doctor``, not a traceback; and a note when this command's app
    keeps its log in memory, where it can never see the server's
    deliveries."""

    @functools.wraps(fn)
    def wrapper(*args: t.Any, **kwargs: t.Any) -> t.Any:
        app = _app()
        for state in states(app).values():
            if isinstance(state.store, MemoryStore) and not app.testing:
                click.echo(
                    f"note: blueprint {state.name!r} of this command's app uses the"
                    " memory store, which lives in this process only and never"
                    " holds the server's deliveries; set OPENAI_WEBHOOK_STORE"
                    " (or FLASK_OPENAI_WEBHOOK_STORE) here as the server has it",
                    err=True,
                )
        type_pattern = kwargs.get("type_")
        if type_pattern:
            _hint_type(type_pattern)
        try:
            return fn(*args, **kwargs)
        except StoreError as e:
            raise click.ClickException(
                f"{e} ('flask openai-webhooks doctor' checks the store)"
            ) from None

    return t.cast(F, wrapper)


def _hint_type(pattern: str) -> None:
    """A pattern that matches no known event type may still match an
    unknown type in the log, so it is not refused; but a typo is likely."""
    try:
        match_event_types(pattern)
    except ValueError as e:
        click.echo(f"note: --type {e}", err=True)


@click.command("log")
@click.option(
    "--status",
    type=click.Choice(DELIVERY_STATUSES),
    multiple=True,
    help="Only deliveries with this status; repeat for several.",
)
@click.option("--type", "type_", metavar="PATTERN", help="An event type or glob.")
@click.option(
    "--since",
    metavar="DURATION",
    callback=_duration,
    help="Only deliveries first received this long ago or less, e.g. 24h.",
)
@click.option("--limit", default=50, show_default=True, type=click.IntRange(min=1))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@_blueprint_option
@with_appcontext
@_log_command
def log_command(
    status: tuple[str, ...],
    type_: str | None,
    since: float | None,
    limit: int,
    as_json: bool,
    blueprint: str | None,
) -> None:
    """List logged deliveries, newest first."""
    try:
        page = log.list_deliveries(
            status=status or None,
            type=type_,
            since=None if since is None else time.time() - since,
            limit=limit,
            blueprint=blueprint,
        )
    except LookupError as e:
        _lookup_error(e)
    if as_json:
        for record in page.records:
            click.echo(json.dumps(record.to_json()))
        return
    if not page.records:
        click.echo("no deliveries match")
        return
    click.echo(
        f"{'RECEIVED':<21} {'STATUS':<10} {'TYPE':<28} {'OBJECT':<28}"
        f" {'TRIES':>5}  WEBHOOK-ID"
    )
    for record in page.records:
        click.echo(
            f"{_iso(record.first_received_at):<21} {record.status:<10}"
            f" {_cut(record.event_type):<28} {_cut(record.object_id or '-'):<28}"
            f" {record.attempts:>5}  {record.webhook_id}"
        )
    if page.cursor is not None:
        click.echo(f"(more: raise --limit above {limit})")


def _cut(text: str, width: int = 28) -> str:
    """``text`` for a column, with an ellipsis when cut (``show`` and
    ``--json`` have it whole)."""
    return text if len(text) <= width else text[: width - 1] + "\u2026"


def _show(record: DeliveryRecord) -> None:
    click.echo(f"webhook-id   {record.webhook_id}")
    click.echo(f"type         {record.event_type}")
    click.echo(f"event        {record.event_id}")
    click.echo(f"object       {record.object_id or '-'}")
    click.echo(
        f"status       {record.status} (last answer {record.status_code or '-'})"
    )
    click.echo(
        f"received     {_iso(record.first_received_at)} first,"
        f" {_iso(record.last_received_at)} last, {record.attempts} attempt(s)"
        f" (first by {record.source})"
    )
    click.echo("receivers")
    if not record.receivers:
        click.echo("  none ran")
    for result in record.receivers:
        click.echo(
            f"  {result.outcome:<11} {result.key}  ({result.attempts} run(s),"
            f" last {result.duration * 1000:.1f} ms at {_iso(result.at)})"
        )
        if result.error_type:
            click.echo(f"              {result.error_type}: {result.error_message}")
    if record.history:
        click.echo("attempts")
        for entry in record.history:
            code = f" {entry.status_code}" if entry.status_code else ""
            click.echo(f"  {_iso(entry.at)}  {entry.source:<9} {entry.result}{code}")
    click.echo("body")
    try:
        pretty = json.dumps(json.loads(record.body), indent=2, ensure_ascii=False)
    except ValueError:
        pretty = record.body.decode("utf-8", "replace")
    for line in pretty.splitlines():
        click.echo(f"  {line}")


@click.command("show")
@click.argument("webhook_id")
@click.option("--json", "as_json", is_flag=True, help="One JSON object, with body.")
@_blueprint_option
@with_appcontext
@_log_command
def show_command(webhook_id: str, as_json: bool, blueprint: str | None) -> None:
    """Show one delivery: its record, receivers, attempts and body."""
    try:
        record = log.get_delivery(webhook_id, blueprint=blueprint)
    except LookupError as e:
        _lookup_error(e)
    if record is None:
        raise click.ClickException(f"no delivery with webhook-id {webhook_id!r}")
    if as_json:
        click.echo(json.dumps(record.to_json(body=True)))
    else:
        _show(record)


@click.command("replay")
@click.argument("webhook_ids", metavar="[WEBHOOK_ID]...", nargs=-1)
@click.option("--failed", is_flag=True, help="Replay every 'failed' delivery.")
@click.option("--gave-up", is_flag=True, help="Replay every 'gave_up' delivery.")
@click.option("--unhandled", is_flag=True, help="Replay every 'unhandled' delivery.")
@click.option(
    "--since",
    metavar="DURATION",
    callback=_duration,
    help="With --failed/--gave-up/--unhandled: first received this long ago or less.",
)
@click.option("--type", "type_", metavar="PATTERN", help="An event type or glob.")
@click.option("--force", is_flag=True, help="Run every receiver, successful too.")
@click.option("--receiver", metavar="KEY", help="Run only this receiver (see show).")
@click.option("--dry-run", is_flag=True, help="List what would be replayed.")
@_blueprint_option
@with_appcontext
@_log_command
def replay_command(
    webhook_ids: tuple[str, ...],
    failed: bool,
    gave_up: bool,
    unhandled: bool,
    since: float | None,
    type_: str | None,
    force: bool,
    receiver: str | None,
    dry_run: bool,
    blueprint: str | None,
) -> None:
    """Run logged deliveries again; only receivers that have not succeeded
    run, unless --force. Exits 1 if a replayed receiver failed."""
    statuses = [
        status
        for status, wanted in (
            ("failed", failed),
            ("gave_up", gave_up),
            ("unhandled", unhandled),
        )
        if wanted
    ]
    if bool(webhook_ids) == bool(statuses):
        raise click.UsageError(
            "give WEBHOOK_ID... or one of --failed, --gave-up, --unhandled"
        )
    try:
        if statuses:
            ids = log.matching(
                status=statuses,
                type=type_,
                since=None if since is None else time.time() - since,
                blueprint=blueprint,
            )
        else:
            ids = list(webhook_ids)
        bad = False
        if dry_run:
            for webhook_id in ids:
                record = log.get_delivery(webhook_id, blueprint=blueprint)
                if record is None:
                    click.echo(f"{webhook_id}: not in the log", err=True)
                    bad = True
                    continue
                click.echo(
                    f"would replay {webhook_id} ({record.event_type}, {record.status})"
                )
            if not ids:
                click.echo("nothing to replay")
            if bad:
                raise click.exceptions.Exit(1)
            return
        for webhook_id in ids:
            try:
                done = log.replay(
                    webhook_id, force=force, receiver=receiver, blueprint=blueprint
                )
            except LookupError as e:
                click.echo(f"{webhook_id}: {e.args[0] if e.args else e}", err=True)
                bad = True
                continue
            except WebhookPayloadError as e:
                click.echo(
                    f"{webhook_id}: the stored body no longer parses: {e}", err=True
                )
                bad = True
                continue
            status = done.record.status if done.record is not None else "?"
            if not done.outcome.results and done.outcome.name == "processed":
                click.echo(
                    f"{webhook_id}: {status}; nothing to run (every receiver had"
                    " succeeded; --force runs them all again)"
                )
            else:
                ran = ", ".join(_ran(r) for r in done.outcome.results)
                click.echo(
                    f"{webhook_id}: {done.outcome.name}, now {status};"
                    f" ran: {ran or 'nothing'}"
                )
            bad = bad or not done.ok
        if not ids:
            click.echo("nothing to replay")
    except LookupError as e:
        _lookup_error(e)
    if bad:
        raise click.exceptions.Exit(1)


@click.command("prune")
@click.option(
    "--older-than",
    metavar="DURATION",
    required=True,
    callback=_duration,
    help="Forget deliveries last received longer ago than this, e.g. 30d.",
)
@_blueprint_option
@with_appcontext
@_log_command
def prune_command(older_than: float, blueprint: str | None) -> None:
    """Forget old deliveries (the store also does after the retention)."""
    try:
        count = log.prune_deliveries(older_than, blueprint=blueprint)
    except LookupError as e:
        _lookup_error(e)
    click.echo(f"pruned {count} deliveries")


def _ran(result: ReceiverResult) -> str:
    if result.error_type is None:
        return f"{result.key} {result.outcome}"
    return (
        f"{result.key} {result.outcome} ({result.error_type.rpartition('.')[2]}:"
        f" {(result.error_message or '')[:200]})"
    )


COMMANDS = (log_command, show_command, replay_command, prune_command)
