"""The plugin through datasette.client: pages, facets, exports, renderers, and masking."""
from __future__ import annotations

import asyncio
import csv
import io
import json
import re
import urllib.parse

from conftest import corpus
from plugin_fixtures import (
    LOG4J,
    MASKED_SECRET,
    OPENSSL,
    RAW_ENV_SECRET,
    VULNS_V1,
    add_findings,
    corpus_db_path,  # noqa: F401 (a fixture)
    datasette_for,
    db_name,
    demo_db,  # noqa: F401 (a fixture)
    vuln_finding,
)

from stowaway.datasette_plugin import schema
from stowaway.datasette_plugin.report_page import TAB_KEYS
from stowaway.ingest.model import SEVERITIES


def run(coro):
    return asyncio.run(coro)


async def get_all(ds, paths):
    out = {}
    for path in paths:
        out[path] = await ds.client.get(path)
    return out


def pages_for(name, image_id, ref="demo/app:1.0"):
    tables = [f"/{name}/{t}" for t in list(schema.SELECTS) + ["findings_view", "findings", "images", "scans"]]
    tables += [f"/{name}/vulnerabilities_view?_facet_layer=layer_index", f"/{name}/findings_view?_facet_kind=kind"]
    return tables + [
        "/-/stowaway", "/-/stowaway/images", "/-/stowaway/images?latest=1", "/-/stowaway/images?sort=size&q=demo",
        f"/-/stowaway/image/{image_id}", f"/-/stowaway/image/{ref}",
        *[f"/-/stowaway/image/{image_id}?tab={tab}" for tab in TAB_KEYS],
        f"/-/stowaway/image/{image_id}?tab=vulnerabilities&severity=critical&fix=yes&page=1",
        "/-/stowaway/vulnerability/CVE-2021-44228", "/-/stowaway/vulnerability/GHSA-jfh8-c2jp-5v3q",
        "/-/stowaway/dashboard", "/-/stowaway/settings", "/-/stowaway/plotly.min.js",
        "/-/stowaway/export/vulnerabilities.csv", "/-/stowaway/export/baseline.xlsx",
        f"/{name}/findings_report.sarif?image_id={image_id}&_size=max",
        f"/{name}/packages_view.cyclonedx?image_id={image_id}&_size=max",
        f"/-/stowaway/image/{image_id}/sbom.cyclonedx.json", f"/-/stowaway/image/{image_id}/sbom.spdx.json",
    ]


