"""Exports like the console (issue 17 item 5): one implementation with `stowaway export`, file names
from the image's name, formatted XLSX, SARIF and CycloneDX with every matching row (not a page's)."""
from __future__ import annotations

import asyncio
import io
import os
import subprocess
import sys

import pytest
from plugin_fixtures import add_findings, datasette_for, db_name, demo_db, vuln_finding  # noqa: F401

from stowaway.datasette_plugin import renderers
from stowaway.ingest.model import Package


def run(coro):
    return asyncio.run(coro)


@pytest.fixture
def big_db(demo_db):
    """demo/app:1.0 with 150 more vulnerable packages than a table page holds (its page size is 100)."""
    from stowaway.ingest.db import connect

    database = connect(demo_db)
    packages = [Package("deb", f"libbulk{n}", "1.0", "/var/lib/dpkg/status", layer_index=0,
                        purl=f"pkg:deb/debian/libbulk{n}@1.0") for n in range(150)]
    add_findings(database, "demo/app:1.0", packages,
                 [vuln_finding(f"CVE-2020-{1000 + n}", ("high", "medium", "low")[n % 3], None, "", p)
                  for n, p in enumerate(packages)])
    database.conn.close()
    return demo_db


def stowaway_cli(*args) -> bytes:
    exe = os.path.join(os.path.dirname(sys.executable), "stowaway")
    return subprocess.run([exe, *args], check=True, capture_output=True, timeout=120).stdout


@pytest.mark.parametrize("cli_args,url_args", [
    ([], ""),
    (["--image", "demo/app:1.0"], "?image=demo/app:1.0"),
    (["--repository", "demo/app"], "?repository=demo/app"),
    (["--latest-only"], "?latest=1"),
])
@pytest.mark.parametrize("report", ["vulnerabilities", "baseline"])
def test_the_plugin_and_the_cli_export_the_same_bytes(demo_db, report, cli_args, url_args):
    ds = datasette_for(demo_db)
    got = run(ds.client.get(f"/-/stowaway/export/{report}.csv{url_args}"))
    assert got.status_code == 200
    assert got.content == stowaway_cli("export", report, "--db", demo_db, "--format", "csv", *cli_args)
    assert got.content.count(b"\n") > 1


def test_file_names_come_from_the_image_name(demo_db):
    ds = datasette_for(demo_db)

    async def go():
        out = {}
        for path in ("/-/stowaway/export/vulnerabilities.xlsx?image=2", "/-/stowaway/export/baseline.csv?image=demo/app:2.0",
                     "/-/stowaway/export/vulnerabilities.csv?image_id=2&severity=critical",
                     "/-/stowaway/export/vulnerabilities.xlsx?repository=demo/app",
                     "/-/stowaway/export/vulnerabilities.xlsx"):
            r = await ds.client.get(path)
            assert r.status_code == 200, (path, r.text[:200])
            out[path] = r.headers["content-disposition"]
        return out

    got = run(go())
    assert list(got.values()) == [
        'attachment; filename="stowaway-vulnerabilities-demo_app_1.0.xlsx"',
        'attachment; filename="stowaway-baseline-demo_app_2.0.csv"',
        'attachment; filename="stowaway-vulnerabilities-demo_app_1.0.csv"',
        'attachment; filename="stowaway-vulnerabilities-demo_app.xlsx"',
        'attachment; filename="stowaway-vulnerabilities.xlsx"',
    ]


def test_xlsx_has_a_frozen_header_an_autofilter_and_widths(big_db):
    from openpyxl import load_workbook

    ds = datasette_for(big_db)
    got = run(ds.client.get("/-/stowaway/export/vulnerabilities.xlsx?image=demo/app:1.0"))
    ws = load_workbook(io.BytesIO(got.content)).active
    rows = list(ws.iter_rows(values_only=True))
    assert len(rows) == 1 + 8 + 150
    assert ws.freeze_panes == "A2"
    assert ws.auto_filter.ref == f"A1:{ws.cell(1, len(rows[0])).column_letter}{len(rows)}"
    assert ws.cell(1, 1).font.bold
    widths = {rows[0][i]: ws.column_dimensions[ws.cell(1, i + 1).column_letter].width for i in range(len(rows[0]))}
    assert widths["image"] > widths["severity"] and widths["layer_created_by"] >= 40


