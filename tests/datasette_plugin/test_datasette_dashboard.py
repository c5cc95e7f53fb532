"""The dashboard (issue 17 item 4): headline numbers, filters, bars that link to exactly the findings they
count, the trend per image and per registry, severity order; the plugin's static assets compressed and
cached."""
from __future__ import annotations

import asyncio
import html
import json
import re
import urllib.parse

import pytest
from imagebuilder import ImageBuilder
from plugin_fixtures import (
    LOG4J,
    add_findings,
    datasette_for,
    db_name,
    demo_db,  # noqa: F401 (a fixture)
    demo_images,
    populate,
    vuln_finding,
)

from stowaway.ingest.model import SEVERITIES

REGISTRY_REF = "registry.example.com:5000/team/api:1"


def run(coro):
    return asyncio.run(coro)


@pytest.fixture
def dash_db(scan, tmp_path):
    """demo/app:2.0, demo/app:1.0, other/tool:1 and an image from a registry host, with the demo findings;
    then demo/app:1.0 and the registry image scanned a second time (so each has two scans, the second
    without the hand-written findings)."""
    layout = tmp_path / "oci"
    demo_images(layout, "2.0", "2024-06-01T00:00:00Z").write_oci_layout(layout, ref="demo/app:2.0")
    demo_images(layout, "1.0", "2024-01-01T00:00:00Z").write_oci_layout(layout, ref="demo/app:1.0", append=True)
    ImageBuilder().layer({"etc/os-release": "ID=alpine\nVERSION_ID=3.19.0\n", "bin/busybox": "x"}).write_oci_layout(
        layout, ref="other/tool:1", append=True)
    api = tmp_path / "api"
    ImageBuilder().layer({"etc/os-release": "ID=alpine\nVERSION_ID=3.19.0\n", "srv/api": "y"}).write_oci_layout(
        api, ref=REGISTRY_REF)
    database, outcomes = scan(f"oci:{layout}", f"oci:{api}")
    assert [o.status for o in outcomes] == ["done"] * 4, [o.error for o in outcomes]
    populate(database)
    add_findings(database, REGISTRY_REF, [LOG4J], [vuln_finding("CVE-2021-44228", "critical", 10.0, "2.15.0", LOG4J),
                                                   vuln_finding("CVE-2022-0001", "high", 7.5, "", LOG4J)])
    from stowaway.ingest.pipeline import Scanner

    # the second scans: demo/app:1.0 and the registry image again, analysed afresh (reuse off: an unchanged
    # image's results would be copied forward), so their hand-written findings are not in them
    Scanner(database, {"scan": {"reuse": False}}, progress=False).run([f"oci:{layout}:demo/app:1.0", f"oci:{api}"])
    add_findings(database, REGISTRY_REF, [LOG4J], [vuln_finding("CVE-2021-44228", "critical", 10.0, "2.15.0", LOG4J)])
    database.conn.close()
    return str(tmp_path / "scan.db")


def figures(page: str) -> dict[str, dict]:
    """The plotly figures the page draws, by chart id."""
    out = {}
    for chart_id, body in re.findall(r'<div id="plot-([\w-]+)".*?var fig = (\{.*?\});\n', page, re.S):
        out[chart_id] = json.loads(body)
    return out


def cards(page: str) -> dict[str, tuple[int, str]]:
    """{key: (value, href)} of the headline cards."""
    got = re.findall(r'<li class="sw-card sw-card-(\w+)[^"]*"><a href="([^"]+)">\s*<span class="sw-card-value">([\d,]+)<',
                     page)
    return {key: (int(value.replace(",", "")), html.unescape(href)) for key, href, value in got}


async def count_rows(ds, href: str) -> int:
    """How many rows the table page a link leads to holds (its .json, every page counted)."""
    path, _, query = href.partition("?")
    got = await ds.client.get(f"{path}.json?{query}&_size=0" if query else f"{path}.json?_size=0")
    assert got.status_code == 200, (href, got.text[:300])
    return got.json()["filtered_table_rows_count"]