def test_every_page_answers_200(demo_db):
    ds = datasette_for(demo_db)
    name = db_name(demo_db)

    async def go():
        image_id = (await ds.get_database(name).execute("SELECT id FROM images WHERE reference = 'demo/app:1.0'")).first()[0]
        return image_id, await get_all(ds, pages_for(name, image_id))

    image_id, got = run(go())
    bad = {p: r.status_code for p, r in got.items() if r.status_code not in (200, 302)}
    assert not bad
    assert got["/-/stowaway"].status_code == 302
    report = got[f"/-/stowaway/image/{image_id}"].text
    tab = {key: got[f"/-/stowaway/image/{image_id}?tab={key}"].text for key in TAB_KEYS}
    # one tab's content per request: the default is basic information, and each tab holds only its own
    for key in TAB_KEYS:
        assert f'<section id="{key}" class="sw-section sw-tabpanel"' in tab[key]
        assert [k for k in TAB_KEYS if f'<section id="{k}" class="sw-section sw-tabpanel"' in tab[key]] == [key]
    assert 'id="basic" class="sw-section sw-tabpanel"' in report
    assert "CVE-2021-44228" in tab["vulnerabilities"] and "CVE-2021-44228" not in tab["settings"]
    assert "EICAR_Test_File" in tab["malicious"] and "Set PermitRootLogin no." in tab["settings"]
    assert MASKED_SECRET in tab["secrets"] and "not approved" in tab["base-image"] and "nmap" in tab["compliance"]
    # each tab links into its faceted table, narrowed to this image
    assert f"/{name}/vulnerabilities_view?image_id={image_id}" in tab["vulnerabilities"]
    assert f"/{name}/unsafe_settings_view?image_id={image_id}" in tab["settings"]
    assert got["/-/stowaway/image/demo/app:1.0"].text == report
    sbom = json.loads(got[f"/-/stowaway/image/{image_id}/sbom.cyclonedx.json"].text)
    assert LOG4J.purl in {c.get("purl") for c in sbom["components"]}
    spdx = json.loads(got[f"/-/stowaway/image/{image_id}/sbom.spdx.json"].text)
    assert spdx["spdxVersion"] == "SPDX-2.3" and any(p["name"] == LOG4J.name for p in spdx["packages"])
    vuln = got["/-/stowaway/vulnerability/CVE-2021-44228"].text
    assert "GHSA-jfh8-c2jp-5v3q" in vuln and "CVSS:3.1/AV:N" in vuln and "2021-12-10" in vuln
    assert "demo/app:1.0" in vuln and "demo/app:2.0" in vuln and "Upgrade org.apache.logging.log4j:log4j-core" in vuln
    assert "CVE-2021-44228" in got["/-/stowaway/vulnerability/GHSA-jfh8-c2jp-5v3q"].text
    dashboard = got["/-/stowaway/dashboard"].text
    assert "/-/stowaway/plotly.min.js" in dashboard and "cdn" not in dashboard.lower()
    assert dashboard.count("Plotly.newPlot") == 3
    assert got["/-/stowaway/plotly.min.js"].text.startswith("/**") or "plotly" in got["/-/stowaway/plotly.min.js"].text[:500]


def test_raw_env_values_never_reach_a_page(demo_db):
    ds = datasette_for(demo_db)
    name = db_name(demo_db)
    got = run(get_all(ds, pages_for(name, 2) + [f"/{name}/images", f"/{name}/image_layers", f"/{name}/images/2"]))
    leaks = [p for p, r in got.items() if RAW_ENV_SECRET in r.text]
    assert not leaks
    assert "DB_PASSWORD=••••••" in got["/-/stowaway/image/2"].text
    assert "APP_HOME=/opt/app" in got["/-/stowaway/image/2"].text  # harmless values stay readable


def test_images_list_pages(demo_db):
    ds = datasette_for(demo_db, metadata={"plugins": {"stowaway": {"images_page_size": 2}}})
    first, second = run(get_all(ds, ["/-/stowaway/images?sort=reference", "/-/stowaway/images?sort=reference&page=2"])).values()
    assert first.text.count('class="sw-image-row"') == 2 and "Page 1 of 2" in first.text
    assert second.text.count('class="sw-image-row"') == 1 and "other/tool" in second.text


def test_images_list_counts_and_latest_versions(demo_db):
    ds = datasette_for(demo_db)
    got = run(get_all(ds, ["/-/stowaway/images", "/-/stowaway/images?latest=1"]))
    rows = got["/-/stowaway/images"].text.split('class="sw-image-row"')[1:]
    assert len(rows) == 3
    first = rows[0]  # sorted worst first: demo/app:1.0 has the critical and the high
    assert "demo/app" in first and "<td>1.0</td>" in first
    # (the counts are links to the findings behind them)
    assert re.search(r'class="sw-count sw-sev sw-sev-critical" href="[^"]+severity=critical[^"]*">1</a>', first)
    assert re.search(r'class="sw-count sw-sev sw-sev-high" href="[^"]+severity=high[^"]*">1</a>', first)
    latest = got["/-/stowaway/images?latest=1"].text
    # demo/app:2.0 is newer by created time although scanned first (lower id)
    assert "<td>2.0</td>" in latest and "<td>1.0</td>" not in latest and "other/tool" in latest


def facet(ds, path):
    r = run(ds.client.get(path + ("&" if "?" in path else "?") + "_extra=facet_results"))
    assert r.status_code == 200, r.text[:300]
    results = r.json()["facet_results"]
    # Datasette 1.0 nests them under "results" (with "timed_out"); 0.65 returns them directly
    return results["results"] if "timed_out" in results else results


