"""The inspector in a real browser: the system's headless Chromium driven
by Selenium, against the app served on loopback. It lists, filters,
searches, opens a delivery, replays and sees the status change, refuses a
visitor who is not authorized, shows a ``<script>`` payload as text, and
fits a phone's screen.

Needs Debian's ``chromium`` and ``chromium-driver`` (``chromium`` and
``chromedriver`` on the PATH, ``make browser`` installs them): without them
the tests are skipped, and fail under ``CI=true``. Nothing is downloaded.
"""

from __future__ import annotations

import collections.abc as c
import contextlib
import dataclasses
import os
import shutil
import threading
import typing as t
from pathlib import Path

import pytest
from flask import Flask
from flask import session
from flask.typing import ResponseReturnValue
from werkzeug.serving import make_server

from flask_openai_webhooks.blueprint import make_blueprint
from flask_openai_webhooks.inspector import make_inspector_blueprint
from flask_openai_webhooks.log import get_delivery
from flask_openai_webhooks.signals import batch_completed
from flask_openai_webhooks.state import states
from flask_openai_webhooks.testing import new_webhook_id
from flask_openai_webhooks.testing import post_event

from .conftest import SECRET
from .services import unavailable

if t.TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver
    from selenium.webdriver.remote.webelement import WebElement

#: Debian's packages put them here; any on the PATH will do.
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1200,900",
)
PREFIX = "/admin/openai-webhooks"
XSS = "<script>alert(1)</script>"


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> c.Iterator[WebDriver]:
    """One headless Chromium for the module, with a fresh profile."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            unavailable(
                f"{path} not found: install Debian's chromium and chromium-driver"
            )
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError as exc:
        unavailable(f"Selenium is not installed: {exc}")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tmp_path_factory.mktemp("chromium-profile")
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


class Receiver:
    """Fails while ``broken``."""

    broken = False

    def __call__(self, sender: Flask, **extra: t.Any) -> None:
        if self.broken:
            raise ConnectionError("the results bucket did not answer")


@dataclasses.dataclass
class Site:
    """The app, served; deliveries are posted through its test client."""

    app: Flask
    url: str
    receiver: Receiver

    def post(self, event_type: str = "batch.completed", **fields: t.Any) -> str:
        webhook_id = new_webhook_id()
        post_event(self.app.test_client(), event_type, webhook_id=webhook_id, **fields)
        return webhook_id

    def status(self, webhook_id: str) -> str:
        record = get_delivery(webhook_id, app=self.app)
        assert record is not None
        return record.status


@contextlib.contextmanager
def serve(app: Flask) -> c.Iterator[str]:
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


@pytest.fixture
def site(browser: WebDriver, tmp_path: Path) -> c.Iterator[Site]:
    """An app with an SQLite log, its inspector for admins, and a
    ``/login`` that makes the browser's session an admin's; the browser
    starts logged out."""
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY="browser-tests",
        OPENAI_WEBHOOK_SECRET=SECRET,
        OPENAI_WEBHOOK_STORE=f"sqlite:///{tmp_path / 'log.db'}",
    )
    app.register_blueprint(make_blueprint())
    app.register_blueprint(
        make_inspector_blueprint(authorize=lambda: session.get("admin") is True),
        url_prefix=PREFIX,
    )

    @app.get("/login")
    def login() -> ResponseReturnValue:
        session["admin"] = True
        return "logged in"

    receiver = Receiver()
    with batch_completed.connected_to(receiver, app), serve(app) as url:
        browser.delete_all_cookies()
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
        yield Site(app, url, receiver)
    for state in states(app).values():
        getattr(state.store, "close", lambda: None)()


def log_in(browser: WebDriver, site: Site) -> None:
    browser.get(site.url + "/login")
    browser.get(site.url + PREFIX + "/")


def rows(browser: WebDriver) -> list[WebElement]:
    from selenium.webdriver.common.by import By

    return browser.find_elements(By.CSS_SELECTOR, "table.deliveries tbody tr")


def click_and_wait(browser: WebDriver, element: WebElement) -> None:
    """Click something that loads a page, and wait for the new page."""
    element.click()
    wait_for_new_page(browser, element)


def wait_for_new_page(browser: WebDriver, element: WebElement) -> None:
    """Wait until ``element``'s page has been replaced."""
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser, 10).until(expected_conditions.staleness_of(element))


