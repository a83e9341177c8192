"""The web dashboard (docs/management.md section 5) in a real headless Chromium, driven by Selenium
against a running hub with an SDK worker: the overview's counts and types follow the queue live,
the failed jobs are listed with their errors, a job's page retries it, a type is paused and
resumed, its limits set and cleared, and a bulk removal asks for the queue's name before it removes
anything. Skipped where Chromium or its driver is missing, unless EMPFAST_REQUIRE_BROWSER is set
(CI sets it)."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import orjson
import pytest
from support import MakeStore, free_port

from empfast.client import Client, Monitor
from empfast.config import HubConfig
from empfast.hub import Hub
from empfast.worker import NonRetryableError, Worker

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
DRIVER = shutil.which("chromedriver")

if not (CHROMIUM and DRIVER):
    if os.environ.get("EMPFAST_REQUIRE_BROWSER"):
        pytest.fail("no chromium or chromedriver, and EMPFAST_REQUIRE_BROWSER is set: apt-get install "
                    "chromium chromium-driver", pytrace=False)
    pytest.skip("no chromium and chromedriver (apt-get install chromium chromium-driver)",
                allow_module_level=True)

from selenium import webdriver  # noqa: E402  (only where a browser exists)
from selenium.common.exceptions import StaleElementReferenceException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.support.wait import WebDriverWait  # noqa: E402

WAIT_S = 15
FIRST_ROW = "const row = document.querySelector('#jobs tr[data-job]'); return row && row.dataset.job;"


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM or ""
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--window-size=1400,1000"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(DRIVER))
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
async def dashboard_hub(make_store: MakeStore) -> AsyncIterator[Hub]:
    hub = Hub(await make_store(name="dash"), HubConfig(port=0, http_port=free_port(), sweep_interval_s=0.05,
                                                       stats_interval_s=0.05, events_block_ms=50))
    await hub.start()
    yield hub
    await hub.stop()


async def handle(job: Any) -> Any:
    if job.payload.get("fail"):
        raise NonRetryableError("the thumbnail service said 503")
    steps = job.payload.get("steps", 0)
    for step in range(steps):
        await asyncio.sleep(0.15)
        job.log(f"step {step + 1} of {steps}")
        await job.progress(100 * (step + 1) / steps)
    return {"ok": job.payload.get("n")}


def until(driver: WebDriver, check: Callable[[WebDriver], Any], what: str) -> Any:
    # the page redraws parts of itself on every event: an element found a moment ago may be gone
    wait = WebDriverWait(driver, WAIT_S, poll_frequency=0.1,
                         ignored_exceptions=(StaleElementReferenceException,))
    return wait.until(check, message=f"waited for {what}")


def click(driver: WebDriver, by: str, value: str) -> None:
    """Click an element, found again if the page redrew it between the finding and the click."""
    until(driver, lambda d: d.find_element(by, value).click() or True, f"a click on {value}")


def text_of(driver: WebDriver, css: str) -> str:
    """The text of the first element `css` finds ("" for none), read in one step in the page."""
    text: str = driver.execute_script(
        "const found = document.querySelector(arguments[0]); return found ? found.innerText : '';", css)
    return text


def api_post(port: int, path: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=orjson.dumps(body), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        reply: dict[str, Any] = orjson.loads(answer.read())
    return reply


async def test_the_dashboard_shows_the_queue_live_and_acts_on_jobs(browser: WebDriver,
                                                                 dashboard_hub: Hub) -> None:
    hub = dashboard_hub
    assert hub.http is not None
    port = hub.http.port
    url = f"ws://127.0.0.1:{hub.port}"
    async with Worker(url, {"thumb": handle}, worker_id="dash-w1", concurrency=4) as worker, \
            Client(url) as client:
        failed = await client.submit("thumb", {"fail": True}, job_id="bad-1", max_attempts=1)
        with pytest.raises(Exception, match="503"):
            await failed.result(timeout=10)
        for n in range(3):
            await (await client.submit("thumb", {"n": n})).result(timeout=10)
        await worker.wait_idle()

        def overview() -> None:
            browser.get(f"http://127.0.0.1:{port}/")
            until(browser, lambda d: "queue dash" in text_of(d, "#where"), "the queue's name in the header")
            until(browser, lambda d: text_of(d, "[data-count=failed] .n") == "1", "one failed job")
            until(browser, lambda d: text_of(d, "[data-count=completed] .n") == "3", "three completed")
            until(browser, lambda d: "dash-w1" in text_of(d, "#workers"), "the worker")
            until(browser, lambda d: text_of(d, "#live") == "live", "the live feed")

        await asyncio.to_thread(overview)
        # a job added now shows on the open page without a reload (the SSE feed's stats)
        other = {"job_type": "other", "payload": {"n": 9}}
        added = await asyncio.to_thread(api_post, port, "/api/jobs", other)
        await asyncio.to_thread(
            lambda: until(browser, lambda d: text_of(d, "[data-count=pending] .n") == "1",
                          "the new pending job"))
        # a job that waits for it (depends_on) is counted waiting, in the cards and in its type's row
        child = {"job_type": "other", "depends_on": [added["job_id"]]}
        await asyncio.to_thread(api_post, port, "/api/jobs", child)
        await asyncio.to_thread(
            lambda: until(browser, lambda d: text_of(d, "[data-count=waiting] .n") == "1", "the waiting job"))
        assert text_of(browser, "tr[data-type=other] td:nth-child(5)") == "1"
        await asyncio.to_thread(
            lambda: until(browser, lambda d: "no worker" in text_of(d, "tr[data-type=other]"),
                          "the badge of a type with jobs and no worker"))

        def failed_jobs_then_retry() -> None:
            click(browser, By.CSS_SELECTOR, "[data-count=failed]")
            until(browser, lambda d: "bad-1" in text_of(d, "#jobs"), "the failed job in the listing")
            assert "the thumbnail service said 503" in text_of(browser, "tr[data-job=bad-1]")
            click(browser, By.LINK_TEXT, "bad-1")
            until(browser, lambda d: "503" in text_of(d, "ol li.error"), "the attempt's error")
            assert '"fail": true' in text_of(browser, "#payload")
            click(browser, By.ID, "retry")

        await asyncio.to_thread(failed_jobs_then_retry)
        # the retried job runs (and fails) again: its page follows it live
        await asyncio.to_thread(
            lambda: until(browser, lambda d: text_of(d, "[data-field=attempts]") == "2 of 2"
                          and text_of(d, "[data-field=status]") == "failed", "the retried run's end"))
        job = await client.status("bad-1")
        assert job["attempts"] == 2 and job["status"] == "failed"

        def pause_and_resume() -> None:
            browser.get(f"http://127.0.0.1:{port}/#/")
            row = "tr[data-type=thumb]"
            until(browser, lambda d: d.find_elements(By.CSS_SELECTOR, f"{row} button"), "the thumb row")
            click(browser, By.CSS_SELECTOR, f"{row} button")
            until(browser, lambda d: "paused" in text_of(d, row), "the paused badge")

        await asyncio.to_thread(pause_and_resume)
        assert (await client.stats())["paused"] == ["thumb"]
        held = await client.submit("thumb", {"n": 5})
        await asyncio.sleep(0.3)
        assert (await client.status(held.job_id))["status"] == "pending"  # paused: no worker gets it
        await asyncio.to_thread(
            lambda: click(browser, By.CSS_SELECTOR, "tr[data-type=thumb] button"))
        assert await held.result(timeout=10) == {"ok": 5}

        for n in range(4):
            await client.cancel((await client.submit("later", {"n": n}, delay_s=600)).job_id)

        def remove_cancelled() -> None:
            browser.get(f"http://127.0.0.1:{port}/#/jobs?status=cancelled")
            until(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#jobs tr[data-job]")) == 4,
                  "the cancelled jobs")
            click(browser, By.ID, "purge")
            until(browser, lambda d: d.find_element(By.ID, "confirm").is_displayed(), "the confirmation")
            assert "Remove 4 cancelled jobs" in text_of(browser, "#confirm-text")
            ok = browser.find_element(By.ID, "confirm-ok")
            assert not ok.is_enabled()  # the queue's name must be typed first
            browser.find_element(By.ID, "confirm-typed").send_keys("dash")
            until(browser, lambda d: d.find_element(By.ID, "confirm-ok").is_enabled(), "the typed name")
            ok.click()
            until(browser, lambda d: d.find_elements(By.ID, "no-jobs"), "the empty listing")

        await asyncio.to_thread(remove_cancelled)
        assert (await client.stats())["cancelled"] == 0


async def test_a_job_submitted_from_the_form_runs_to_100_percent_one_is_cancelled_and_1000_page(
        browser: WebDriver, dashboard_hub: Hub) -> None:
    hub = dashboard_hub
    assert hub.http is not None
    port = hub.http.port
    url = f"ws://127.0.0.1:{hub.port}"
    async with Worker(url, {"thumb": handle}, worker_id="dash-w2", concurrency=2), Client(url) as client:

        def submit_from_the_form() -> None:
            browser.get(f"http://127.0.0.1:{port}/")
            form = "#submit input[name=job_type]"
            until(browser, lambda d: d.find_elements(By.CSS_SELECTOR, form), "the form")
            browser.find_element(By.CSS_SELECTOR, form).send_keys("thumb")
            payload = browser.find_element(By.CSS_SELECTOR, "#submit input[name=payload]")
            payload.clear()
            payload.send_keys('{"steps": 4, "n": 7}')
            click(browser, By.CSS_SELECTOR, "#submit button[type=submit]")
            until(browser, lambda d: text_of(d, "h2").startswith("Job "), "the job's page")
            seen = set()
            logged = set()

            def watched(d: WebDriver) -> bool:
                seen.add(text_of(d, "#job-progress"))
                logged.add(text_of(d, "#logs"))
                done = text_of(d, "[data-field=status]") == "completed"
                return done and "100%" in text_of(d, "#job-progress")

            until(browser, watched, "the bar at 100 % and the job completed")
            assert len(seen) >= 2, seen  # it moved while the worker ran, not only at the end
            assert '"ok": 7' in text_of(browser, "#result")
            # the log lines, appended live from the job's events, then all of them
            assert text_of(browser, "#logs").splitlines() == [f"step {i} of 4" for i in range(1, 5)]
            assert any(text.startswith("step 1 of 4") and "step 4" not in text for text in logged), logged
            save_screenshot(browser, "dashboard-job.png")

        await asyncio.to_thread(submit_from_the_form)

        long_job = await client.submit("thumb", {"steps": 200}, group="acme")
        async for event in long_job.events():
            if event.get("status") == "active":
                break

        def cancel_it() -> None:
            browser.get(f"http://127.0.0.1:{port}/#/job/{long_job.job_id}")
            until(browser, lambda d: text_of(d, "[data-field=status]") == "active", "the running job")
            assert text_of(browser, "[data-field=group]") == "acme"  # its tenant (job-control.md 4)
            click(browser, By.ID, "cancel")
            until(browser, lambda d: d.find_element(By.ID, "confirm").is_displayed(), "the confirmation")
            click(browser, By.ID, "confirm-ok")
            until(browser, lambda d: text_of(d, "[data-field=status]") == "cancelled", "the job cancelled")

        await asyncio.to_thread(cancel_it)
        assert (await client.status(long_job.job_id))["status"] == "cancelled"

        ids = await client.submit_many([{"job_type": "backlog", "payload": {"n": n}} for n in range(1000)])

        def page_through() -> list[str]:
            browser.get(f"http://127.0.0.1:{port}/#/jobs?status=pending&type=backlog")
            listed: list[str] = []
            for _ in range(30):
                until(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#jobs tr[data-job], #no-jobs"),
                      "a page")
                rows: list[str] = browser.execute_script(
                    "return [...document.querySelectorAll('#jobs tr[data-job]')].map(r => r.dataset.job);")
                listed += rows
                # a page that ends exactly at the last job still has a cursor: the next one is empty
                if not rows or not browser.find_element(By.ID, "next").is_enabled():
                    return listed
                click(browser, By.ID, "next")
                until(browser, lambda d, first=rows[0]: d.execute_script(FIRST_ROW) != first, "the next page")
            return listed

        listed = await asyncio.to_thread(page_through)
        assert listed == ids  # every one, once, in the order workers would get them

        await client.submit("later", {}, delay_s=600)

        def overview_screenshot() -> None:
            browser.get(f"http://127.0.0.1:{port}/")
            until(browser, lambda d: text_of(d, "[data-count=pending] .n") == "1,000", "the backlog's count")
            # the types table: pending, then scheduled, by type
            until(browser, lambda d: text_of(d, "tr[data-type=later] td:nth-child(3)") == "1",
                  "the delayed job in its type's scheduled column")
            assert text_of(browser, "tr[data-type=backlog] td:nth-child(2)") == "1,000"
            save_screenshot(browser, "dashboard-overview.png")

        await asyncio.to_thread(overview_screenshot)


def save_screenshot(driver: WebDriver, name: str) -> None:
    """Kept as a test artefact: in $EMPFAST_ARTIFACTS (CI sets it), else the system's temp folder."""
    folder = os.environ.get("EMPFAST_ARTIFACTS") or tempfile.gettempdir()
    os.makedirs(folder, exist_ok=True)
    assert driver.save_screenshot(os.path.join(folder, name))