def test_severity_facet_is_in_severity_order(demo_db):
    ds = datasette_for(demo_db)
    name = db_name(demo_db)
    for path in (f"/{name}/vulnerabilities_view.json", f"/{name}/findings.json?_facet_severity=severity",
                 f"/{name}/findings_report.json"):
        results = facet(ds, path)["severity"]["results"]
        values = [r["value"] for r in results]
        assert values == [s for s in SEVERITIES if s in values]
        assert len(values) == 6
    vulns = facet(ds, f"/{name}/vulnerabilities_view.json")["severity"]["results"]
    assert [(r["value"], r["count"]) for r in vulns][:4] == [("critical", 2), ("high", 1), ("medium", 1), ("low", 3)]
    # a selected value is a plain Datasette filter
    query = urllib.parse.urlsplit(vulns[0]["toggle_url"]).query
    selected = run(ds.client.get(f"/{name}/vulnerabilities_view.json?{query}&_shape=array")).json()
    assert len(selected) == 2 and {r["severity"] for r in selected} == {"critical"}


def test_cvss_fix_layer_and_kind_facets(demo_db):
    ds = datasette_for(demo_db)
    name = db_name(demo_db)
    results = facet(ds, f"/{name}/vulnerabilities_view.json?_facet_layer=layer_index")
    cvss = {r["label"]: r["count"] for r in results["cvss_score"]["results"]}
    assert cvss == {"critical (9.0-10.0)": 2, "high (7.0-8.9)": 1, "medium (4.0-6.9)": 1, "low (0.1-3.9)": 3,
                    "not scored": 2}
    fix = {r["label"]: r["count"] for r in results["fixed_version"]["results"]}
    assert fix == {"fix available": 4, "no fix yet": 5}
    layer = results["layer_index"]["results"]
    assert layer[0]["label"].startswith("layer 1: COPY dir:app in /opt/app/")
    # following the high CVSS bucket's link selects exactly the 7.0-8.9 rows
    high = next(r for r in results["cvss_score"]["results"] if r["label"].startswith("high"))
    query = urllib.parse.urlsplit(high["toggle_url"]).query
    rows = run(ds.client.get(f"/{name}/vulnerabilities_view.json?{query}&_shape=array")).json()
    assert [r["vulnerability_id"] for r in rows] == ["CVE-2022-0001"]
    nofix = next(r for r in results["fixed_version"]["results"] if r["value"] == "no")
    rows = run(ds.client.get(f"/{name}/vulnerabilities_view.json?{urllib.parse.urlsplit(nofix['toggle_url']).query}"
                             "&_shape=array")).json()
    assert len(rows) == 5 and all(not r["fixed_version"] for r in rows)
    kinds = facet(ds, f"/{name}/findings_report.json")["kind"]["results"]
    assert [r["value"] for r in kinds] == ["vulnerability", "malware", "secret", "unsafe_setting", "compliance",
                                           "base_image"][:len(kinds)]
    assert kinds[0]["label"] == "Vulnerabilities"
    # the findings table has no command column: the layer facet joins image_layers for it
    layer = facet(ds, f"/{name}/findings.json?_facet_layer=layer_index")["layer_index"]["results"]
    assert any("COPY dir:app" in r["label"] for r in layer)
    assert not any(RAW_ENV_SECRET in r["label"] for r in layer)