def test_headline_numbers_count_exactly_what_they_link_to(demo_db):
    ds = datasette_for(demo_db)
    page = run(ds.client.get("/-/stowaway/dashboard")).text
    got = cards(page)
    # counted here from the raw tables: failing, unsuppressed findings of each image's current scan
    import sqlite3

    conn = sqlite3.connect(demo_db)
    current = ("FROM findings f JOIN images i ON i.last_scan_id = f.scan_id WHERE f.suppressed = 0"
               " AND coalesce(f.status, 'fail') NOT IN ('pass', 'not_applicable')")
    one = lambda sql: conn.execute(sql).fetchone()[0]  # noqa: E731
    expected = {
        "images": one("SELECT COUNT(*) FROM images"),
        "critical": one(f"SELECT COUNT(*) {current} AND f.kind = 'vulnerability' AND f.severity = 'critical'"),
        "fixable": one(f"SELECT COUNT(*) {current} AND f.kind = 'vulnerability' AND f.id IN"
                       " (SELECT finding_id FROM vulnerability_details WHERE coalesce(fixed_version, '') <> '')"),
        "secrets": one(f"SELECT COUNT(*) {current} AND f.kind = 'secret'"),
        "malware": one(f"SELECT COUNT(*) {current} AND f.kind = 'malware'"),
        "not_approved_base": one(f"SELECT COUNT(DISTINCT f.image_id) {current} AND f.kind = 'base_image' AND f.id IN"
                                 " (SELECT finding_id FROM base_image_details WHERE approved = 0)"),
    }
    # demo/app:1.0: one critical, three with a fix, an EICAR file, an unapproved base; demo/app:2.0 the critical
    # log4j fixed in 2.15.0
    assert expected["critical"] == 2 and expected["fixable"] == 4 and expected["malware"] == 1
    assert {k: v for k, (v, _) in got.items()} == expected

    async def follow():
        return {k: await count_rows(ds, href) for k, (_, href) in got.items()}

    assert run(follow()) == {k: v for k, (v, _) in got.items()}


def test_suppressed_vulnerabilities_leave_the_numbers(demo_db):
    """Fixable is counted from an index less the suppressed ones: suppress one fixable vulnerability (while
    the server runs, after it has shown the page once) and every card still equals the rows its link shows."""
    import sqlite3

    from stowaway.ingest import findings as store

    ds = datasette_for(demo_db)
    before = cards(run(ds.client.get("/-/stowaway/dashboard")).text)
    assert before["fixable"][0] == 4
    conn = sqlite3.connect(demo_db)
    finding_id = conn.execute("SELECT f.id FROM findings f JOIN images i ON i.last_scan_id = f.scan_id"
                              " JOIN vulnerability_details d ON d.finding_id = f.id"
                              " WHERE i.reference = 'demo/app:1.0' AND d.vulnerability_id = 'CVE-2023-0002'").fetchone()[0]
    suppression = store.suppression_for_finding(conn, finding_id, "tag")
    suppression.reason = "accepted"
    with conn:
        store.add_suppression(conn, suppression)
    conn.close()
    # the same server: the numbers it keeps between reloads follow the database file
    got = cards(run(ds.client.get("/-/stowaway/dashboard")).text)
    assert got["fixable"][0] == 3  # was 4

    async def follow():
        return {k: await count_rows(ds, href) for k, (_, href) in got.items()}

    assert run(follow()) == {k: v for k, (v, _) in got.items()}


