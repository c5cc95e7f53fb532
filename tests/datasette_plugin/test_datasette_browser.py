"""The UI once in real headless Chromium: image list -> an image's report -> its vulnerabilities.

Needs Debian's chromium and chromium-driver (`apt-get install -y chromium chromium-driver`) and
selenium; skipped without them. Screenshots land in the test's tmp dir (kept by pytest as artifacts).
"""
from __future__ import annotations

import os
import shutil

import pytest
from conftest import CORPUS
from plugin_fixtures import corpus_db_path, demo_db, serving  # noqa: F401 (demo_db is a fixture)

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)),
                       reason="needs Debian's chromium and chromium-driver"),
]
selenium = pytest.importorskip("selenium")


@pytest.fixture
def served(request, tmp_path, tmp_path_factory):
    """`stowaway serve` on the corpus database when the corpus is present, else on the demo images."""
    if (CORPUS / "expected.json").exists():
        path, target = corpus_db_path(tmp_path_factory), ("corpus/shop", "1.0")
    else:
        path, target = request.getfixturevalue("demo_db"), ("demo/app", "1.0")
    with serving(path, tmp_path / "serve.log") as (base, _):
        yield base, target


def chromium(tmp_path, size=(1400, 1800), extra: tuple[str, ...] = ()):
    """A headless Chromium driven by chromedriver, with a profile under tmp_path: every browser test's."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                 f"--user-data-dir={tmp_path / 'chromium-profile'}", f"--window-size={size[0]},{size[1]}", *extra):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    return driver


@pytest.fixture
def browser(tmp_path):
    driver = chromium(tmp_path)
    yield driver
    driver.quit()
    shutil.rmtree(tmp_path / "chromium-profile", ignore_errors=True)


def test_image_list_to_vulnerabilities(served, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    base, (repository, tag) = served
    browser.get(base + "/-/stowaway/images")
    rows = browser.find_elements(By.CSS_SELECTOR, "tr.sw-image-row")
    row = next(r for r in rows if r.find_element(By.CSS_SELECTOR, "a.sw-image-link").text == repository
               and tag in [td.text for td in r.find_elements(By.TAG_NAME, "td")])
    browser.save_screenshot(str(tmp_path / "images.png"))
    row.find_element(By.CSS_SELECTOR, "a.sw-image-link").click()

    # the report opens on its basic information; the vulnerabilities are one tab away
    WebDriverWait(browser, 30).until(EC.visibility_of_element_located((By.ID, "basic")))
    assert browser.find_element(By.TAG_NAME, "h1").text == f"{repository}:{tag}"
    browser.find_element(By.CSS_SELECTOR, "a.sw-tab[data-tab='vulnerabilities']").click()
    section = WebDriverWait(browser, 30).until(EC.visibility_of_element_located((By.ID, "vulnerabilities")))
    assert section.find_element(By.TAG_NAME, "h2").text.startswith("Vulnerabilities")
    assert "CVE-2021-44228" in section.text and "critical" in section.text
    browser.execute_script("arguments[0].scrollIntoView()", section)
    browser.save_screenshot(str(tmp_path / "report.png"))
    assert (tmp_path / "report.png").stat().st_size > 10_000

    # the vulnerability's own page, one click away once its row is expanded
    row = next(d for d in section.find_elements(By.CSS_SELECTOR, "details.sw-vuln")
               if d.find_element(By.CSS_SELECTOR, ".sw-f-id").text == "CVE-2021-44228")
    row.find_element(By.TAG_NAME, "summary").click()
    row.find_element(By.LINK_TEXT, "CVE-2021-44228").click()
    WebDriverWait(browser, 30).until(EC.title_is("CVE-2021-44228"))
    assert "GHSA-jfh8-c2jp-5v3q" in browser.find_element(By.CSS_SELECTOR, ".sw-facts").text

    # the dashboard draws with the plotly.js the server bundles (there is no network to fetch one)
    browser.get(base + "/-/stowaway/dashboard")
    WebDriverWait(browser, 30).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".sw-plot .main-svg")) >= 2)
    browser.save_screenshot(str(tmp_path / "dashboard.png"))
