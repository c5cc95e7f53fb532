"""The console's scan workflow once in real headless Chromium, signed in as root through `stowaway
serve --root`: image list -> tick two images -> Scan with two risk types -> the task page (polling
while it runs) -> finished -> the image list shows the new scans.

Screenshots of the image list and the task page at 1440 px and 390 px go to $STOWAWAY_SCREENSHOTS
when set, else to the test's tmp dir; the directory is printed and recorded as a test property.
"""
from __future__ import annotations

import os
import re
import shutil
import sqlite3
from pathlib import Path

import pytest
from plugin_fixtures import demo_db, serving  # noqa: F401 (demo_db is a fixture)
from test_datasette_browser import CHROMEDRIVER, CHROMIUM, browser  # noqa: F401 (browser is a fixture)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)),
                       reason="needs Debian's chromium and chromium-driver"),
]
selenium = pytest.importorskip("selenium")


@pytest.fixture
def served_as_root(demo_db, tmp_path):
    """`stowaway serve DB --root`, started from another directory than the database's; yields the base
    URL and the sign-in link it prints."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    token = r"http://\S+/-/auth-token\?token=\w+"
    with serving(demo_db, tmp_path / "serve.log", "--root", cwd=elsewhere, wait_for=token) as (base, output):
        yield base, re.search(token, output)[0]  # type: ignore[index]


def shoot(driver, directory: Path, name: str, width: int) -> Path:
    """A screenshot of the whole page at WIDTH px (the window grows to the page's height, up to 6000)."""
    metrics = {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": width < 600}
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
    height = driver.execute_script("return Math.max(document.body.scrollHeight, document.documentElement.scrollHeight)")
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {**metrics, "height": min(6000, int(height))})
    path = directory / f"{name}-{width}.png"
    driver.save_screenshot(str(path))
    driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    assert path.stat().st_size > 5_000
    return path


def last_scans(path, refs):
    with sqlite3.connect(path) as conn:
        return {r: conn.execute("SELECT last_scan_id FROM images WHERE reference = ?", [r]).fetchone()[0] for r in refs}


def test_tick_two_images_scan_and_follow_the_task(served_as_root, browser, demo_db, tmp_path, record_property):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    shots = Path(os.environ.get("STOWAWAY_SCREENSHOTS") or tmp_path / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    record_property("screenshots", str(shots))
    print(f"screenshots: {shots}")
    base, token = served_as_root
    chosen = ["demo/app:1.0", "other/tool:1"]
    before = last_scans(demo_db, chosen + ["demo/app:2.0"])

    browser.get(token)  # signs in as root: the Scan form and the checkboxes appear
    browser.get(base + "/-/stowaway/images")
    shoot(browser, shots, "images", 1440)
    browser.set_window_size(1440, 1200)
    for ref in chosen:
        repository, tag = ref.rsplit(":", 1)
        row = next(r for r in browser.find_elements(By.CSS_SELECTOR, "tr.sw-image-row")
                   if r.find_element(By.CSS_SELECTOR, "a.sw-image-link").text == repository
                   and tag in [td.text for td in r.find_elements(By.TAG_NAME, "td")])
        row.find_element(By.CSS_SELECTOR, "input.sw-tick").click()
    assert browser.find_element(By.ID, "sw-ticked").text == "(2 ticked)"
    wanted = {"software", "files"}
    for box in browser.find_elements(By.CSS_SELECTOR, "#sw-scan input[name=risk]"):
        if (box.get_attribute("value") in wanted) != box.is_selected():
            box.click()
    browser.find_element(By.ID, "sw-scan-button").click()

    WebDriverWait(browser, 30).until(lambda d: "/-/stowaway/task/" in d.current_url)
    task_id = int(browser.current_url.rsplit("/", 1)[1])
    heading = browser.find_element(By.TAG_NAME, "h1").text
    assert heading.startswith(f"Task {task_id}: manual scan of 2 sources"), heading
    progress = browser.find_element(By.ID, "sw-task-progress")
    assert progress.get_attribute("max") == "2"
    assert "File information, Software" in browser.find_element(By.CSS_SELECTOR, ".sw-facts").text
    first_state = browser.find_element(By.ID, "sw-task-state").text
    assert first_state in ("queued", "running", "done")

    # the page follows the task by itself (polling its JSON, reloading when a count changes)
    WebDriverWait(browser, 240, poll_frequency=0.5).until(
        lambda d: d.find_element(By.ID, "sw-task-state").text == "done"
        and d.find_element(By.ID, "sw-task").get_attribute("data-finished") == "1")
    assert browser.find_element(By.ID, "sw-task-count").text == "2/2"
    scans = browser.find_elements(By.CSS_SELECTOR, ".sw-task-scan")
    assert sorted(s.find_element(By.TAG_NAME, "a").text for s in scans) == sorted(chosen)
    assert all(s.get_attribute("data-status") == "done" for s in scans)
    shoot(browser, shots, "task", 1440)
    shoot(browser, shots, "task", 390)

    after = last_scans(demo_db, chosen + ["demo/app:2.0"])
    assert all(after[r] > before[r] for r in chosen) and after["demo/app:2.0"] == before["demo/app:2.0"]
    with sqlite3.connect(demo_db) as conn:
        assert {r[0] for r in conn.execute("SELECT risk_types FROM scans WHERE task_id = ?", [task_id])} == \
            {'["files", "software"]'}
        finished = {r: conn.execute("SELECT finished_at FROM scans WHERE id = ?", [after[r]]).fetchone()[0]
                    for r in chosen}

    # the image list shows each image's new scan
    browser.get(base + "/-/stowaway/images")
    for ref in chosen:
        repository, tag = ref.rsplit(":", 1)
        row = next(r for r in browser.find_elements(By.CSS_SELECTOR, "tr.sw-image-row")
                   if r.find_element(By.CSS_SELECTOR, "a.sw-image-link").text == repository
                   and tag in [td.text for td in r.find_elements(By.TAG_NAME, "td")])
        state = row.find_element(By.CSS_SELECTOR, "td.sw-scan-state")
        assert "sw-state-done" in state.get_attribute("class") and finished[ref] in state.text
    shoot(browser, shots, "images", 390)
    browser.get(base + "/-/stowaway/tasks")
    assert f"Task {task_id}" in browser.find_element(By.CSS_SELECTOR, "table.sw-tasks").text
    shoot(browser, shots, "tasks", 1440)
    shoot(browser, shots, "tasks", 390)
    assert {p.name for p in shots.glob("*.png")} >= {"images-1440.png", "images-390.png", "task-1440.png",
                                                     "task-390.png"}
    shutil.rmtree(tmp_path / "chromium-profile", ignore_errors=True)


def test_the_task_page_follows_a_task_it_was_opened_before(served_as_root, browser, demo_db):
    """Opened while the task is still queued, the page shows its progress as it goes and ends at done by
    itself (its poll of the task's JSON), without the test reloading it."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from stowaway.ingest import background
    from stowaway.ingest import db as dbm
    from stowaway.ingest.tasks import create_task

    base, token = served_as_root
    with sqlite3.connect(demo_db) as conn:
        source = conn.execute("SELECT source FROM images WHERE reference = 'other/tool:1'").fetchone()[0]
    database = dbm.connect(demo_db)
    task_id = create_task(database, [f"{source}:other/tool:1"], "manual", ["files"])
    database.conn.close()
    browser.get(base + f"/-/stowaway/task/{task_id}")
    assert browser.find_element(By.ID, "sw-task-state").text == "queued"
    assert browser.find_element(By.ID, "sw-task-count").text == "0/1"
    assert browser.find_element(By.ID, "sw-task").get_attribute("data-polling") == "1"
    background.start(demo_db, task_id, {})
    WebDriverWait(browser, 240, poll_frequency=0.5).until(
        lambda d: d.find_element(By.ID, "sw-task-state").text == "done"
        and d.find_element(By.ID, "sw-task").get_attribute("data-finished") == "1")
    assert browser.find_element(By.ID, "sw-task-count").text == "1/1"
    assert browser.find_element(By.CSS_SELECTOR, ".sw-task-scan a").text == "other/tool:1"
