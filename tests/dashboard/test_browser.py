"""The dashboard in a real browser (Debian's chromium, driven by Playwright) against the real
service: `callwatch up --demo`, as a user runs it, with simulated calls flowing.

A screenshot of each page goes to test-artefacts/dashboard/ (gitignored).
"""

import re
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Dialog, Page, sync_playwright

from callwatch.cli.up import local_url
from callwatch.db import transaction
from callwatch.model.records import Recording, Utterance
from callwatch.orgs import keys
from callwatch.runtime import Runtime
from callwatch.settings import Settings
from tests.cli.test_up import (
    EXIT_TIMEOUT_S,
    _callwatch_up,
    _free_port,
    _wait_for_assembled_call,
    _wait_for_banner,
)
from tests.downstream.test_deliveries import Receiver, Reply
from tests.factories import Tenant, add_call

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

CHROMIUM = Path("/usr/bin/chromium")
ARTEFACTS = Path(__file__).parents[2] / "test-artefacts" / "dashboard"
# Each sets window.__xss (or opens a dialog) if it ever runs.
SCRIPT = "<script>window.__xss = 'script'; alert('script')</script>"
ATTRIBUTE = "\"><img src=x onerror=\"window.__xss='onerror';alert('onerror')\">"
JAVASCRIPT_URL = "javascript:window.__xss='url';alert('url')"


@dataclass(frozen=True)
class Demo:
    url: str
    api_key: str
    workdir: Path

    def api(self, path: str) -> Any:
        headers = {"authorization": f"Bearer {self.api_key}"}
        response = httpx.get(self.url + path, headers=headers, timeout=10)
        assert response.status_code == 200, response.text
        return response.json()


# Module-scoped, not session: Playwright's sync API keeps an event loop running in this thread
# while it is open, and every later test that calls asyncio.run() would fail.
@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    workdir = tmp_path_factory.mktemp("dashboard-demo")
    port = _free_port()
    with (
        open(workdir / "stdout.txt", "w+") as stdout,
        open(workdir / "stderr.txt", "w+") as stderr,
        _callwatch_up(workdir, port, stdout, stderr, "--demo") as up,
    ):
        banner = _wait_for_banner(up, stdout, r"dashboard\s+(\S+)/\s+sign in with (cw_\S+)")
        url = local_url("127.0.0.1", port)
        _wait_for_assembled_call(url, banner.group(2))
        yield Demo(url, banner.group(2), workdir)
        up.process.send_signal(signal.SIGINT)
        up.process.wait(EXIT_TIMEOUT_S)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.skip("no /usr/bin/chromium: `apt-get install chromium` (.ci/run does)")
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=["--autoplay-policy=no-user-gesture-required"]
        )
        yield launched
        launched.close()


@dataclass
class Watched:
    """A page, and what it showed that it should not: dialogs and CSP violations."""

    page: Page
    dialogs: list[str]
    violations: list[str]


