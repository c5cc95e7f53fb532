"""The image report in real headless Chromium, signed in as root: switch tabs (in place, by the page's
script), expand a vulnerability, suppress it with a reason, come back to the same row with the counts
changed; screenshots of every tab at 1440 px and at 390 px (a phone).

Needs Debian's chromium and chromium-driver and selenium; skipped without them. Screenshots go to
$STOWAWAY_SCREENSHOTS when set, else to the test's tmp dir; the test prints where.
"""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
from conftest import CORPUS
from plugin_fixtures import corpus_db_path, demo_db, serving  # noqa: F401 (demo_db is a fixture)
from test_datasette_browser import CHROMEDRIVER, CHROMIUM, chromium

from stowaway.datasette_plugin.report_page import TAB_KEYS

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)),
                       reason="needs Debian's chromium and chromium-driver"),
]
selenium = pytest.importorskip("selenium")

WIDE, PHONE = (1440, 1000), (390, 844)


@pytest.fixture
def served_as_root(request, tmp_path, tmp_path_factory):
    """`stowaway serve --root` on a copy of the corpus database (else of the demo images): the test
    writes a suppression. Yields the base URL, the image reference and the root sign-in link."""
    if (CORPUS / "expected.json").exists():
        source, ref = corpus_db_path(tmp_path_factory), "corpus/shop:1.0"
    else:
        source, ref = request.getfixturevalue("demo_db"), "demo/app:1.0"
    path = tmp_path / "report.db"
    shutil.copy(source, path)
    token = r"http://\S+/-/auth-token\?token=\w+"
    with serving(path, tmp_path / "serve.log", "--root", wait_for=token) as (base, output):
        yield base, ref, re.search(token, output)[0]  # type: ignore[index]


@pytest.fixture
def browser(tmp_path):
    driver = chromium(tmp_path, WIDE)
    yield driver
    driver.quit()
    shutil.rmtree(tmp_path / "chromium-profile", ignore_errors=True)


def screenshots_dir(tmp_path) -> Path:
    out = Path(os.environ.get("STOWAWAY_SCREENSHOTS") or tmp_path / "screenshots")
    out.mkdir(parents=True, exist_ok=True)
    return out


def viewport(driver, size) -> None:
    """The layout width a phone or a desktop gives the page (device metrics, not the window)."""
    width, height = size
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {"width": width, "height": height,
                                                                  "deviceScaleFactor": 1, "mobile": width < 500})


def strip_numbers(driver) -> dict:
    from selenium.webdriver.common.by import By

    cards = {e.get_attribute("data-kind"): int(e.get_attribute("data-failing"))
             for e in driver.find_elements(By.CSS_SELECTOR, ".sw-kind-count")}
    cards["suppressed"] = int(driver.find_element(By.ID, "sw-suppressed").get_attribute("data-suppressed"))
    return cards


