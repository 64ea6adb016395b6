"""``flask openai-webhooks reconcile``: send the events whose delivery
never arrived; see :mod:`flask_openai_webhooks.reconcile`.
"""

from __future__ import annotations

import datetime
import sys
import time

import click
from flask.cli import with_appcontext

from . import reconcile as reconciliation
from .errors import StoreError
from .log import parse_duration


def _duration(ctx: click.Context, param: click.Parameter, value: str) -> float:
    try:
        return parse_duration(value)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None


def _iso(timestamp: float) -> str:
    moment = datetime.datetime.fromtimestamp(timestamp, tz=datetime.timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M:%SZ")


def _is_api_error(error: Exception) -> bool:
    # Only the SDK raises its errors: if it was never imported, this is not
    # one, and it is not imported here just to find out.
    openai = sys.modules.get("openai")
    return openai is not None and isinstance(error, openai.APIError)


@click.command("reconcile")
@click.option(
    "--since",
    metavar="DURATION",
    default="24h",
    show_default=True,
    callback=_duration,
    help="Look at what finished this long ago or less, e.g. 24h or 3d.",
)
@click.option(
    "--type",
    "type_",
    metavar="PATTERN",
    help="Only event types matching this glob, e.g. 'batch.*'.",
)
@click.option("--dry-run", is_flag=True, help="List what would be sent; send nothing.")
@click.option(
    "--blueprint",
    metavar="NAME",
    help="The webhook blueprint to use; needed only when several are registered.",
)
@with_appcontext
def reconcile_command(
    since: float, type_: str | None, dry_run: bool, blueprint: str | None
) -> None:
    """Send the events of batches, fine-tuning jobs and expected responses
    that finished but whose delivery never arrived.

    Objects are listed through the OpenAI API with
    app.config["OPENAI_WEBHOOK_CLIENT"], or a client configured by
    OPENAI_API_KEY and OPENAI_BASE_URL. Exits 1 if a receiver of a sent
    event failed.
    """
    start = time.time() - since
    try:
        done = reconciliation.reconcile(
            since=start, type_pattern=type_, dry_run=dry_run, blueprint=blueprint
        )
    except LookupError as e:
        raise click.UsageError(f"{e.args[0] if e.args else e}.") from None
    except ValueError as e:
        raise click.UsageError(str(e)) from None
    except (reconciliation.ClientConfigError, StoreError) as e:
        raise click.ClickException(str(e)) from None
    except Exception as e:
        if not _is_api_error(e):
            raise
        raise click.ClickException(f"the OpenAI API call failed: {e}") from None
    if not done:
        click.echo(f"nothing missing since {_iso(start)}")
        return
    bad = False
    for item in done:
        what = (
            f"{item.event_type} for {item.object_id}"
            f" (finished {_iso(item.finished_at)})"
        )
        if item.outcome is None:
            click.echo(f"would send {what} as {item.webhook_id}")
            continue
        ran = ", ".join(f"{r.key} {r.outcome}" for r in item.outcome.results)
        click.echo(
            f"sent {what}: {item.outcome.name}, now {item.outcome.status or '-'};"
            f" ran: {ran or 'nothing'}"
        )
        bad = bad or not item.ok
    if bad:
        raise click.exceptions.Exit(1)
