"""The facets answered from the read model's kept counts show exactly what counting the rows shows, for
the whole table and for one selected value, and count the rows for any other selection."""
from __future__ import annotations

import re
import shutil
import sqlite3
import urllib.parse

from plugin_fixtures import datasette_for, db_name, demo_db  # noqa: F401 (fixtures)
from test_datasette_pages import facet, run

from stowaway.ingest import readmodel

PAGES = [
    "vulnerabilities_view.json?_facet_layer=layer_index",
    "vulnerabilities_view.json?severity=critical&_facet_layer=layer_index",
    "vulnerabilities_view.json?severity=low",
    "vulnerabilities_view.json?fixed_version__notblank=1",
    "vulnerabilities_view.json?fixed_version__isblank=1",
    "vulnerabilities_view.json?fix_available=no",
    "vulnerabilities_view.json?severity__exact=high",
    # the dashboard's links: one value among the unsuppressed rows
    "vulnerabilities_view.json?fix_available=yes&suppressed=0",
    "vulnerabilities_view.json?severity=critical&suppressed=0",
    "vulnerabilities_view.json?suppressed=0&fixed_version__notblank=1",
    "findings_report.json?kind=vulnerability&suppressed=0",
    "findings_report.json?severity=high&suppressed=0",
    "findings_report.json?_facet_layer=layer_index",
    "findings_report.json?kind=secret",
    "findings_report.json?suppressed=0",
    "findings_report.json?suppressed=1",
    "findings_report.json?severity=medium",
    "packages_view.json?_facet_layer=layer_index",
    "packages_view.json?ecosystem=maven",
    "packages.json",
    "findings.json?_facet_severity=severity&_facet_kind=kind",
]
# selections the kept counts do not cover: counted from the rows
OTHER = [
    "vulnerabilities_view.json?severity=critical&fix_available=yes",
    "vulnerabilities_view.json?_where=cvss_score>8",
    "vulnerabilities_view.json?image=demo/app:1.0",
    "findings_report.json?suppressed=01",
    "findings_report.json?kind=vulnerability&suppressed=1",
    "vulnerabilities_view.json?severity=critical&suppressed=0&fix_available=yes",
    "findings_report.json?kind=secret&_sort=id&_next=1",
]


def _facets(ds, page: str) -> dict:
    return {name: [(r["value"], r["label"], r["count"], r["selected"], r["toggle_url"]) for r in got["results"]]
            for name, got in facet(ds, f"/{db_name(ds.files[0])}/{page}").items()}


def _copy(src: str, dst: str, sql: str) -> str:
    shutil.copy(src, dst)
    conn = sqlite3.connect(dst)
    with conn:
        conn.execute(sql)
    conn.close()
    return dst


def _suppress(db: str) -> str:
    """One vulnerability suppressed (through the findings store, which keeps the counts)."""
    from stowaway.ingest.findings import Suppression, add_suppression

    conn = sqlite3.connect(db)
    with conn:
        add_suppression(conn, Suppression(rule="CVE-2022-0001", reason="accepted"))
    conn.close()
    return db


def test_kept_counts_answer_as_counting_the_rows_does(demo_db, tmp_path):
    _suppress(demo_db)
    counted = tmp_path / "counted"
    counted.mkdir()
    # the same database without the kept counts: every facet counts its rows
    plain = _copy(demo_db, str(counted / db_name(demo_db)) + ".db", "DROP TABLE report_facet_counts")
    kept, rows = datasette_for(demo_db), datasette_for(plain)
    for page in PAGES + OTHER + [t + ".json" for t in readmodel.COUNTED_FACETS]:
        got, want = _facets(kept, page), _facets(rows, page)
        assert got == want, page
        assert any(results for results in got.values()), page


def test_the_kept_counts_are_what_the_facets_read(demo_db, tmp_path):
    """Counts put out of step on purpose show on the pages they answer, and not on the others (so the
    test above compares the kept counts, not the rows with themselves)."""
    skewed = tmp_path / "skewed"
    skewed.mkdir()
    _suppress(demo_db)
    path = _copy(demo_db, str(skewed / db_name(demo_db)) + ".db", "UPDATE report_facet_counts SET n = n + 1000")
    kept, honest = datasette_for(path), datasette_for(demo_db)
    for page in PAGES + [t + ".json" for t in readmodel.COUNTED_FACETS]:
        got = _facets(kept, page)
        assert all(n >= 1000 for results in got.values() for _v, _l, n, _s, _u in results), page
    for page in OTHER:
        assert _facets(kept, page) == _facets(honest, page), page