def test_report_tabs_expand_suppress_and_screenshots(served_as_root, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    base, ref, sign_in = served_as_root
    shots = screenshots_dir(tmp_path)
    wait = WebDriverWait(browser, 30)
    browser.get(sign_in)  # sets the signed ds_actor cookie for root
    browser.get(f"{base}/-/stowaway/image/{ref}")
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "#sw-report[data-tab='basic']")))
    assert browser.find_element(By.TAG_NAME, "h1").text == ref
    before = strip_numbers(browser)
    assert before["vulnerability"] > 0

    # switching tabs: the page's script swaps the report in place (no reload) and the address follows
    browser.execute_script("window.swNoReload = 1")
    for tab in ("settings", "vulnerabilities"):
        browser.find_element(By.CSS_SELECTOR, f"a.sw-tab[data-tab='{tab}']").click()
        wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, f"#sw-report[data-tab='{tab}']")))
        assert browser.current_url.endswith(f"?tab={tab}")
        assert browser.find_element(By.CSS_SELECTOR, ".sw-tab-current").get_attribute("data-tab") == tab
        assert browser.find_elements(By.CSS_SELECTOR, f"section#{tab}.sw-tabpanel")
    assert browser.execute_script("return window.swNoReload") == 1
    assert "Unsafe settings" not in browser.find_element(By.CSS_SELECTOR, ".sw-tabpanel h2").text

    # expand a vulnerability low in the list: its details show, the summary row stays one line
    rows = browser.find_elements(By.CSS_SELECTOR, "details.sw-vuln")
    row = rows[-1]
    fid = row.get_attribute("id")
    vuln_id = row.find_element(By.CSS_SELECTOR, ".sw-f-id").text
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", row)
    row.find_element(By.TAG_NAME, "summary").click()
    wait.until(lambda d: d.find_element(By.ID, fid).get_attribute("open") is not None)
    body = row.find_element(By.CSS_SELECTOR, ".sw-finding-body")
    assert body.is_displayed()
    assert body.find_element(By.CSS_SELECTOR, "a.sw-vuln-link").get_attribute("href").endswith(
        f"/-/stowaway/vulnerability/{vuln_id}")
    assert "CVSS" in body.text and "Introduced by" in body.text and "References" in body.text
    browser.save_screenshot(str(shots / "report-vulnerability-expanded-1440.png"))

    # suppress it with a reason: the control opens inside the expanded row, which stays open
    row.find_element(By.CSS_SELECTOR, ".sw-suppress > summary").click()
    reason = wait.until(EC.visibility_of(row.find_element(By.CSS_SELECTOR, ".sw-suppress input[name='reason']")))
    assert browser.find_element(By.ID, fid).get_attribute("open") is not None
    reason.send_keys("fixed by the base image upgrade next sprint")
    row.find_element(By.CSS_SELECTOR, ".sw-suppress button[type='submit']").click()

    # back on the same tab, at the same row, with the counts changed
    wait.until(lambda d: d.current_url.endswith(f"?tab=vulnerabilities#{fid}"))
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "#sw-report[data-tab='vulnerabilities']")))
    again = browser.find_element(By.ID, fid)
    assert "fixed by the base image upgrade next sprint" in again.text
    top, bottom, height = browser.execute_script(
        "var r = arguments[0].getBoundingClientRect(); return [r.top, r.bottom, window.innerHeight]", again)
    assert 0 <= top and bottom <= height, (top, bottom, height)
    if len(rows) > 12:  # a long list: keeping the place meant scrolling down to it
        assert browser.execute_script("return window.scrollY") > 0
    after = strip_numbers(browser)
    assert after["vulnerability"] == before["vulnerability"] - 1
    assert after["suppressed"] == before["suppressed"] + 1
    browser.save_screenshot(str(shots / "report-after-suppress-1440.png"))

    # every tab at a desktop's width and at a phone's, each loaded as its own page (no script needed)
    taken = []
    for label, size in (("1440", WIDE), ("390", PHONE)):
        viewport(browser, size)
        for tab in TAB_KEYS:
            browser.get(f"{base}/-/stowaway/image/{ref}?tab={tab}")
            wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, f"#sw-report[data-tab='{tab}']")))
            assert browser.execute_script("return window.innerWidth") == size[0]
            width = browser.execute_script("return document.documentElement.clientWidth")  # less a scrollbar
            # the strip and the tab bar fit the width (the tab bar scrolls sideways inside itself)
            for selector in (".sw-strip", ".sw-tabs"):
                right = browser.execute_script(
                    "return document.querySelector(arguments[0]).getBoundingClientRect().right", selector)
                assert right <= width + 1, (tab, label, selector, right)
            target = shots / f"report-{tab}-{label}.png"
            browser.save_screenshot(str(target))
            taken.append(target)
    assert all(p.stat().st_size > 5_000 for p in taken)
    # a tab swapped in by the script at phone width still labels its table cells (stowaway.js)
    browser.get(f"{base}/-/stowaway/image/{ref}?tab=basic")
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "#sw-report[data-tab='basic']")))
    browser.find_element(By.CSS_SELECTOR, "a.sw-tab[data-tab='software']").click()
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "#sw-report[data-tab='software']")))
    cells = browser.find_elements(By.CSS_SELECTOR, "section#software table.sw-packages tbody td")
    assert cells and all(c.get_attribute("data-label") for c in cells[:12])
    print(f"\nscreenshots of the report ({len(taken) + 2}) in {shots}")