def test_filters_narrow_numbers_links_and_charts(dash_db):
    ds = datasette_for(dash_db)

    async def go(query):
        page = (await ds.client.get("/-/stowaway/dashboard" + query)).text
        got = cards(page)
        followed = {k: await count_rows(ds, href) for k, (_, href) in got.items()}
        return page, got, followed

    everything, every, _ = run(go(""))
    # demo/app:1.0's current scan is its rescan: its hand-written critical is history
    assert every["images"][0] == 4 and every["critical"][0] == 2
    assert "registry.example.com:5000" in everything and "(no registry host)" in everything

    for query, images, critical, worst in (
            ("?registry=registry.example.com:5000", 1, 1, {REGISTRY_REF}),
            ("?registry=" + urllib.parse.quote("(no registry host)"), 3, 1, {"demo/app:1.0", "demo/app:2.0", "other/tool:1"}),
            ("?repository=demo/app", 2, 1, {"demo/app:1.0", "demo/app:2.0"}),
            ("?latest=1", 3, 2, {"demo/app:2.0", "other/tool:1", REGISTRY_REF})):
        page, got, followed = run(go(query))
        assert got["images"][0] == images, query
        assert got["critical"][0] == critical, query
        assert followed == {k: v for k, (v, _) in got.items()}, query  # every card's link holds its filter
        per_image = figures(page)["per-image"]
        shown = {x for t in per_image["data"] for x, y in zip(t["x"], t["y"]) if y}
        failing = {"demo/app:1.0", "demo/app:2.0", REGISTRY_REF}  # known to have failing findings
        assert shown <= worst and shown & failing == worst & failing, query

    none = run(ds.client.get("/-/stowaway/dashboard?repository=no/such")).text
    assert "No image matches these filters" in none


def test_every_bar_links_to_the_findings_it_counts(demo_db):
    ds = datasette_for(demo_db)
    page = run(ds.client.get("/-/stowaway/dashboard")).text
    figs = figures(page)
    assert set(figs) == {"per-image", "top-packages", "trend"}
    assert "plotly_click" in page and "p.customdata" in page
    per_image, packages = figs["per-image"]["data"], figs["top-packages"]["data"]
    # severity order, critical first (the bottom of each stack, the top of the legend)
    assert [t["name"] for t in per_image] == list(SEVERITIES)
    assert [t["name"] for t in packages] == [s for s in SEVERITIES if s in {t["name"] for t in packages}]
    assert figs["per-image"]["layout"]["legend"]["traceorder"] == "normal"

    async def check():
        checked = 0
        for trace in per_image + packages:
            values = trace["y"] if trace.get("orientation") != "h" else trace["x"]
            for value, href in zip(values, trace["customdata"]):
                if value:
                    assert await count_rows(ds, href) == value, (trace["name"], href)
                    checked += 1
        return checked

    assert run(check()) >= 8


def test_trend_is_one_series_per_image_or_per_registry(dash_db):
    ds = datasette_for(dash_db)
    by_image = figures(run(ds.client.get("/-/stowaway/dashboard")).text)["trend"]
    series = {t["name"]: t for t in by_image["data"]}
    # each image its own line; the rescanned ones have two points, oldest first
    assert set(series) == {"demo/app:1.0", "demo/app:2.0", "other/tool:1", REGISTRY_REF}
    app = series["demo/app:1.0"]
    assert len(app["x"]) == 2 and app["x"] == sorted(app["x"])
    assert app["y"][0] > app["y"][1]  # the hand-written findings were only in the first scan
    assert [len(series[n]["x"]) for n in ("demo/app:2.0", "other/tool:1")] == [1, 1]
    reg = series[REGISTRY_REF]["y"]
    assert len(reg) == 2 and reg[0] - reg[1] == 1  # two vulnerabilities written to the first scan, one to the second
    assert by_image["layout"]["xaxis"]["type"] == "date"

    async def follow(trace):
        return [await count_rows(ds, href) for href in trace["customdata"]]

    assert run(follow(app)) == app["y"]  # a point links to the findings its scan recorded

    by_registry = figures(run(ds.client.get("/-/stowaway/dashboard?trend=registry")).text)["trend"]
    regs = {t["name"]: t for t in by_registry["data"]}
    assert set(regs) == {"(no registry host)", "registry.example.com:5000"}
    assert regs["registry.example.com:5000"]["y"] == reg  # one image: its own line
    local = regs["(no registry host)"]["y"]
    assert len(local) == 4  # three first scans and a rescan
    # after its last point the registry's line is the sum of its images' current counts
    current = figures(run(ds.client.get("/-/stowaway/dashboard?registry=" + urllib.parse.quote("(no registry host)"))
                          ).text)["per-image"]
    assert local[-1] == sum(sum(t["y"]) for t in current["data"])
    assert local[1] >= local[0] and local[-1] < local[-2]  # grows with each image, falls with the rescan