async def test_the_dashboard_shows_the_queue_its_address_names(browser: WebDriver,
                                                                 make_store: MakeStore) -> None:
    hub = Hub(await make_store(name="dash"), HubConfig(port=0, http_port=free_port(), queues="dash-b",
                                                       sweep_interval_s=0.05, stats_interval_s=0.05,
                                                       events_block_ms=50))
    await hub.start()
    try:
        assert hub.http is not None
        port = hub.http.port
        async with Client(f"ws://127.0.0.1:{hub.port}", queue="dash-b") as client:
            await client.submit("thumb", {"n": 1})
            await client.submit("thumb", {"n": 2})

        def queue_b() -> list[str]:
            browser.get(f"http://127.0.0.1:{port}/?queue=dash-b")
            until(browser, lambda d: "queue dash-b" in text_of(d, "#where"), "queue dash-b in the header")
            until(browser, lambda d: text_of(d, "[data-count=pending] .n") == "2", "its two pending jobs")
            options: list[str] = browser.execute_script(
                "return [...document.querySelectorAll('#queue option')].map((o) => o.value);")
            return options

        assert await asyncio.to_thread(queue_b) == ["dash", "dash-b"]

        def default_queue() -> None:
            browser.get(f"http://127.0.0.1:{port}/")
            until(browser, lambda d: "queue dash ·" in text_of(d, "#where"), "the default queue")
            until(browser, lambda d: text_of(d, "[data-count=pending] .n") == "0", "none pending there")

        await asyncio.to_thread(default_queue)
    finally:
        await hub.stop()