def test_a_vulnerability_page_lists_the_worst_and_counts_them_all(demo_db, monkeypatch):
    """CVE-2021-44228 is in both demo/app images: with one row shown, the page still counts two images and
    two findings, and says where all of them are."""
    from stowaway.datasette_plugin import queries

    ds = datasette_for(demo_db)
    whole = run(ds.client.get("/-/stowaway/vulnerability/CVE-2021-44228")).text
    assert "(2 images, 2 findings)" in whole and "are listed here" not in whole
    monkeypatch.setattr(queries, "AFFECTED_SHOWN", 1)
    page = run(ds.client.get("/-/stowaway/vulnerability/CVE-2021-44228")).text
    assert "(2 images, 2 findings)" in page and "The worst 1 are listed here" in page
    assert page.count('<td data-label="Image">') == 1 and whole.count('<td data-label="Image">') == 2


def _plan(db: str, sql: str, params: dict) -> str:
    conn = sqlite3.connect(db)
    try:
        return " / ".join(r[3] for r in conn.execute("EXPLAIN QUERY PLAN " + sql, params))
    finally:
        conn.close()


def test_the_fix_facet_selects_the_stored_column_and_its_pages_read_an_index(demo_db):
    """`fix available` selects fix_available=yes (the stored column, not Datasette's blank test on
    fixed_version), and the row count of that page and of the dashboard's links (one value among the
    unsuppressed rows) is read from the index made for them, without the table; their first rows come in
    index order, not sorted from every matching row."""
    ds = datasette_for(demo_db)
    name = db_name(demo_db)
    fix = _facets(ds, "vulnerabilities_view.json")["fixed_version"]
    assert {url.split("?", 1)[1].replace("_extra=facet_results&", "") for _v, _l, _n, _s, url in fix} == {
        "fix_available=yes", "fix_available=no"}
    for page in ("fix_available=yes", "fix_available=yes&suppressed=0", "severity=low&suppressed=0"):
        got = run(ds.client.get(f"/{name}/vulnerabilities_view.json?{page}"))
        assert got.status_code == 200, got.text[:300]
        sql, params = got.json()["query"]["sql"], got.json()["query"]["params"]
        count_sql = "select count(*) " + sql[sql.index(" from "):sql.index(" order by ")]
        column = page.split("=")[0]
        index = f"idx_vulnerabilities_view_{column}_{'open' if 'suppressed' in page else ''}"
        assert f"USING COVERING INDEX {index}" in _plan(demo_db, count_sql, params), count_sql
        plan = _plan(demo_db, sql, params)
        assert "USING INDEX" in plan and "TEMP B-TREE" not in plan, (sql, plan)


def test_an_images_row_page_and_the_findings_by_severity_read_an_index(demo_db):
    """The image's row page counts its packages by image (Datasette's links from other tables), and the
    findings table of one severity in its default order walks that severity's rows in order: indexes,
    not a pass over every package or a sort of every finding of the severity."""
    assert "USING COVERING INDEX idx_packages_image" in _plan(
        demo_db, "select count(*) from packages where image_id = :id", {"id": 1})
    plan = _plan(demo_db, "select rowid, * from findings where severity = :p0 order by severity_rank limit 101",
                 {"p0": "low"})
    assert "idx_findings_severity_order" in plan and "TEMP B-TREE" not in plan, plan


def test_the_plugin_gives_the_report_tables_statistics_at_startup(demo_db):
    """Nothing else runs ANALYZE: without statistics SQLite reads one image's fixable rows through the
    whole-table fix index (every fixable row of the database) instead of the image_id index. At startup
    the plugin analyzes the tables whose statistics are missing or whose row count moved, and only those."""
    from stowaway.datasette_plugin import freshness

    conn = sqlite3.connect(demo_db)
    with conn:
        conn.execute("DROP TABLE IF EXISTS sqlite_stat1")
    one_image = "SELECT COUNT(*) FROM vulnerabilities_view WHERE image_id = :i AND suppressed = 0 AND fix_available = :f"
    assert "idx_vulnerabilities_view_image_id" not in _plan(demo_db, one_image, {"i": 1, "f": "yes"})
    assert "vulnerabilities_view" in freshness.stale_tables(conn)
    conn.close()
    ds = datasette_for(demo_db)
    run(ds.invoke_startup())
    conn = sqlite3.connect(demo_db)
    analyzed = {r[0] for r in conn.execute("SELECT tbl FROM sqlite_stat1")}
    assert {"vulnerabilities_view", "findings_report", "findings"} <= analyzed
    assert freshness.stale_tables(conn) == []  # the next start analyzes nothing
    assert "idx_vulnerabilities_view_image_id" in _plan(demo_db, one_image, {"i": 1, "f": "yes"})
    with conn:  # a table that grew past the factor since is analyzed again
        conn.execute("UPDATE sqlite_stat1 SET stat = '1 1' WHERE tbl = 'vulnerabilities_view'")
    assert freshness.stale_tables(conn) == ["vulnerabilities_view"]
    conn.close()


