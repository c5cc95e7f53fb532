"""Every plugin page in real headless Chromium at 1440 px and at 390 px (a phone): screenshots saved to
$STOWAWAY_SCREENSHOTS (or the test's tmp dir; the path is printed and recorded as a property), nothing
wider than the viewport at 390 px, every table cell labelled there; the dashboard's bars lead to their
findings; an XLSX export downloaded by the browser and a SARIF export checked against the view.

Needs Debian's chromium and chromium-driver and selenium (skipped without them), like
test_datasette_browser.py, whose `served` fixture (stowaway serve on the corpus or the demo images) this uses.
"""
from __future__ import annotations

import json
import os
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from test_datasette_browser import CHROMEDRIVER, CHROMIUM, chromium, served  # noqa: F401 (served is a fixture)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)),
                       reason="needs Debian's chromium and chromium-driver"),
]
selenium = pytest.importorskip("selenium")

WIDTHS = {"desktop": (1440, 1000, False), "phone": (390, 844, True)}

# elements wider than the viewport that are not inside something that clips or scrolls them
OVERFLOW_JS = """
const vw = document.documentElement.clientWidth, out = [];
function clipped(el) {
  for (let p = el.parentElement; p && p !== document.body; p = p.parentElement) {
    const o = getComputedStyle(p).overflowX;
    if (o !== 'visible') return true;
  }
  return false;
}
for (const el of document.body.querySelectorAll('*')) {
  const r = el.getBoundingClientRect();
  if (r.width === 0 || r.height === 0 || getComputedStyle(el).visibility === 'hidden') continue;
  if (r.right <= 0 || el.closest('details:not([open]) > :not(summary)')) continue;  // deliberately off screen, or closed
  if ((r.right > vw + 1 || (r.left < -1 && r.right > 0)) && !clipped(el)) {
    out.push(el.tagName + '.' + (el.className && el.className.baseVal === undefined ? el.className : '') +
             ' [' + Math.round(r.left) + '..' + Math.round(r.right) + '] ' + (el.textContent || '').trim().slice(0, 60));
  }
}
return {scrollWidth: document.documentElement.scrollWidth, viewport: vw, offenders: out.slice(0, 10)};
"""

# visible, non-empty table cells whose column has a name but that show no label
LABELS_JS = """
const out = []; let cells = 0;
for (const table of document.querySelectorAll('table.rows-and-columns')) {
  const heads = [...table.querySelectorAll('thead th')].map(th => th.textContent.trim());
  for (const tr of table.querySelectorAll('tbody tr')) {
    let i = 0;
    for (const td of tr.children) {
      const head = heads[i]; i += td.colSpan || 1;
      if (!head || !td.offsetParent || !td.textContent.trim()) continue;
      cells++;
      const before = getComputedStyle(td, '::before');
      const label = (before.content || '').replace(/^["']|["']$/g, '');
      if (!label || label === 'none' || before.display === 'none') out.push(head + ': ' + td.textContent.trim().slice(0, 40));
    }
  }
}
return {cells: cells, unlabelled: out.slice(0, 10)};
"""


@pytest.fixture
def shots(tmp_path, record_property) -> Path:
    where = Path(os.environ.get("STOWAWAY_SCREENSHOTS") or tmp_path / "screenshots")
    where.mkdir(parents=True, exist_ok=True)
    record_property("screenshots", str(where))
    print(f"screenshots: {where}")
    return where


@pytest.fixture
def chrome(tmp_path):
    driver = chromium(tmp_path, (1440, 1000), ("--hide-scrollbars",))
    yield driver
    driver.quit()


def emulate(driver, width: int, height: int, mobile: bool) -> None:
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile})


def page_list(base: str, repository: str, tag: str) -> dict[str, str]:
    pages = {
        "home": "/", "images": "/-/stowaway/images", "image-report": f"/-/stowaway/image/{repository}:{tag}",
        "vulnerability": "/-/stowaway/vulnerability/CVE-2021-44228", "dashboard": "/-/stowaway/dashboard",
        "settings": "/-/stowaway/settings",
    }
    try:  # the task pages, where this version has them: the list and the newest task
        tasks = json.load(urllib.request.urlopen(base + "/-/stowaway/tasks.json", timeout=30)).get("tasks") or []
        pages["tasks"] = "/-/stowaway/tasks"
        if tasks:
            pages["task"] = f"/-/stowaway/task/{tasks[0]['id']}"
    except (OSError, ValueError):
        pass
    return pages


def full_page(driver, path: Path, width: int, max_height: int = 8000) -> None:
    """The whole page (not only the viewport), cut at MAX_HEIGHT px."""
    import base64

    height = min(max_height, int(driver.execute_script("return document.documentElement.scrollHeight")))
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1}})
    path.write_bytes(base64.b64decode(shot["data"]))