def test_exports_parse_and_hold_the_rows(demo_db):
    from openpyxl import load_workbook

    ds = datasette_for(demo_db)
    got = run(get_all(ds, ["/-/stowaway/export/vulnerabilities.csv", "/-/stowaway/export/vulnerabilities.csv?image=demo/app:2.0",
                           "/-/stowaway/export/vulnerabilities.xlsx?severity=critical",
                           "/-/stowaway/export/vulnerabilities.xlsx?cvss_score__gte=5&fixed_version__notblank=1",
                           "/-/stowaway/export/baseline.csv?image=demo/app:1.0", "/-/stowaway/export/baseline.xlsx",
                           "/-/stowaway/export/vulnerabilities.csv?no_such_column=1"]))
    every = list(csv.DictReader(io.StringIO(got["/-/stowaway/export/vulnerabilities.csv"].text)))
    assert len(every) == len(VULNS_V1) + 1
    assert {r["image"] for r in every} == {"demo/app:1.0", "demo/app:2.0"}
    assert [r["severity"] for r in every if r["image"] == "demo/app:1.0"] == \
        ["critical", "high", "medium", "low", "low", "low", "negligible", "unknown"]
    one = list(csv.DictReader(io.StringIO(got["/-/stowaway/export/vulnerabilities.csv?image=demo/app:2.0"].text)))
    assert [(r["image"], r["vulnerability_id"], r["fixed_version"]) for r in one] == [("demo/app:2.0", "CVE-2021-44228", "2.15.0")]

    def sheet(path):
        wb = load_workbook(io.BytesIO(got[path].content), read_only=True)
        rows = list(wb.active.iter_rows(values_only=True))
        return [dict(zip(rows[0], r)) for r in rows[1:]]

    critical = sheet("/-/stowaway/export/vulnerabilities.xlsx?severity=critical")
    assert sorted(r["image"] for r in critical) == ["demo/app:1.0", "demo/app:2.0"]
    assert all(r["cvss_score"] == 10.0 and r["package"] == LOG4J.name for r in critical)
    filtered = sheet("/-/stowaway/export/vulnerabilities.xlsx?cvss_score__gte=5&fixed_version__notblank=1")
    assert sorted(r["vulnerability_id"] for r in filtered) == ["CVE-2021-44228", "CVE-2021-44228", "CVE-2023-0002"]
    baseline = list(csv.DictReader(io.StringIO(got["/-/stowaway/export/baseline.csv?image=demo/app:1.0"].text)))
    mine = [r for r in baseline if r["check_id"] in ("ssh.permit_root_login", "password_policy.max_days")]
    assert [(r["check_id"], r["result"]) for r in mine] == [("ssh.permit_root_login", "fail"),
                                                            ("password_policy.max_days", "pass")]
    assert baseline[0]["result"] == "fail"  # failures first, whatever the settings analyzers added
    assert mine[0]["suggestion"] == "Set PermitRootLogin no."
    xlsx = {r["check_id"]: r for r in sheet("/-/stowaway/export/baseline.xlsx")}
    assert xlsx["ssh.permit_root_login"]["description"] == "Root can log in over SSH."
    assert got["/-/stowaway/export/vulnerabilities.csv?no_such_column=1"].status_code == 400


def test_table_action_exports_the_filtered_rows(demo_db):
    ds = datasette_for(demo_db)
    name = db_name(demo_db)
    page = run(ds.client.get(f"/{name}/vulnerabilities_view?severity=critical&_facet=image")).text
    assert "/-/stowaway/export/vulnerabilities.xlsx?severity=critical" in page
    assert "_facet" not in page.split("/-/stowaway/export/vulnerabilities.xlsx?")[1].split('"')[0]


