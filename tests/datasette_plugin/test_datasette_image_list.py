"""The image list: every count links to the findings behind it (the linked table holds exactly that many
rows), ecosystems without advisories say "not checked" instead of 0, and a failed last scan shows its
reason."""
from __future__ import annotations

import asyncio
import html
import json
import re
import sqlite3

from plugin_fixtures import datasette_for, demo_db  # noqa: F401 (demo_db is a fixture)

from stowaway.ingest import db as dbm

COUNT = re.compile(r'<a class="sw-count[^"]*" href="([^"]+)">(\d+)</a>')
ROW = re.compile(r'<tr class="sw-image-row" data-image-id="(\d+)">(.*?)</tr>', re.S)


def run(coro):
    return asyncio.run(coro)


def rows_of(page: str) -> dict[int, str]:
    return {int(m.group(1)): m.group(2) for m in ROW.finditer(page)}


def test_every_count_links_to_exactly_its_findings(demo_db):
    ds = datasette_for(demo_db)
    page = run(ds.client.get("/-/stowaway/images")).text
    links = COUNT.findall(page)
    assert len(links) >= 3 * 6  # three images, six linked counts each at least
    nonzero = 0
    for href, shown in links:
        href = html.unescape(href)
        table, _, query = href.partition("?")
        got = run(ds.client.get(f"{table}.json?{query}&_size=0"))
        assert got.status_code == 200, (href, got.text[:300])
        assert got.json()["filtered_table_rows_count"] == int(shown), href
        nonzero += int(shown) > 0
    assert nonzero >= 5
    # the critical count of demo/app:1.0 is the one critical vulnerability, unsuppressed
    with sqlite3.connect(demo_db) as conn:
        image_id = conn.execute("SELECT id FROM images WHERE reference = 'demo/app:1.0'").fetchone()[0]
    row = rows_of(page)[image_id]
    critical = [h for h, n in COUNT.findall(row) if "severity=critical" in h]
    assert critical and run(ds.client.get(html.unescape(critical[0]).replace("?", ".json?", 1) + "&_shape=array")
                            ).json()[0]["vulnerability_id"] == "CVE-2021-44228"


def test_coverage_gaps_say_not_checked(demo_db):
    with sqlite3.connect(demo_db) as conn:
        image_id, scan_id = conn.execute("SELECT id, last_scan_id FROM images WHERE reference = 'demo/app:1.0'").fetchone()
        other = conn.execute("SELECT id FROM images WHERE reference = 'other/tool:1'").fetchone()[0]
        conn.execute("INSERT OR REPLACE INTO scan_facts (scan_id, name, value) VALUES (?, 'vulnerability_coverage', ?)",
                     [scan_id, json.dumps([{"ecosystem": "Debian:11", "packages": 2, "advisories": 0, "checked": False,
                                            "reason": "not checked: no Debian:11 advisories in the store"},
                                           {"ecosystem": "Maven", "packages": 1, "advisories": 5, "checked": True}])])
        conn.execute("DELETE FROM scan_facts WHERE name = 'vulnerability_coverage' AND scan_id ="
                     " (SELECT last_scan_id FROM images WHERE id = ?)", [other])
    ds = datasette_for(demo_db)
    rows = rows_of(run(ds.client.get("/-/stowaway/images")).text)
    assert "not checked: 2 packages (Debian:11)" in rows[image_id]
    assert "no Debian:11 advisories in the store" in rows[image_id]
    assert "not checked" not in rows[other]
    listed = {i["id"]: i for i in run(ds.client.get("/-/stowaway/images.json")).json()["images"]}
    assert [c["ecosystem"] for c in listed[image_id]["not_checked"]] == ["Debian:11"]


def test_a_failed_last_scan_shows_its_reason(demo_db):
    with sqlite3.connect(demo_db) as conn:
        image_id, last = conn.execute("SELECT id, last_scan_id FROM images WHERE reference = 'demo/app:2.0'").fetchone()
        conn.execute("INSERT INTO scans (image_id, reference, source, status, error, started_at, finished_at)"
                     " VALUES (?, 'demo/app:2.0', 'oci:/gone', 'failed', ?, ?, ?)",
                     [image_id, "oci:/gone: no such directory", dbm.now(), dbm.now()])
    ds = datasette_for(demo_db)
    rows = rows_of(run(ds.client.get("/-/stowaway/images")).text)
    assert "failed" in rows[image_id] and "oci:/gone: no such directory" in rows[image_id]
    assert "last finished" in rows[image_id]  # the previous scan's results are still the ones shown
    assert all("failed" not in r for i, r in rows.items() if i != image_id)
    listed = {i["id"]: i for i in run(ds.client.get("/-/stowaway/images.json")).json()["images"]}
    assert listed[image_id]["scan_state"] == "failed" and listed[image_id]["scan_id"] == last


def test_plotly_is_served_gzipped_and_cached(demo_db):
    import gzip
    from pathlib import Path

    import httpx
    import plotly

    raw = (Path(plotly.__file__).parent / "package_data" / "plotly.min.js").read_bytes()
    ds = datasette_for(demo_db)

    async def get(headers):
        transport = httpx.ASGITransport(app=ds.app())
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
            async with client.stream("GET", "/-/stowaway/plotly.min.js", headers=headers) as got:
                return got.status_code, got.headers, b"".join([c async for c in got.aiter_raw()])

    status, headers, body = run(get({"accept-encoding": "gzip, deflate"}))
    assert status == 200 and headers["content-encoding"] == "gzip" and "accept-encoding" in headers["vary"].lower()
    assert len(body) < len(raw) / 2 and gzip.decompress(body) == raw
    assert "max-age" in headers["cache-control"]
    status, plain, body = run(get({"accept-encoding": "identity"}))
    assert status == 200 and "content-encoding" not in plain and body == raw
    status, _, body = run(get({"accept-encoding": "gzip", "if-none-match": headers["etag"]}))
    assert status == 304 and body == b""