def test_empty_database_says_what_to_do(scan, tmp_path):
    database, _ = scan()
    database.conn.close()
    ds = datasette_for(str(tmp_path / "scan.db"))
    page = run(ds.client.get("/-/stowaway/dashboard")).text
    assert "No images yet" in page and "stowaway scan" in page


@pytest.mark.parametrize("asset", ["stowaway.css", "stowaway.js", "plotly.min.js"])
def test_static_assets_are_compressed_and_cached(demo_db, asset):
    ds = datasette_for(demo_db)
    page = run(ds.client.get("/-/stowaway/dashboard")).text
    if asset != "plotly.min.js":  # the pages load the served copy, with its version in the URL
        assert re.search(rf'/-/stowaway/{re.escape(asset)}\?v=\w+', page), asset

    async def go():
        plain = await ds.client.get(f"/-/stowaway/{asset}", headers={"accept-encoding": "identity"})
        packed = await ds.client.get(f"/-/stowaway/{asset}", headers={"accept-encoding": "gzip, br"})
        again = await ds.client.get(f"/-/stowaway/{asset}", headers={"if-none-match": plain.headers["etag"]})
        return plain, packed, again

    plain, packed, again = run(go())
    assert plain.status_code == 200 and "content-encoding" not in plain.headers
    assert "max-age" in plain.headers["cache-control"] and "Accept-Encoding" in plain.headers["vary"]
    assert packed.headers["content-encoding"] == "gzip"
    # httpx decodes gzip itself: the body as sent is smaller, and decodes to the same bytes
    assert packed.content == plain.content
    assert packed.num_bytes_downloaded < 0.6 * plain.num_bytes_downloaded
    assert again.status_code == 304 and not again.content


def test_dashboard_export_links_carry_the_filters(dash_db):
    import csv
    import io

    ds = datasette_for(dash_db)
    page = run(ds.client.get("/-/stowaway/dashboard?registry=registry.example.com:5000")).text
    href = html.unescape(re.search(r'href="([^"]*/export/vulnerabilities\.csv[^"]*)"', page).group(1))
    assert "registry=registry.example.com" in urllib.parse.unquote(href)
    rows = list(csv.DictReader(io.StringIO(run(ds.client.get(href)).text)))
    assert {r["image"] for r in rows} == {REGISTRY_REF} and len(rows) == 1
    name = db_name(dash_db)
    assert name  # the database is served under its file's stem


def test_over_every_image_the_vulnerability_numbers_come_from_the_kept_counts(dash_db, tmp_path, monkeypatch):
    """Over every image, the fixable number and the top packages with their split by severity are read
    from the read model's kept counts, and are exactly what counting the rows gives (a suppression
    included); a database without the counts counts the rows."""
    import shutil
    import sqlite3

    from stowaway.datasette_plugin import queries
    from stowaway.ingest.findings import Suppression, add_suppression

    conn = sqlite3.connect(dash_db)
    with conn:
        add_suppression(conn, Suppression(rule="CVE-2022-0001", reason="accepted"))
    conn.close()
    plain = tmp_path / "plain"
    plain.mkdir()
    shutil.copy(dash_db, plain / "scan.db")
    conn = sqlite3.connect(plain / "scan.db")
    with conn:
        conn.execute("DROP TABLE report_facet_counts")
    conn.close()

    def numbers(db):
        queries._DASHBOARD_CACHE.clear()
        ds = datasette_for(str(db))
        got = run(queries._dashboard(ds.get_database(db_name(str(db))), queries.ImageFilter(), "image"))
        return got["headline"]["fixable"], [dict(r) for r in got["top_packages"]]

    read = []
    real = queries._kept_vulnerability_counts

    async def spy(db):
        read.append(await real(db))
        return read[-1]

    monkeypatch.setattr(queries, "_kept_vulnerability_counts", spy)
    kept, counted = numbers(dash_db), numbers(plain / "scan.db")
    assert read[0] is not None and read[1] is None  # the first from the counts, the second from the rows
    assert kept == counted and kept[0] > 0 and kept[1]