@pytest.fixture
def watched(browser: Browser) -> Iterator[Watched]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    seen = Watched(page, [], [])

    def on_dialog(dialog: Dialog) -> None:
        seen.dialogs.append(dialog.message)
        dialog.dismiss()

    def on_console(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text:
            seen.violations.append(message.text)

    page.on("dialog", on_dialog)
    page.on("console", on_console)
    yield seen
    context.close()


def _sign_in(page: Page, demo: Demo) -> None:
    page.goto(demo.url + "/")
    assert page.url == demo.url + "/login"
    page.fill("#api_key", demo.api_key)
    page.click("button:has-text('Sign in')")
    page.wait_for_url(demo.url + "/")


def _shoot(page: Page, name: str) -> None:
    page.screenshot(path=ARTEFACTS / f"{name}.png", full_page=True)
    page.set_viewport_size({"width": 375, "height": 800})
    page.screenshot(path=ARTEFACTS / f"{name}-375.png", full_page=True)
    # Nothing wider than a phone's screen but the tables, which scroll in their own box.
    overflow = page.evaluate("document.documentElement.scrollWidth")
    page.set_viewport_size({"width": 1280, "height": 900})
    assert overflow <= 375, f"{name} is {overflow} px wide at 375 px"


def test_sign_in_by_keyboard_see_each_page_and_sign_out(watched: Watched, demo: Demo) -> None:
    page = watched.page
    page.goto(demo.url + "/")
    assert page.url == demo.url + "/login"
    _shoot(page, "login")
    assert page.evaluate("document.activeElement.id") == "api_key"
    page.keyboard.type(demo.api_key)
    page.keyboard.press("Enter")
    page.wait_for_url(demo.url + "/")
    _shoot(page, "overview")
    page.keyboard.press("Tab")
    skip = page.evaluate("document.activeElement.textContent")

    assert page.inner_text("h1") == "Overview"
    assert int(page.inner_text("#tile-calls")) >= 1
    assert skip == "Skip to content"
    for path, name in (("/sources", "sources"), ("/subscriptions", "subscriptions")):
        page.goto(demo.url + path)
        _shoot(page, name)
    page.click("button:has-text('Sign out')")
    page.wait_for_url(demo.url + "/login")
    page.goto(demo.url + "/calls")

    assert page.url == demo.url + "/login"
    assert (watched.dialogs, watched.violations) == ([], [])


def test_the_call_log_filters_and_shows_new_calls_without_a_reload(
    watched: Watched, demo: Demo
) -> None:
    page = watched.page
    _sign_in(page, demo)
    page.goto(demo.url + "/calls")
    _shoot(page, "calls")

    page.select_option("select[name=status]", "completed")
    page.click("button:has-text('Filter')")
    page.wait_for_url(re.compile(r".*status=completed.*"))
    statuses = page.locator("#rows .status").all_inner_texts()
    shown = page.locator("#rows td:nth-child(2) a").all_inner_texts()
    # Calls keep arriving: every one shown is among the API's completed calls a moment later.
    completed = {item["id"] for item in demo.api("/api/calls?status=completed&limit=200")["items"]}
    assert set(statuses) == {"completed"}
    assert set(shown) <= completed
    assert len(shown) == len(statuses) >= 1

    page.goto(demo.url + "/calls")
    # The demo's calls end as they are played, so most start before the newest one shown: a call
    # that starts now is stored here, and the rows (polled every 5 s) must show it.
    _stored_call(demo, "call_fresh", started_at=datetime.now(UTC), recording=Recording())
    page.wait_for_function(
        "() => [...document.querySelectorAll('#rows td:nth-child(2) a')]"
        ".some(link => link.textContent === 'call_fresh')",
        timeout=20_000,
    )
    assert (watched.dialogs, watched.violations) == ([], [])


def _archived_call(demo: Demo) -> dict[str, Any]:
    """An assembled call with a transcript whose recording the demo has archived."""
    deadline = time.monotonic() + 60
    while True:
        for item in demo.api("/api/calls?include=transcript&has_recording=true&limit=200")["items"]:
            archive = item["recording"]["archive"] or {}
            if item["transcript"] and archive.get("status") == "archived":
                found: dict[str, Any] = item
                return found
        assert time.monotonic() < deadline, "no call's recording was archived within 60 s"
        time.sleep(1)


def test_a_call_page_plays_and_seeks_the_archived_recording_and_draws_the_call(
    watched: Watched, demo: Demo
) -> None:
    page = watched.page
    call = _archived_call(demo)
    archive_route = f"/api/calls/{call['id']}/recording"
    answers: list[tuple[str, int]] = []
    page.on("response", lambda response: answers.append((response.url, response.status)))
    _sign_in(page, demo)
    page.goto(f"{demo.url}/calls/{call['id']}")

    assert page.get_attribute("audio", "src") == archive_route
    duration = page.evaluate(
        "async () => { const audio = document.querySelector('audio'); await audio.play();"
        " return audio.duration; }"
    )
    sought = page.evaluate(
        "async (to) => { const audio = document.querySelector('audio'); audio.pause();"
        " const seeked = new Promise(done => audio.addEventListener('seeked', done, {once: true}));"
        " audio.currentTime = to; await seeked; return [audio.currentTime, audio.error]; }",
        duration / 2,
    )

    assert duration > 0
    assert sought == [pytest.approx(duration / 2, abs=0.05), None]
    assert (demo.url + archive_route, 206) in answers
    assert not [url for url, _ in answers if url == call["recording"]["url"]]
    assert page.locator(".conversation .turn p").all_inner_texts() == [
        utterance["content"] for utterance in call["transcript"]
    ]
    assert page.locator("figure.chart svg rect").count() >= 1
    _shoot(page, "call")
    assert (watched.dialogs, watched.violations) == ([], [])


def _stored_call(demo: Demo, call_id: str, **fields: Any) -> None:
    """An assembled call of the demo's source, stored in the demo's database."""
    data_dir = demo.workdir / ".callwatch"
    settings = Settings(database_url=f"sqlite:///{data_dir / 'callwatch.db'}", data_dir=data_dir)
    source = next(item for item in demo.api("/api/sources")["items"] if item["name"] == "demo")
    runtime = Runtime.start(settings)
    try:
        with transaction(runtime.sessions) as session:
            org_id = keys.org_of(session, demo.api_key)
        assert org_id is not None
        owner = Tenant(org_id, demo.api_key, source["id"], "demo")
        add_call(runtime, owner, call_id, **fields)
    finally:
        runtime.close()


def _hostile_call(demo: Demo) -> str:
    """A call whose every platform-supplied string is an attack."""
    _stored_call(
        demo,
        "call_hostile",
        agent_name=SCRIPT + ATTRIBUTE,
        agent_id=ATTRIBUTE,
        transcript=[
            Utterance(role="user", content=SCRIPT),
            Utterance(role="assistant", content=ATTRIBUTE + JAVASCRIPT_URL),
        ],
        metadata={"note": SCRIPT, "link": JAVASCRIPT_URL, ATTRIBUTE: ATTRIBUTE},
        recording=Recording(status="available", url=JAVASCRIPT_URL),
        end_reason_raw=ATTRIBUTE,
        started_at=datetime.now(UTC),
    )
    return "call_hostile"


def test_hostile_strings_run_nothing(watched: Watched, demo: Demo) -> None:
    page = watched.page
    call_id = _hostile_call(demo)
    _sign_in(page, demo)

    for path in (f"/calls/{call_id}", "/calls", "/?window=24h"):
        page.goto(demo.url + path)
        page.wait_for_load_state("networkidle")
        assert page.evaluate("window.__xss") is None, path
    page.goto(f"{demo.url}/calls/{call_id}")
    _shoot(page, "call-hostile")

    assert page.inner_text(".agent").startswith(SCRIPT + ATTRIBUTE)
    assert page.locator(".conversation .turn p").all_inner_texts() == [
        SCRIPT,
        ATTRIBUTE + JAVASCRIPT_URL,
    ]
    assert page.locator("audio").count() == 0
    assert page.locator("img").count() == 0
    assert page.evaluate("window.__xss") is None
    assert (watched.dialogs, watched.violations) == ([], [])


def test_an_alert_rule_made_on_the_page_fires(watched: Watched, demo: Demo) -> None:
    page = watched.page
    _sign_in(page, demo)
    page.goto(demo.url + "/alerts")
    page.fill("#call-rule-name", "any completed call")
    page.fill("#call-rule-expression", "status in [completed")
    page.click("button:has-text('Add call rule')")
    error = page.inner_text("#rule-error")
    page.fill("#call-rule-expression", "status in [completed]")
    page.click("button:has-text('Add call rule')")
    page.wait_for_url(demo.url + "/alerts")

    # The demo's calls keep completing: the rule fires on the next one assembled.
    deadline = time.monotonic() + 60
    newest = "() => document.querySelector('#fired tbody td:nth-child(2)')?.textContent ?? ''"
    while page.evaluate(newest) != "any completed call" and time.monotonic() < deadline:
        time.sleep(2)
        page.reload()
    _shoot(page, "alerts")

    api = httpx.post(
        demo.url + "/api/alert-rules",
        json={"name": "x", "kind": "call", "expression": "status in [completed"},
        headers={"authorization": f"Bearer {demo.api_key}"},
        timeout=10,
    )
    assert error == api.json()["detail"]
    assert page.evaluate(newest) == "any completed call"
    assert page.locator("#fired .status").first.inner_text() == "fired"
    assert (watched.dialogs, watched.violations) == ([], [])


def test_a_failed_delivery_is_retried_from_the_page(watched: Watched, demo: Demo) -> None:
    page = watched.page
    headers = {"authorization": f"Bearer {demo.api_key}"}
    with Receiver() as receiver:
        # The first delivery is refused (400: not retried by itself), the rest are taken.
        url = receiver.script("hook", Reply(400))
        created = httpx.post(
            demo.url + "/api/subscriptions",
            json={"url": url, "event_types": ["call.assembled"]},
            headers=headers,
            timeout=10,
        )
        assert created.status_code == 201, created.text
        one = f"/subscriptions/{created.json()['id']}"
        failed = _first_failed(demo, f"/api{one}/deliveries")
        _sign_in(page, demo)
        page.goto(demo.url + one)
        row = page.locator(f"tr:has(form[action$='/deliveries/{failed}/retry'])")
        before = row.locator(".status").inner_text()

        row.locator("button").click()
        page.wait_for_url(re.compile(r".*\?queued=1$"))
        deadline = time.monotonic() + 30
        while row.locator(".status").inner_text() != "delivered" and time.monotonic() < deadline:
            time.sleep(1)
            page.reload()
        _shoot(page, "subscription")

        assert before == "failed"
        assert row.locator(".status").inner_text() == "delivered"
        assert _statuses(demo, f"/api{one}/deliveries", failed) == [400, 200]
        assert (watched.dialogs, watched.violations) == ([], [])


def _first_failed(demo: Demo, log: str) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        failed = [item["id"] for item in demo.api(log)["items"] if item["state"] == "failed"]
        if failed:
            return str(failed[0])
        time.sleep(1)
    raise AssertionError("no delivery failed within 60 s")


def _statuses(demo: Demo, log: str, delivery_id: str) -> list[int | None]:
    """The status code of each of the delivery's attempts, in order."""
    [item] = [item for item in demo.api(log)["items"] if item["id"] == delivery_id]
    return [attempt["status_code"] for attempt in item["attempts"]]
