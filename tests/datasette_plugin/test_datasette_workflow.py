"""Issue 17's acceptance walk, in one real headless Chromium session signed in as root, as a user goes:
image list -> tick two images -> Scan with chosen risk types -> the task page shows progress until done
-> an image's report from the list's "View report" link -> the vulnerabilities tab -> suppress one
vulnerability with a reason -> the count drops by exactly one everywhere (the report's summary strip,
the image list's row, the dashboard's critical headline, and `stowaway report --format json`) -> the
image's vulnerabilities exported as XLSX (downloaded by the browser) and as SARIF, and their rows
checked against each other and the report.

Exports (ingest/exports.py, datasette_plugin/renderers.py): the XLSX holds every vulnerability of the
image, a suppressed one marked (`suppressed` 1 with its reason); SARIF holds only failing, unsuppressed
findings of the same filter.

Reuses the console flow's server (`stowaway serve --root` on the demo images built in code, started
from another directory) and the browser fixture. A screenshot of every step at 1440 px and 390 px goes
to $STOWAWAY_SCREENSHOTS when set, else to the test's tmp dir (printed and recorded as a property).
Needs Debian's chromium and chromium-driver and selenium; skipped without them.
"""
from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from plugin_fixtures import db_name, demo_db  # noqa: F401 (demo_db is a fixture)
from test_datasette_browser import CHROMEDRIVER, CHROMIUM, browser  # noqa: F401 (browser is a fixture)
from test_datasette_console_flow import served_as_root, shoot  # noqa: F401 (served_as_root is a fixture)
from test_datasette_report_browser import strip_numbers

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)),
                       reason="needs Debian's chromium and chromium-driver"),
]
selenium = pytest.importorskip("selenium")

SCANNED = ["demo/app:2.0", "other/tool:1"]  # ticked and scanned from the console
REPORTED = "demo/app:1.0"  # its report is opened, and one of its vulnerabilities suppressed
SUPPRESSED = "CVE-2021-44228"  # the image's one critical vulnerability
REASON = "mitigated by the WAF rule 4711 until the log4j upgrade"


def image_row(driver, ref: str):
    from selenium.webdriver.common.by import By

    repository, tag = ref.rsplit(":", 1)
    return next(r for r in driver.find_elements(By.CSS_SELECTOR, "tr.sw-image-row")
                if r.find_element(By.CSS_SELECTOR, "a.sw-image-link").text == repository
                and tag in [td.text for td in r.find_elements(By.TAG_NAME, "td")])


def row_vulns(driver, ref: str) -> tuple[int, int]:
    """(critical, all open vulnerabilities) as the image list's row shows them (no critical link: 0)."""
    from selenium.webdriver.common.by import By

    cell = image_row(driver, ref).find_element(By.CSS_SELECTOR, "td.sw-vulns")
    critical = cell.find_elements(By.CSS_SELECTOR, "a.sw-count.sw-sev-critical")
    counts = cell.find_elements(By.CSS_SELECTOR, "a.sw-count")
    return (int(critical[0].text) if critical else 0), int(counts[-1].text)


def dashboard_critical(driver) -> int:
    from selenium.webdriver.common.by import By

    card = driver.find_element(By.CSS_SELECTOR, "li.sw-card-critical")
    assert "Critical vulnerabilities" in card.text
    return int(card.find_element(By.CSS_SELECTOR, ".sw-card-value").text.replace(",", ""))


def json_report(path: str, ref: str) -> dict:
    got = subprocess.run([os.path.join(os.path.dirname(sys.executable), "stowaway"), "report", ref, "--db", path,
                          "--format", "json"], capture_output=True, text=True, timeout=120)
    assert got.returncode == 0, got.stderr
    return json.loads(got.stdout)