def test_sarif_holds_every_failing_row_of_the_filter_not_a_page(big_db):
    import json

    ds = datasette_for(big_db)
    name = db_name(big_db)

    async def go():
        out = {}
        for path in (f"/{name}/vulnerabilities_view.sarif?image_id=2", f"/{name}/vulnerabilities_view.json?image_id=2&suppressed=0&_size=0",
                     f"/{name}/vulnerabilities_view.sarif?image_id=2&severity=medium",
                     f"/{name}/vulnerabilities_view.json?image_id=2&severity=medium&suppressed=0&_size=0",
                     f"/{name}/unsafe_settings_view.sarif?image_id=2",
                     f"/{name}/unsafe_settings_view.json?image_id=2&_size=max&_shape=objects"):
            r = await ds.client.get(path)
            assert r.status_code == 200, (path, r.text[:300])
            out[path] = r.json() if path.endswith("json") or ".json?" in path else json.loads(r.text)
        return out

    got = run(go())
    results = got[f"/{name}/vulnerabilities_view.sarif?image_id=2"]["runs"][0]["results"]
    assert len(results) == got[f"/{name}/vulnerabilities_view.json?image_id=2&suppressed=0&_size=0"]["filtered_table_rows_count"] > 150
    medium = got[f"/{name}/vulnerabilities_view.sarif?image_id=2&severity=medium"]["runs"][0]["results"]
    assert len(medium) == got[f"/{name}/vulnerabilities_view.json?image_id=2&severity=medium&suppressed=0&_size=0"][
        "filtered_table_rows_count"] == 51
    # the check results page holds pass and not-applicable rows too: they never become SARIF results
    checks = got[f"/{name}/unsafe_settings_view.json?image_id=2&_size=max&_shape=objects"]["rows"]
    failing = {r["id"] for r in checks if r["result"] not in ("pass", "not_applicable") and not r["suppressed"]}
    assert any(r["result"] == "pass" for r in checks)
    ran = got[f"/{name}/unsafe_settings_view.sarif?image_id=2"]["runs"][0]["results"]
    assert sorted(r["properties"]["finding_id"] for r in ran) == sorted(failing)


def test_cyclonedx_holds_every_package_of_the_filter(big_db, monkeypatch):
    import json

    ds = datasette_for(big_db)
    name = db_name(big_db)
    total = run(ds.client.get(f"/{name}/packages_view.json?image_id=2&_size=0")).json()["filtered_table_rows_count"]
    assert total > 150
    bom = json.loads(run(ds.client.get(f"/{name}/packages_view.cyclonedx?image_id=2")).text)
    assert len(bom["components"]) == total
    assert len(bom["vulnerabilities"]) >= 150

    # the cap is paid before the rows are read, and named in the output
    monkeypatch.setattr(renderers, "MAX_EXPORT_ROWS", 50)
    cut = json.loads(run(ds.client.get(f"/{name}/packages_view.cyclonedx?image_id=2")).text)
    assert len(cut["components"]) == 50
    assert "only the first 50" in cut["metadata"]["properties"][0]["value"]
    sarif = json.loads(run(ds.client.get(f"/{name}/vulnerabilities_view.sarif?image_id=2")).text)
    assert len(sarif["runs"][0]["results"]) <= 50
    note = sarif["runs"][0]["invocations"][0]["toolExecutionNotifications"][0]["message"]["text"]
    assert "only the first 50" in note


def test_table_actions_offer_sarif_and_the_exports(demo_db):
    ds = datasette_for(demo_db)
    name = db_name(demo_db)
    page = run(ds.client.get(f"/{name}/vulnerabilities_view?severity=critical")).text
    assert "/-/stowaway/export/vulnerabilities.xlsx?severity=critical" in page
    assert f"/{name}/vulnerabilities_view.sarif?severity=critical" in page
    packages = run(ds.client.get(f"/{name}/packages_view?image_id=2")).text
    assert f"/{name}/packages_view.cyclonedx?image_id=2" in packages


