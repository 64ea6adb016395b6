"""Take the inspector screenshots of the README (``docs/inspector-*.png``).

Builds an app with realistic deliveries posted through the real blueprint
(receivers that succeed, one that fails with a traceback and was retried,
one that gives up, refused requests), serves it on loopback and photographs
each page in the system's headless Chromium, at desktop width and at a
phone's (390 px)::

    .venv/bin/python docs/screenshots.py

Needs ``chromium`` and ``chromium-driver`` (Debian) and Selenium; no
network, no browser download.
"""

from __future__ import annotations

import base64
import collections.abc as c
import contextlib
import logging
import pathlib
import shutil
import sys
import tempfile
import threading
import typing as t

from flask import Flask
from flask import redirect
from flask import session
from flask.typing import ResponseReturnValue
from werkzeug.serving import make_server

from flask_openai_webhooks import PermanentFailure
from flask_openai_webhooks.blueprint import make_blueprint
from flask_openai_webhooks.inspector import make_inspector_blueprint
from flask_openai_webhooks.signals import batch_completed
from flask_openai_webhooks.signals import fine_tuning_job_succeeded
from flask_openai_webhooks.signals import realtime_call_incoming
from flask_openai_webhooks.signals import response_completed
from flask_openai_webhooks.signals import response_failed
from flask_openai_webhooks.state import states
from flask_openai_webhooks.testing import post_event

if t.TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver

DOCS = pathlib.Path(__file__).resolve().parent
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
#: The flags every headless run uses: no sandbox (containers), no GPU, no
#: network chatter (the machine may have no network at all).
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
)
SECRET = "whsec_" + base64.b64encode(b"screenshots-only-not-a-real-key!").decode()
PREFIX = "/admin/openai-webhooks"


# --- the sample app -------------------------------------------------------------


class ResultsBucketError(Exception):
    """What a storage client raises when the bucket does not answer."""


ResultsBucketError.__module__ = "acme.storage"


def _download(file_id: str) -> bytes:
    raise ResultsBucketError(
        f"GET s3://acme-batch-results/{file_id}.jsonl timed out after 10.0 s"
    )


def store_batch_results(app: Flask, *, event: t.Any, **extra: t.Any) -> None:
    """Fails for one batch, as a receiver does when a dependency is down."""
    if event.data.id == "batch_68b1f0c2a4e08190b3b1d6a0c8f5e2d1":
        _download("file-9YpTcS4x2kQ8Wm6NnB3aLz")


def notify_team(app: Flask, **extra: t.Any) -> None:
    pass


def save_response(app: Flask, **extra: t.Any) -> None:
    pass


def alert_on_failed_response(app: Flask, *, event: t.Any, **extra: t.Any) -> None:
    if event.data.id.endswith("7c"):
        raise PermanentFailure("response belongs to a deleted workspace")


def deploy_model(app: Flask, **extra: t.Any) -> None:
    pass


def accept_call(app: Flask, **extra: t.Any) -> None:
    pass


RECEIVERS = (
    (batch_completed, store_batch_results),
    (batch_completed, notify_team),
    (response_completed, save_response),
    (response_failed, alert_on_failed_response),
    (fine_tuning_job_succeeded, deploy_model),
    (realtime_call_incoming, accept_call),
)
for _signal, _receiver in RECEIVERS:
    # Receiver keys name the module: make them read like an app's.
    _receiver.__module__ = "acme.webhooks"


def make_app(instance: str) -> Flask:
    app = Flask("acme", instance_path=instance)
    app.config.update(
        SECRET_KEY="screenshots-only",
        OPENAI_WEBHOOK_SECRET=SECRET,
        OPENAI_WEBHOOK_STORE="sqlite:///webhooks.db",
    )
    app.register_blueprint(make_blueprint())
    app.register_blueprint(
        make_inspector_blueprint(authorize=lambda: session.get("admin") is True),
        url_prefix=PREFIX,
    )

    @app.get("/login")
    def login() -> ResponseReturnValue:
        session["admin"] = True
        return redirect(PREFIX + "/")

    return app