def wait_ready(driver, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if driver.execute_script("return document.readyState") == "complete":
            break
        time.sleep(0.1)
    time.sleep(0.3)  # plotly draws after load


def test_every_page_at_desktop_and_phone_width(served, chrome, shots):
    base, (repository, tag) = served
    problems = []
    taken = []
    pages = page_list(base, repository, tag)
    database = json.load(urllib.request.urlopen(base + "/.json", timeout=30))
    name = next(iter(database))
    pages["vulnerabilities-table"] = f"/{name}/vulnerabilities_view?severity=critical"
    for label, (width, height, mobile) in WIDTHS.items():
        emulate(chrome, width, height, mobile)
        for page, path in pages.items():
            chrome.get(base + path)
            wait_ready(chrome)
            assert "Traceback" not in chrome.page_source, path
            shot = shots / f"{page}-{width}.png"
            full_page(chrome, shot, width)
            assert shot.stat().st_size > 5_000, shot
            taken.append(shot.name)
            if mobile:
                got = chrome.execute_script(OVERFLOW_JS)
                if got["scrollWidth"] > got["viewport"] + 1 or got["offenders"]:
                    problems.append(f"{path}: {got['scrollWidth']} px wide in {got['viewport']}: {got['offenders']}")
                cells = chrome.execute_script(LABELS_JS)
                if cells["unlabelled"]:
                    problems.append(f"{path}: unlabelled cells at 390 px: {cells['unlabelled']}")
                if page in ("images", "image-report", "vulnerability", "vulnerabilities-table"):
                    assert cells["cells"] > 0, f"{path}: no table cells to check"
    print(f"{len(taken)} screenshots in {shots}")
    assert not problems, "\n".join(problems)


def test_dashboard_bars_and_exports_in_the_browser(served, chrome, shots, tmp_path):
    from openpyxl import load_workbook
    from selenium.webdriver.common.by import By

    base, (repository, tag) = served
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    chrome.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    emulate(chrome, 1440, 1000, False)
    chrome.get(base + "/-/stowaway/dashboard")
    wait_ready(chrome)
    cards = {c.get_attribute("class").split()[1]: c for c in chrome.find_elements(By.CSS_SELECTOR, "li.sw-card")}
    critical = int(cards["sw-card-critical"].find_element(By.CSS_SELECTOR, ".sw-card-value").text.replace(",", ""))
    assert critical > 0

    # a click on the first critical bar segment of the per-image chart opens exactly the findings it counts
    clicked = chrome.execute_script("""
        const el = document.getElementById('plot-per-image');
        const trace = el.data.findIndex(t => t.name === 'critical');
        const point = el.data[trace].y.findIndex(y => y > 0);
        const y = el.data[trace].y[point], href = el.data[trace].customdata[point];
        el.emit('plotly_click', {points: [{curveNumber: trace, pointNumber: point, customdata: href}]});
        return [y, href];""")
    deadline = time.monotonic() + 30
    while "findings_report" not in chrome.current_url and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "findings_report" in chrome.current_url and "severity=critical" in chrome.current_url
    wait_ready(chrome)
    chrome.save_screenshot(str(shots / "dashboard-bar-clicked-1440.png"))
    rows = chrome.find_elements(By.CSS_SELECTOR, "table.rows-and-columns tbody tr")
    assert len(rows) == clicked[0]

    # "Export vulnerabilities" as XLSX, downloaded by the browser
    chrome.get(base + "/-/stowaway/dashboard")
    wait_ready(chrome)
    chrome.find_element(By.CSS_SELECTOR, ".sw-exports a[href*='vulnerabilities.xlsx']").click()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not [p for p in downloads.glob("*.xlsx")]:
        time.sleep(0.2)
    files = list(downloads.glob("*.xlsx"))
    assert [f.name for f in files] == ["stowaway-vulnerabilities.xlsx"]
    ws = load_workbook(files[0]).active
    assert ws.freeze_panes == "A2" and ws.auto_filter.ref and ws.auto_filter.ref.startswith("A1:")
    header = [c.value for c in ws[1]]
    severities = [r[header.index("severity")] for r in ws.iter_rows(min_row=2, values_only=True)
                  if r[header.index("suppressed")] in (0, "0")]
    assert severities.count("critical") == critical

    # SARIF of a filtered view: one result per failing, unsuppressed row the view shows
    database = next(iter(json.load(urllib.request.urlopen(base + "/.json", timeout=30))))
    view = f"/{database}/vulnerabilities_view?severity=critical&suppressed=0"
    chrome.get(base + view)
    wait_ready(chrome)
    sarif_href = next(a.get_attribute("href") for a in chrome.find_elements(By.CSS_SELECTOR, "a")
                      if (a.get_attribute("href") or "").split("?")[0].endswith(".sarif"))
    assert urllib.parse.urlsplit(sarif_href).query == "severity=critical&suppressed=0"
    shown = json.load(urllib.request.urlopen(base + view.replace("?", ".json?", 1) + "&_size=0", timeout=60))
    sarif = json.load(urllib.request.urlopen(sarif_href, timeout=60))
    assert len(sarif["runs"][0]["results"]) == shown["filtered_table_rows_count"] == critical