def test_an_export_of_many_images_is_streamed_a_batch_of_images_at_a_time(demo_db, monkeypatch):
    """With one image per batch, every image's rows are read by a query of their own and sent as they
    come, and the file is still byte for byte the command line's (the same order across batches)."""
    from stowaway.datasette_plugin import exports

    monkeypatch.setattr(exports, "STREAM_IMAGES", 1)
    batches = []
    real = exports.fetch_batch

    async def counted(db, report, where, params, ids, *rest):
        batches.append(list(ids))
        return await real(db, report, where, params, ids, *rest)

    monkeypatch.setattr(exports, "fetch_batch", counted)
    ds = datasette_for(demo_db)
    for report in ("vulnerabilities", "baseline"):
        batches.clear()
        got = run(ds.client.get(f"/-/stowaway/export/{report}.csv"))
        assert got.status_code == 200
        assert got.content == stowaway_cli("export", report, "--db", demo_db, "--format", "csv")
        assert len(batches) >= 2 and all(len(b) == 1 for b in batches)
    bad = run(ds.client.get("/-/stowaway/export/vulnerabilities.csv?no_such_column=1"))
    assert bad.status_code == 400 and "no_such_column" in bad.text  # refused before any row is sent


def test_a_spreadsheet_of_more_rows_than_the_cap_says_how_many_it_left_out(big_db, monkeypatch):
    from openpyxl import load_workbook

    from stowaway.datasette_plugin import exports

    monkeypatch.setattr(exports, "MAX_XLSX_ROWS", 5)
    monkeypatch.setattr(exports, "STREAM_IMAGES", 1)
    ds = datasette_for(big_db)
    whole = run(ds.client.get("/-/stowaway/export/vulnerabilities.csv")).content.count(b"\n") - 1
    got = run(ds.client.get("/-/stowaway/export/vulnerabilities.xlsx"))
    assert got.status_code == 200 and whole > 5
    rows = list(load_workbook(io.BytesIO(got.content)).active.iter_rows(values_only=True))
    assert len(rows) == 1 + 5 + 1
    assert rows[-1][0] == "only the first 5 rows are in this spreadsheet, the export holds more: narrow it (an image," \
                          " a repository, a table's filters) or download it as CSV, which holds every row"
    assert got.headers["x-stowaway-truncated"] == "the first 5 rows"
    monkeypatch.setattr(exports, "MAX_XLSX_ROWS", whole)
    every = run(ds.client.get("/-/stowaway/export/vulnerabilities.xlsx"))
    assert "x-stowaway-truncated" not in every.headers
    assert len(list(load_workbook(io.BytesIO(every.content)).active.iter_rows(values_only=True))) == 1 + whole


def test_sarif_and_cyclonedx_read_the_whole_selection_without_the_page_time_limit(big_db, monkeypatch):
    """A table's whole selection (up to 200,000 rows) is read past Datasette's per-query time limit,
    which interrupted it at 10,000 images (a 500): here a limit every query would overrun."""
    from datasette.database import Database, QueryInterrupted

    real = Database.execute

    async def every_query_too_slow(self, sql, *args, **kwargs):
        if "json_each(:ids)" in sql:  # the renderers' reads of the selection
            raise QueryInterrupted(None, sql, None)
        return await real(self, sql, *args, **kwargs)

    monkeypatch.setattr(Database, "execute", every_query_too_slow)
    ds = datasette_for(big_db)
    name = db_name(big_db)
    sarif = run(ds.client.get(f"/{name}/vulnerabilities_view.sarif?image_id=2"))
    bom = run(ds.client.get(f"/{name}/packages_view.cyclonedx?image_id=2"))
    assert sarif.status_code == 200 and len(sarif.json()["runs"][0]["results"]) > 150
    assert bom.status_code == 200 and len(bom.json()["components"]) > 150