def fill(app: Flask) -> str:
    """Post realistic deliveries; return the webhook-id of the failed one."""
    client = app.test_client()
    post_event(client, "batch.completed", data={"id": "batch_68a3c71e5b2481908d4f"})
    post_event(
        client,
        "fine_tuning.job.succeeded",
        data={"id": "ftjob-Wq3Jc8Yt2LmN5pRk7VbX1zA"},
    )
    post_event(client, "response.completed", data={"id": "resp_68b1e2f94c3c81a29f"})
    post_event(client, "response.failed", data={"id": "resp_68b1e3a07d5e81a37c"})
    post_event(client, "eval.run.succeeded", data={"id": "evalrun_68b1e4c1d2a0"})
    post_event(
        client,
        "realtime.call.incoming",
        data={"call_id": "rtc_4c1f9e2b7a6d4e3f8b2a1c0d9e8f7a6b"},
    )
    failed = "wh_68b1f0c2a4e08190b3b1d6a0c8f5e2d1"
    for _ in range(3):  # the first delivery and two of OpenAI's retries
        post_event(
            client,
            "batch.completed",
            webhook_id=failed,
            id="evt_68b1f0c2b0e48190a5e2c3d4f6a7b8c9",
            data={"id": "batch_68b1f0c2a4e08190b3b1d6a0c8f5e2d1"},
        )
    post_event(client, "batch.expired", data={"id": "batch_68b1f1d3e9a881908c2e"})
    post_event(client, "response.completed", data={"id": "resp_68b1f2a4b8c481a2d1"})
    post_event(client, "batch.completed", data={"id": "batch_68b1f3b5c7d881909e3f"})
    for webhook_id in ("wh_2ZfQm8uKx4", "wh_2ZfQm8uKx4", "wh_7HcLp1sVd9"):
        post_event(
            client,
            "batch.completed",
            webhook_id=webhook_id,
            headers={"webhook-signature": "v1,c2lnbmVkIHdpdGggYW4gb2xkIHNlY3JldA=="},
        )
    post_event(client, "response.completed", timestamp=1_700_000_000)
    client.post("/webhooks/openai", data=b"{}", content_type="application/json")
    return failed


# --- the browser ----------------------------------------------------------------


@contextlib.contextmanager
def serve(app: Flask) -> c.Iterator[str]:
    """Run ``app`` on loopback in a thread; yield its base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


@contextlib.contextmanager
def chromium(profile: str) -> c.Iterator[WebDriver]:
    """The system's headless Chromium, driven by the system's chromedriver,
    with a fresh profile."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def shoot(driver: WebDriver, url: str, path: pathlib.Path, *, phone: bool) -> None:
    """Load ``url`` at desktop or phone width and save the whole page."""
    if phone:
        metrics = {"width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": True}
    else:
        metrics = {
            "width": 1200,
            "height": 900,
            "deviceScaleFactor": 1,
            "mobile": False,
        }
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
    driver.get(url)
    shot = driver.execute_cdp_cmd(
        "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True}
    )
    path.write_bytes(base64.b64decode(shot["data"]))
    print(f"wrote {path.relative_to(DOCS.parent)}")


def main() -> int:
    # The receivers' failures and the server's access log are expected.
    logging.basicConfig(level=logging.CRITICAL)
    logging.getLogger("werkzeug").setLevel(logging.CRITICAL)
    with tempfile.TemporaryDirectory() as tmp:
        app = make_app(str(pathlib.Path(tmp, "instance")))
        with contextlib.ExitStack() as stack:
            for signal, receiver in RECEIVERS:
                stack.enter_context(signal.connected_to(receiver, app))
            failed = fill(app)
            with (
                serve(app) as base,
                chromium(str(pathlib.Path(tmp, "profile"))) as driver,
            ):
                driver.get(base + "/login")
                pages = {
                    "deliveries": f"{base}{PREFIX}/",
                    "delivery": f"{base}{PREFIX}/deliveries/{failed}",
                    "rejections": f"{base}{PREFIX}/refused",
                    "health": f"{base}{PREFIX}/health",
                }
                for name, url in pages.items():
                    shoot(driver, url, DOCS / f"inspector-{name}.png", phone=False)
                for name in pages:
                    shoot(
                        driver,
                        pages[name],
                        DOCS / f"inspector-{name}-phone.png",
                        phone=True,
                    )
        for state in states(app).values():
            getattr(state.store, "close", lambda: None)()
    return 0


if __name__ == "__main__":
    sys.exit(main())