def test_sarif_and_cyclonedx(demo_db):
    ds = datasette_for(demo_db)
    name = db_name(demo_db)
    got = run(get_all(ds, [f"/{name}/findings_view.sarif?image_id=2&_size=max",
                           f"/{name}/vulnerabilities_view.sarif?severity=critical",
                           f"/{name}/packages_view.cyclonedx?image_id=2&_size=max"]))
    image_id = run(ds.get_database(name).execute("SELECT id FROM images WHERE reference = 'demo/app:1.0'")).first()[0]
    assert image_id == 2
    sarif = json.loads(got[f"/{name}/findings_view.sarif?image_id=2&_size=max"].text)
    assert sarif["version"] == "2.1.0"
    results = sarif["runs"][0]["results"]
    by_rule = {r["ruleId"]: r for r in results}
    assert by_rule["CVE-2021-44228"]["level"] == "error"
    assert by_rule["CVE-2023-0002"]["level"] == "warning"
    assert "password_policy.max_days" not in by_rule  # a passed check is not a result
    assert by_rule["github-pat"]["message"]["text"].endswith(MASKED_SECRET)
    assert by_rule["ssh.permit_root_login"]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "etc/ssh/sshd_config"
    rules = {r["id"]: r for r in sarif["runs"][0]["tool"]["driver"]["rules"]}
    assert rules["CVE-2021-44228"]["properties"]["security-severity"] == "10.0"
    critical = json.loads(got[f"/{name}/vulnerabilities_view.sarif?severity=critical"].text)["runs"][0]["results"]
    assert len(critical) == 2 and {r["properties"]["image"] for r in critical} == {"demo/app:1.0", "demo/app:2.0"}

    bom = json.loads(got[f"/{name}/packages_view.cyclonedx?image_id=2&_size=max"].text)
    assert bom["bomFormat"] == "CycloneDX" and bom["metadata"]["component"]["name"] == "demo/app:1.0"
    purls = {c.get("purl") for c in bom["components"]}
    assert LOG4J.purl in purls and OPENSSL.purl in purls
    vulns = {v["id"]: v for v in bom["vulnerabilities"]}
    assert vulns["CVE-2021-44228"]["ratings"][0] == {"severity": "critical", "score": 10.0, "method": "CVSSv31",
                                                     "vector": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H"}
    log4j_ref = next(c["bom-ref"] for c in bom["components"] if c.get("purl") == LOG4J.purl)
    assert vulns["CVE-2021-44228"]["affects"] == [{"ref": log4j_ref}]
    try:
        from cyclonedx.schema import SchemaVersion
        from cyclonedx.validation.json import JsonStrictValidator
    except ImportError:
        return
    try:
        errors = JsonStrictValidator(SchemaVersion.V1_5).validate_str(got[f"/{name}/packages_view.cyclonedx?image_id=2&_size=max"].text)
    except Exception as exc:
        if type(exc).__name__ == "MissingOptionalDependencyException":  # no [json-validation] extra here
            return
        raise
    assert errors is None, errors


def test_an_immutable_database_is_served_and_nothing_is_written(demo_db):
    """The plugin creates no table and writes nothing: a database opened immutable serves every page
    (the read model came with ingest's migrations), and its file is byte for byte what it was."""
    import hashlib
    import sqlite3

    from datasette.app import Datasette

    with sqlite3.connect(demo_db) as conn:  # immutable=1 readers ignore the WAL
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    before = hashlib.sha256(open(demo_db, "rb").read()).hexdigest()
    ds = Datasette(immutables=[demo_db])
    name = db_name(demo_db)
    got = run(get_all(ds, ["/-/stowaway/images", "/-/stowaway/images.json", "/-/stowaway/image/2",
                           "/-/stowaway/image/2?tab=vulnerabilities", "/-/stowaway/vulnerability/CVE-2021-44228", "/-/stowaway/dashboard",
                           "/-/stowaway/export/vulnerabilities.csv", f"/{name}/findings_report",
                           f"/{name}/vulnerabilities_view.sarif?image_id=2"]))
    assert {p: r.status_code for p, r in got.items()} == {p: 200 for p in got}
    assert f"/{name}/vulnerabilities_view?image_id=2" in got["/-/stowaway/image/2?tab=vulnerabilities"].text
    assert len(list(csv.DictReader(io.StringIO(got["/-/stowaway/export/vulnerabilities.csv"].text)))) == 9
    assert hashlib.sha256(open(demo_db, "rb").read()).hexdigest() == before


def test_a_database_without_the_read_model_gets_one_clear_line(demo_db):
    """An older database opened read-only: no silent fallback to other SQL, one sentence instead."""
    import sqlite3

    from datasette.app import Datasette

    with sqlite3.connect(demo_db) as conn:
        conn.execute("DROP VIEW image_finding_counts")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    ds = Datasette(immutables=[demo_db])
    page = run(ds.client.get("/-/stowaway/images"))
    assert page.status_code == 503 and "older Stowaway" in page.text and "Traceback" not in page.text


def test_empty_sections_say_so(scan, tmp_path):
    from imagebuilder import ImageBuilder

    layout = tmp_path / "oci"
    ImageBuilder().layer({"etc/os-release": "ID=alpine\nVERSION_ID=3.19.0\n"}).write_oci_layout(layout, ref="bare:1")
    database, outcomes = scan(f"oci:{layout}", analyzer_names=["os-release"])
    database.conn.close()
    ds = datasette_for(str(tmp_path / "scan.db"))
    pages = run(get_all(ds, [f"/-/stowaway/image/bare:1?tab={tab}" for tab in TAB_KEYS]))
    empty = [tab for tab in TAB_KEYS if 'class="sw-empty"' in pages[f"/-/stowaway/image/bare:1?tab={tab}"].text]
    assert set(empty) >= {"vulnerabilities", "malicious", "settings", "secrets", "compliance", "base-image"}
    assert "Not checked: no approved base image" in pages["/-/stowaway/image/bare:1?tab=base-image"].text
    # ... and the summary strip says which items this scan did not check, and why
    strip = pages["/-/stowaway/image/bare:1?tab=basic"].text.split('id="sw-gaps"')[1].split("</details>")[0]
    assert "Malicious files</a>: not checked: the malware analyzer did not run in this scan" in strip
    assert "Base image</a>: not checked: the base-image analyzer did not run in this scan" in strip
    assert "Vulnerabilities</a>: not checked: the vulnerabilities analyzer did not run" in strip


@corpus
def test_corpus_pages(tmp_path_factory):
    """The public corpus, scanned by every installed analyzer, plus the hand-written findings."""
    path = corpus_db_path(tmp_path_factory)
    ds = datasette_for(path)
    name = db_name(path)
    image_id = run(ds.get_database(name).execute("SELECT id FROM images WHERE reference = 'corpus/shop:1.0'")).first()[0]
    got = run(get_all(ds, pages_for(name, image_id, "corpus/shop:1.0")))
    bad = {p: r.status_code for p, r in got.items() if r.status_code not in (200, 302)}
    assert not bad
    report = got["/-/stowaway/image/corpus/shop:1.0"].text
    assert "S3cr3tP4ss" not in report and "DB_PASSWORD=••••••" in report
    assert not [p for p, r in got.items() if "S3cr3tP4ss" in r.text]
    assert "CVE-2021-44228" in got[f"/-/stowaway/image/{image_id}?tab=vulnerabilities"].text
    assert "/opt/shop/data/access.log" in got[f"/-/stowaway/image/{image_id}?tab=files"].text
    results = facet(ds, f"/{name}/findings_report.json")["severity"]["results"]
    values = [r["value"] for r in results]
    assert values == [s for s in SEVERITIES if s in values] and "critical" in values
    # an imported advisory that no stored image has still gets its page; an unknown id does not
    unmatched = run(ds.get_database(name).execute(
        "SELECT id FROM advisories WHERE id NOT IN (SELECT vulnerability_id FROM vulnerability_details) LIMIT 1")).first()
    if unmatched:
        page = run(ds.client.get(f"/-/stowaway/vulnerability/{unmatched[0]}"))
        assert page.status_code == 200 and "No stored image is affected" in page.text
    assert run(ds.client.get("/-/stowaway/vulnerability/CVE-1999-99999")).status_code == 404


def test_report_tables_follow_the_database(demo_db):
    """What the findings store writes (a rematch, a scan's results) shows on the next request: the
    report tables are refreshed inside the writing transaction, not by the page."""
    from stowaway.analyzers.vulnerabilities.rematch import rematch
    from stowaway.ingest.db import connect

    ds = datasette_for(demo_db)
    name = db_name(demo_db)

    def vulns():
        rows = run(ds.client.get(f"/{name}/vulnerabilities_view.json?image=demo/app:1.0&_shape=array&_size=max")).json()
        return sorted(r["vulnerability_id"] for r in rows)

    assert "CVE-2021-44228" in vulns()
    database = connect(demo_db)
    # no advisory in the store matches anything: the rematch removes the image's vulnerability findings
    assert rematch(database, ["demo/app:1.0"]).deleted == len(VULNS_V1)
    assert vulns() == []
    assert '<td>1.0</td>' in run(ds.client.get("/-/stowaway/images?sort=vulnerabilities")).text.split(
        'class="sw-image-row"')[2]  # demo/app:1.0 is no longer the worst
    add_findings(database, "demo/app:1.0", [], [vuln_finding("CVE-2099-0001", "high", 8.1, "", OPENSSL)])
    database.conn.close()
    assert vulns() == ["CVE-2099-0001"]
    overview = run(ds.client.get(f"/{name}/image_overview.json?reference=demo/app:1.0&_shape=array")).json()[0]
    assert (overview["vulnerabilities"], overview["critical"], overview["high"]) == (1, 0, 1)


def test_pages_do_not_wait_for_a_scan_holding_the_lock(demo_db):
    """A scan holding the write lock: the page (which never writes) answers, with the new finding. A page
    that tried to write would wait out SQLite's busy timeout and then fail with 'database is locked' (a
    500), so the status and the content are the check; no wall-clock bound (the machine may be busy)."""
    import sqlite3

    from stowaway.ingest.db import connect

    ds = datasette_for(demo_db)
    run(ds.client.get("/-/stowaway/images"))
    database = connect(demo_db)
    add_findings(database, "demo/app:2.0", [], [vuln_finding("CVE-2099-0002", "critical", 9.9, "", OPENSSL)])
    database.conn.close()
    scan = sqlite3.connect(demo_db, isolation_level=None)
    scan.execute("BEGIN IMMEDIATE")
    try:
        page = run(ds.client.get("/-/stowaway/image/demo/app:2.0?tab=vulnerabilities"))
    finally:
        scan.execute("ROLLBACK")
        scan.close()
    assert page.status_code == 200 and "CVE-2099-0002" in page.text


def test_facets_are_suggested_where_their_columns_are(demo_db):
    ds = datasette_for(demo_db)
    name = db_name(demo_db)
    got = run(ds.client.get(f"/{name}/vulnerabilities_view.json?_extra=suggested_facets")).json()
    suggested = {(s["name"], s.get("type")) for s in got["suggested_facets"]}
    assert ("layer_index", "layer") in suggested  # not configured by default, so offered
    assert ("severity", "severity") not in suggested  # configured already
    kinds = run(ds.client.get(f"/{name}/findings.json?_extra=suggested_facets")).json()["suggested_facets"]
    assert ("kind", "kind") not in {(s["name"], s.get("type")) for s in kinds}  # the findings table configures it
    assert ("layer_index", "layer") in {(s["name"], s.get("type")) for s in kinds}


def test_two_databases_each_get_their_pages(demo_db, tmp_path):
    import shutil

    from datasette.app import Datasette

    other = str(tmp_path / "other.db")
    shutil.copy(demo_db, other)
    with __import__("sqlite3").connect(other) as conn:
        conn.execute("UPDATE images SET reference = 'elsewhere/app:9', repository = 'elsewhere/app' WHERE id = 3")
    ds = Datasette(files=[demo_db, other])
    first = run(ds.client.get("/-/stowaway/images")).text
    second = run(ds.client.get("/-/stowaway/images?db=other")).text
    assert "elsewhere/app" not in first and "elsewhere/app" in second
    assert "/-/stowaway/image/3?db=other" in second  # links keep the database
    assert run(ds.client.get("/-/stowaway/images?db=nope")).status_code == 404