def _links(ds, page: str, column: str) -> list[str]:
    """The table pages the facet on COLUMN of PAGE links to (what clicking one of its values selects)."""
    out = []
    for _v, _l, _n, selected, url in _facets(ds, page)[column]:
        assert not selected
        table, query = page.split(".json")[0], urllib.parse.urlsplit(url).query
        query = "&".join(p for p in query.split("&") if not p.startswith("_extra="))
        out.append(f"{table}.json?{query}")
    return out


def test_one_layer_and_one_cvss_bucket_are_answered_from_the_kept_counts(demo_db, tmp_path):
    """The layer facet's links (one layer's rows: position and command) and the CVSS facet's (one bucket: its
    range filters) are counted per facet too: their facets show what counting the rows shows, and what the
    kept counts hold (skewed on purpose, they show); a layer's rows come in index order."""
    _suppress(demo_db)
    ds = datasette_for(demo_db)
    pages = [link for table in ("vulnerabilities_view", "findings_report", "packages_view")
             for link in _links(ds, f"{table}.json?_facet_layer=layer_index", "layer_index")]
    pages += _links(ds, "vulnerabilities_view.json", "cvss_score")
    assert len(pages) >= 8 and any("layer_created_by=" in p for p in pages) and any("cvss_score__lt=" in p for p in pages)
    counted, skewed = tmp_path / "counted", tmp_path / "skewed"
    counted.mkdir()
    skewed.mkdir()
    plain = datasette_for(_copy(demo_db, str(counted / db_name(demo_db)) + ".db", "DROP TABLE report_facet_counts"))
    off = datasette_for(_copy(demo_db, str(skewed / db_name(demo_db)) + ".db",
                              "UPDATE report_facet_counts SET n = n + 1000 WHERE filter IN ('layer', 'cvss')"))
    for page in pages:
        got = _facets(ds, page)
        assert got == _facets(plain, page), page
        assert any(results for results in got.values()), page
        assert all(n >= 1000 for results in _facets(off, page).values() for _v, _l, n, _s, _u in results), page
    # a layer's value without its command, a bucket with one of its two bounds: counted from the rows
    layer = next(p for p in pages if "layer_created_by=" in p)
    for page in (re.sub(r"&?layer_created_by=[^&]*", "", layer), "vulnerabilities_view.json?cvss_score__gt=0"):
        assert _facets(off, page) == _facets(ds, page), page
    # (a bucket's rows: a skip-scan of the rank and score index, which SQLite takes with a registry's
    # statistics, not a demo's nine rows: measured by tests/bench/bench_datasette_pages.py)
    got = run(ds.client.get(f"/{db_name(demo_db)}/{layer}"))
    plan = _plan(demo_db, got.json()["query"]["sql"], got.json()["query"]["params"])
    assert "USING INDEX idx_vulnerabilities_view_layer_order" in plan and "TEMP B-TREE" not in plan, plan


def test_a_base_tables_one_value_reads_that_columns_facet_from_the_whole_tables_counts(demo_db, tmp_path):
    """`findings?kind=vulnerability`: the kind facet over those rows is the kept whole-table count of that
    kind (a GROUP BY over most of a million rows before); the other facets still count the rows."""
    ds = datasette_for(demo_db)
    ecosystem = _facets(ds, "packages.json")["ecosystem"][0][0]
    pages = {"findings.json?kind=vulnerability": "kind", "findings.json?severity=high": "severity",
             f"packages.json?ecosystem={ecosystem}": "ecosystem"}
    counted, skewed = tmp_path / "counted", tmp_path / "skewed"
    counted.mkdir()
    skewed.mkdir()
    plain = datasette_for(_copy(demo_db, str(counted / db_name(demo_db)) + ".db", "DROP TABLE report_facet_counts"))
    off = datasette_for(_copy(demo_db, str(skewed / db_name(demo_db)) + ".db", "UPDATE report_facet_counts SET n = n + 1000"))
    for page, own in pages.items():
        got = _facets(ds, page)
        assert got == _facets(plain, page), page
        assert got[own] and len(got[own]) == 1, page
        skew = _facets(off, page)
        assert skew[own][0][2] == got[own][0][2] + 1000, page
        assert {k: v for k, v in skew.items() if k != own} == {k: v for k, v in got.items() if k != own}, page
    # another lookup than equality, or two values: counted from the rows
    for page in ("findings.json?kind__contains=vuln", "findings.json?kind=vulnerability&severity=high"):
        assert _facets(off, page) == _facets(ds, page), page