def test_scan_report_suppress_counts_and_exports(served_as_root, browser, demo_db, tmp_path, record_property):
    from openpyxl import load_workbook
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    shots = Path(os.environ.get("STOWAWAY_SCREENSHOTS") or tmp_path / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    record_property("screenshots", str(shots))
    print(f"screenshots: {shots}")
    base, sign_in = served_as_root
    wait = WebDriverWait(browser, 30)
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    browser.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})

    def loaded() -> None:
        wait.until(lambda d: d.execute_script("return document.readyState") == "complete")
        time.sleep(0.3)  # plotly draws after load

    def both(name: str, reload: bool = True) -> None:
        """The page at 390 px, then at 1440 px. With RELOAD it is loaded again at each width (a phone
        lays it out, and plotly sizes its charts, as it loads); without, the page keeps what the user
        typed or opened and is only re-laid out."""
        for width in (390, 1440):
            if reload:
                browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
                    "width": width, "height": 900, "deviceScaleFactor": 1, "mobile": width < 600})
                browser.refresh()
                loaded()
            shoot(browser, shots, f"workflow-{name}", width)
        if reload:  # the user goes on at desktop width, on a page laid out for it
            browser.refresh()
            loaded()

    # 1. the image list, signed in: tick two images, choose two risk types, Scan
    browser.get(sign_in)
    browser.get(base + "/-/stowaway/images")
    both("01-images")
    browser.set_window_size(1440, 1200)
    for ref in SCANNED:
        image_row(browser, ref).find_element(By.CSS_SELECTOR, "input.sw-tick").click()
    assert browser.find_element(By.ID, "sw-ticked").text == "(2 ticked)"
    for box in browser.find_elements(By.CSS_SELECTOR, "#sw-scan input[name=risk]"):
        if (box.get_attribute("value") in {"software", "files"}) != box.is_selected():
            box.click()
    both("02-images-ticked", reload=False)
    browser.find_element(By.ID, "sw-scan-button").click()

    # 2. the redirect to the task page, which shows its progress and follows the task until done
    wait.until(lambda d: "/-/stowaway/task/" in d.current_url)
    task_id = int(browser.current_url.rsplit("/", 1)[1])
    assert browser.find_element(By.TAG_NAME, "h1").text.startswith(f"Task {task_id}: manual scan of 2 sources")
    progress = browser.find_element(By.ID, "sw-task-progress")
    assert progress.is_displayed() and progress.get_attribute("max") == "2"
    assert "File information, Software" in browser.find_element(By.CSS_SELECTOR, ".sw-facts").text
    both("03-task-started", reload=False)
    WebDriverWait(browser, 240, poll_frequency=0.5).until(
        lambda d: d.find_element(By.ID, "sw-task-state").text == "done"
        and d.find_element(By.ID, "sw-task").get_attribute("data-finished") == "1")
    assert browser.find_element(By.ID, "sw-task-count").text == "2/2"
    assert browser.find_element(By.ID, "sw-task-progress").get_attribute("value") == "2"
    scans = browser.find_elements(By.CSS_SELECTOR, ".sw-task-scan")
    assert sorted(s.find_element(By.TAG_NAME, "a").text for s in scans) == sorted(SCANNED)
    assert all(s.get_attribute("data-status") == "done" for s in scans)
    both("04-task-done")

    # 3. back on the image list: the counts before, then the report through the row's View link
    browser.get(base + "/-/stowaway/images")
    row_before = row_vulns(browser, REPORTED)
    assert row_before[0] >= 1
    browser.get(base + "/-/stowaway/dashboard")
    dash_before = dashboard_critical(browser)
    assert dash_before >= row_before[0]
    cli_before = json_report(demo_db, REPORTED)
    browser.get(base + "/-/stowaway/images")
    image_row(browser, REPORTED).find_element(By.CSS_SELECTOR, "a.sw-view-report").click()
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "#sw-report[data-tab='basic']")))
    assert browser.find_element(By.TAG_NAME, "h1").text == REPORTED
    strip_before = strip_numbers(browser)
    assert strip_before["vulnerability"] == row_before[1]
    both("05-report-basic")

    # 4. the vulnerabilities tab: expand the critical one and suppress it with a reason
    browser.find_element(By.CSS_SELECTOR, "a.sw-tab[data-tab='vulnerabilities']").click()
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "#sw-report[data-tab='vulnerabilities']")))
    both("06-report-vulnerabilities")
    row = next(d for d in browser.find_elements(By.CSS_SELECTOR, "details.sw-vuln")
               if d.find_element(By.CSS_SELECTOR, ".sw-f-id").text == SUPPRESSED)
    fid = row.get_attribute("id")
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", row)
    row.find_element(By.TAG_NAME, "summary").click()
    wait.until(lambda d: d.find_element(By.ID, fid).get_attribute("open") is not None)
    row.find_element(By.CSS_SELECTOR, ".sw-suppress > summary").click()
    reason = wait.until(EC.visibility_of(row.find_element(By.CSS_SELECTOR, ".sw-suppress input[name='reason']")))
    reason.send_keys(REASON)
    both("07-suppress-reason", reload=False)
    row.find_element(By.CSS_SELECTOR, ".sw-suppress button[type='submit']").click()
    wait.until(lambda d: d.current_url.endswith(f"?tab=vulnerabilities#{fid}"))
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "#sw-report[data-tab='vulnerabilities']")))
    assert f"suppressed: {REASON}" in browser.find_element(By.ID, fid).text
    both("08-report-suppressed")

    # 5. the counts changed by one everywhere: the strip, the list's row, the dashboard, the JSON report
    strip_after = strip_numbers(browser)
    assert strip_after["vulnerability"] == strip_before["vulnerability"] - 1
    assert strip_after["suppressed"] == strip_before["suppressed"] + 1
    critical_badge = browser.find_elements(
        By.CSS_SELECTOR, ".sw-sev-count[data-kind='vulnerability'][data-severity='critical']")
    assert not critical_badge or int(critical_badge[0].get_attribute("data-failing")) == row_before[0] - 1
    browser.get(base + "/-/stowaway/images")
    assert row_vulns(browser, REPORTED) == (row_before[0] - 1, row_before[1] - 1)
    both("09-images-after")
    browser.get(base + "/-/stowaway/dashboard")
    assert dashboard_critical(browser) == dash_before - 1
    both("10-dashboard-after")
    cli_after = json_report(demo_db, REPORTED)
    failing = lambda r: r["counts"]["failing"].get("vulnerability", {}).get("critical", 0)  # noqa: E731
    suppressed = lambda r: r["counts"]["suppressed"].get("vulnerability", {}).get("critical", 0)  # noqa: E731
    assert failing(cli_before) == row_before[0] and failing(cli_after) == row_before[0] - 1
    assert suppressed(cli_after) == suppressed(cli_before) + 1
    marked = [v for v in cli_after["vulnerabilities"] if v["id"] == SUPPRESSED]
    assert marked and all(v.get("suppressed") is True and v.get("suppressed_reason") == REASON for v in marked)

    # 6. export: the vulnerabilities tab's XLSX link, downloaded by the browser
    browser.get(base + f"/-/stowaway/image/{REPORTED}?tab=vulnerabilities")
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "#sw-report[data-tab='vulnerabilities']")))
    browser.find_element(By.CSS_SELECTOR, "section#vulnerabilities a.sw-more[href*='vulnerabilities.xlsx']").click()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not list(downloads.glob("*.xlsx")):
        time.sleep(0.2)
    files = list(downloads.glob("*.xlsx"))
    assert [f.name for f in files] == ["stowaway-vulnerabilities-demo_app_1.0.xlsx"], files
    sheet = load_workbook(files[0]).active
    assert sheet.freeze_panes == "A2" and sheet.auto_filter.ref
    header = [c.value for c in sheet[1]]
    rows = [dict(zip(header, r)) for r in sheet.iter_rows(min_row=2, values_only=True)]
    assert {r["image"] for r in rows} == {REPORTED}
    # every vulnerability of the image, the suppressed one marked with its reason (as the export documents)
    assert sorted(r["vulnerability_id"] for r in rows) == sorted(v["id"] for v in cli_after["vulnerabilities"])
    open_rows = [r for r in rows if r["suppressed"] in (0, "0")]
    gone = [r for r in rows if r["suppressed"] in (1, "1")]
    assert [(r["vulnerability_id"], r["suppressed_reason"]) for r in gone] == [(SUPPRESSED, REASON)]
    assert len(open_rows) == strip_after["vulnerability"]
    assert sum(r["severity"] == "critical" for r in open_rows) == row_before[0] - 1

    # ... and SARIF of the same image's vulnerabilities: one result per failing, unsuppressed row
    with sqlite3.connect(demo_db) as conn:
        image_id = conn.execute("SELECT id FROM images WHERE reference = ?", [REPORTED]).fetchone()[0]
    sarif_url = f"{base}/{db_name(demo_db)}/vulnerabilities_view.sarif?image_id={image_id}"
    sarif = json.load(urllib.request.urlopen(sarif_url, timeout=60))
    results = sarif["runs"][0]["results"]
    assert sorted(r["ruleId"] for r in results) == sorted(r["vulnerability_id"] for r in open_rows)
    assert SUPPRESSED not in {r["ruleId"] for r in results}
    assert {r["properties"]["image"] for r in results} == {REPORTED}
    browser.get(sarif_url)
    both("11-sarif")
    taken = {p.name for p in shots.glob("workflow-*.png")}
    assert len(taken) == 22, sorted(taken)