def test_list_filter_search_and_open_a_delivery(browser: WebDriver, site: Site) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    site.post(data={"id": "batch_fine"})
    site.post("response.completed")
    site.receiver.broken = True
    failed = site.post(data={"id": "batch_broken"})
    site.receiver.broken = False
    log_in(browser, site)

    assert browser.title == "Deliveries · OpenAI webhooks"
    assert len(rows(browser)) == 3
    # Filter: tick "failed" by its label, as a user would.
    browser.find_element(By.CSS_SELECTOR, "label[for='f-status-failed']").click()
    click_and_wait(browser, browser.find_element(By.XPATH, "//button[.='Filter']"))
    assert "status=failed" in browser.current_url
    assert [row.text.split()[0] for row in rows(browser)] == ["batch.completed"]
    assert browser.find_element(By.ID, "f-status-failed").is_selected()
    click_and_wait(browser, browser.find_element(By.LINK_TEXT, "Clear filters"))
    assert len(rows(browser)) == 3
    # Search by object id, submitted with the Enter key.
    search = browser.find_element(By.ID, "f-q")
    search.send_keys("batch_broken", Keys.ENTER)
    wait_for_new_page(browser, search)
    (row,) = rows(browser)
    assert failed in row.text

    click_and_wait(browser, row.find_element(By.TAG_NAME, "a"))

    assert browser.current_url == f"{site.url}{PREFIX}/deliveries/{failed}"
    heading = browser.find_element(By.TAG_NAME, "h1").text
    assert heading.split() == ["batch.completed", "failed"]
    traceback = browser.find_element(By.CSS_SELECTOR, ".failure pre.code")
    assert traceback.is_displayed()  # the first traceback is open
    assert "ConnectionError: the results bucket did not answer" in traceback.text
    body = browser.find_element(By.CSS_SELECTOR, "pre.body").text
    assert '"id": "batch_broken"' in body


def test_replay_button_changes_the_status(browser: WebDriver, site: Site) -> None:
    from selenium.webdriver.common.by import By

    site.receiver.broken = True
    webhook_id = site.post()
    site.receiver.broken = False
    log_in(browser, site)
    browser.get(f"{site.url}{PREFIX}/deliveries/{webhook_id}")
    assert browser.find_element(By.CSS_SELECTOR, "h1 .badge").text == "failed"

    click_and_wait(
        browser, browser.find_element(By.XPATH, "//button[.='Replay this delivery']")
    )

    assert browser.find_element(By.CSS_SELECTOR, "h1 .badge").text == "processed"
    notice = browser.find_element(By.CSS_SELECTOR, "[role='status']").text
    assert "The delivery is now processed." in notice
    timeline = browser.find_elements(By.CSS_SELECTOR, ".timeline li")
    assert timeline[-1].text.split()[-2:] == ["replay", "processed"]
    assert site.status(webhook_id) == "processed"
    # Post, redirect, get: reloading does not replay again.
    browser.refresh()
    record = get_delivery(webhook_id, app=site.app)
    assert record is not None and record.attempts == 2


def test_replay_all_failed_button(browser: WebDriver, site: Site) -> None:
    from selenium.webdriver.common.by import By

    site.receiver.broken = True
    failing = [site.post() for _ in range(2)]
    site.receiver.broken = False
    log_in(browser, site)

    click_and_wait(
        browser, browser.find_element(By.XPATH, "//button[.='Replay all failed']")
    )

    notice = browser.find_element(By.CSS_SELECTOR, "[role='status']").text
    assert "Replayed 2 failed deliveries: 2 succeeded." in notice
    assert [site.status(webhook_id) for webhook_id in failing] == ["processed"] * 2
    badges = browser.find_elements(By.CSS_SELECTOR, "table.deliveries .badge")
    assert [badge.text for badge in badges] == ["processed"] * 2


def test_a_visitor_who_is_not_authorized_gets_403(
    browser: WebDriver, site: Site
) -> None:
    from selenium.webdriver.common.by import By

    webhook_id = site.post()

    for path in ("/", f"/deliveries/{webhook_id}", "/refused", "/health"):
        browser.get(site.url + PREFIX + path)
        assert browser.title == "403 Forbidden", path
        assert webhook_id not in browser.page_source
    log_in(browser, site)
    assert browser.find_element(By.TAG_NAME, "h1").text == "Deliveries"


def test_a_script_in_a_payload_shows_as_text(browser: WebDriver, site: Site) -> None:
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By

    webhook_id = site.post(data={"id": XSS})
    log_in(browser, site)

    (row,) = rows(browser)
    assert XSS in row.text
    browser.get(f"{site.url}{PREFIX}/deliveries/{webhook_id}")
    facts = browser.find_element(By.CSS_SELECTOR, "dl.facts").text
    assert f"Object id\n{XSS}" in facts
    assert browser.find_elements(By.TAG_NAME, "script") == []
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.accept()


def test_every_page_fits_a_phone(browser: WebDriver, site: Site) -> None:
    from selenium.webdriver.common.by import By

    site.receiver.broken = True
    webhook_id = site.post(data={"id": "batch_" + "x" * 60})
    post_event(
        site.app.test_client(),
        "batch.completed",
        headers={"webhook-signature": "v1,bad"},
    )
    log_in(browser, site)
    browser.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": True},
    )

    for path in ("/", f"/deliveries/{webhook_id}", "/refused", "/health"):
        browser.get(site.url + PREFIX + path)
        width, viewport = browser.execute_script(
            "return [document.documentElement.scrollWidth, window.innerWidth]"
        )
        assert viewport == 390
        assert width <= viewport, path
        for link in browser.find_elements(By.CSS_SELECTOR, "nav a"):
            assert link.is_displayed()