async def test_the_dashboard_lists_pauses_and_removes_repeating_jobs(browser: WebDriver,
                                                                   dashboard_hub: Hub) -> None:
    hub = dashboard_hub
    assert hub.http is not None
    port = hub.http.port
    async with Monitor(f"ws://127.0.0.1:{hub.port}") as monitor:
        await monitor.set_schedule("nightly", "report", cron="0 3 * * *", tz="Europe/Paris")

        def pause_then_remove() -> None:
            browser.get(f"http://127.0.0.1:{port}/")
            row = "tr[data-schedule=nightly]"
            until(browser, lambda d: "cron 0 3 * * * (Europe/Paris)" in text_of(d, row), "the schedule's row")
            click(browser, By.CSS_SELECTOR, f"{row} button")
            until(browser, lambda d: "paused" in text_of(d, row), "the paused schedule")
            click(browser, By.XPATH, "//tr[@data-schedule='nightly']//button[text()='Remove']")
            click(browser, By.ID, "confirm-ok")
            until(browser, lambda d: "No repeating jobs" in text_of(d, "#schedules"), "the schedule gone")

        await asyncio.to_thread(pause_then_remove)
        assert await monitor.schedules() == []


async def test_the_dashboard_shows_sets_and_clears_a_types_limits(browser: WebDriver,
                                                                  dashboard_hub: Hub) -> None:
    hub = dashboard_hub
    assert hub.http is not None
    port = hub.http.port
    row = "tr[data-type=thumb]"
    async with Client(f"ws://127.0.0.1:{hub.port}") as client, \
            Monitor(f"ws://127.0.0.1:{hub.port}") as monitor:
        await client.submit("thumb", {"n": 1})

        def set_from_the_page() -> None:
            browser.get(f"http://127.0.0.1:{port}/")
            until(browser, lambda d: text_of(d, f"{row} td.limits") == "none", "the thumb row, no limits")
            click(browser, By.CSS_SELECTOR, f"{row} button.edit-limits")
            until(browser, lambda d: d.find_element(By.ID, "limits").is_displayed(), "the limits form")
            assert text_of(browser, "#limits-type") == "thumb"
            browser.find_element(By.ID, "limits-concurrency").send_keys("5")
            browser.find_element(By.ID, "limits-rate").send_keys("10")
            browser.find_element(By.ID, "limits-group-concurrency").send_keys("2")
            click(browser, By.ID, "limits-set")
            shown = "≤ 5 active · 10 / 1 s · ≤ 2 per group"
            until(browser, lambda d: text_of(d, f"{row} td.limits") == shown, "the limits shown")

        await asyncio.to_thread(set_from_the_page)
        limits = (await client.stats())["limits"]
        assert limits == {"thumb": {"concurrency": 5, "rate": 10, "per_s": 1.0, "group_concurrency": 2}}
        # set elsewhere (a monitor of the hub, as on any hub): the open page follows the feed
        await monitor.set_type_limits("render", rate=3, per_s=60)
        await asyncio.to_thread(
            lambda: until(browser, lambda d: text_of(d, "tr[data-type=render] td.limits") == "3 / 60 s",
                          "a type limited elsewhere, before its first job"))

        def clear_from_the_page() -> None:
            click(browser, By.CSS_SELECTOR, f"{row} button.edit-limits")
            until(browser, lambda d: d.find_element(By.ID, "limits").is_displayed(), "the limits form")
            assert browser.find_element(By.ID, "limits-concurrency").get_attribute("value") == "5"
            click(browser, By.ID, "limits-clear")
            until(browser, lambda d: text_of(d, f"{row} td.limits") == "none", "the limits cleared")

        await asyncio.to_thread(clear_from_the_page)
        assert (await client.stats())["limits"] == {"render": {"concurrency": None, "rate": 3, "per_s": 60.0,
                                                               "group_concurrency": None}}
