"""Fit and finish of Datasette's own pages (issue 17 item 7): human columns first and internal ones
hidden, CVE and image cells linking to the plugin's pages, home page and database links, empty states."""
from __future__ import annotations

import asyncio
import re

from plugin_fixtures import datasette_for, db_name, demo_db  # noqa: F401

from stowaway.datasette_plugin import finish


def run(coro):
    return asyncio.run(coro)


def header(page: str) -> list[str]:
    return re.findall(r'<th [^>]*data-column="([^"]+)"', page)


def test_views_show_human_columns_first_and_hide_internal_ones(demo_db):
    ds = datasette_for(demo_db)
    name = db_name(demo_db)
    page = run(ds.client.get(f"/{name}/vulnerabilities_view?severity=critical")).text
    shown = header(page)
    assert shown[:5] == ["Link", "rowid", "image", "vulnerability_id", "severity"], shown  # the first two hidden by CSS
    assert not {"image_id", "scan_id", "id"} & set(shown)
    assert "severity_rank" not in shown[:-1]  # kept last only because Datasette pages by it; hidden by CSS
    assert page.count("sw-vuln-link") == 2  # the filter still applies: the two critical rows
    # every column on request, and the APIs untouched
    everything = header(run(ds.client.get(f"/{name}/vulnerabilities_view?_allcols=1")).text)
    assert {"image_id", "scan_id", "severity_rank", "id"} <= set(everything)
    own = header(run(ds.client.get(f"/{name}/vulnerabilities_view?_col=package")).text)
    assert own == ["Link", "rowid", "package"]
    api = run(ds.client.get(f"/{name}/vulnerabilities_view.json?_shape=objects")).json()["rows"][0]
    assert {"image_id", "scan_id", "severity_rank"} <= set(api)
    # the stylesheet hides what Datasette must still select
    css = run(ds.client.get("/-/stowaway/stowaway.css")).text
    assert ".table-vulnerabilities_view .col-rowid" in css and ".table-vulnerabilities_view .col-Link" in css and ".table-vulnerabilities_view .col-severity_rank" in css
    for table in finish.COLUMNS:  # every listed column exists, so no page answers 400
        got = run(ds.client.get(f"/{name}/{table}"))
        assert got.status_code == 200, (table, got.text[:300])


def test_cve_and_image_cells_link_to_their_pages(demo_db):
    ds = datasette_for(demo_db)
    name = db_name(demo_db)
    page = run(ds.client.get(f"/{name}/vulnerabilities_view?severity=critical")).text
    assert '<a class="sw-vuln-link" href="/-/stowaway/vulnerability/CVE-2021-44228">CVE-2021-44228</a>' in page
    images = set(re.findall(r'class="sw-image-link" href="([^"]+)"', page))
    assert images == {"/-/stowaway/image/demo/app:1.0", "/-/stowaway/image/demo/app:2.0"}

    async def follow():
        return [(await ds.client.get(href)).status_code for href in sorted(images)]

    assert run(follow()) == [200, 200]  # the row leads back to its image's report
    # with every column, the link uses the image id
    allcols = run(ds.client.get(f"/{name}/findings_report?_allcols=1&kind=malware")).text
    image_id = run(ds.get_database(name).execute("SELECT id FROM images WHERE reference = 'demo/app:1.0'")).first()[0]
    assert f'href="/-/stowaway/image/{image_id}"' in allcols
    overview = run(ds.client.get(f"/{name}/image_overview")).text
    assert re.search(r'class="sw-image-link" href="/-/stowaway/image/demo/app:1.0"[^>]*>demo/app:1.0<', overview)


def test_home_page_and_database_page_link_to_the_plugin(demo_db):
    ds = datasette_for(demo_db)
    name = db_name(demo_db)
    home = run(ds.client.get("/")).text
    assert "stowaway-home" in home and "/-/stowaway/dashboard" in home and "/-/stowaway/images" in home
    database = run(ds.client.get(f"/{name}")).text
    assert "Stowaway: dashboard" in database and "/-/stowaway/settings" in database


def test_home_page_without_a_stowaway_database_has_no_block(tmp_path):
    import sqlite3

    path = tmp_path / "other.db"
    sqlite3.connect(path).execute("CREATE TABLE t (x)")
    ds = datasette_for(str(path))
    assert "stowaway-home" not in run(ds.client.get("/")).text


def test_settings_empty_states_say_what_to_do(demo_db):
    from plugin_fixtures import ROOT

    ds = datasette_for(demo_db)
    anonymous = run(ds.client.get("/-/stowaway/settings")).text
    assert "No exclusions" in anonymous and "stowaway-write" in anonymous
    writer = run(ds.client.get("/-/stowaway/settings", cookies={"ds_actor": ds.sign({"a": ROOT}, "actor")})).text
    assert "No exclusions yet: add a path below" in writer


def test_default_columns_only_for_a_stowaway_report_tables_html_page(demo_db, tmp_path):
    import shutil

    path = str(tmp_path / "scan.v2.db")  # a name Datasette tilde-encodes in its URLs (scan~2Ev2)
    shutil.copy(demo_db, path)
    ds = datasette_for(path)
    query = finish.default_columns_query
    assert "_col=vulnerability_id" in query(ds, "/scan~2Ev2/vulnerabilities_view", "severity=high")
    assert "severity=high" in query(ds, "/scan~2Ev2/vulnerabilities_view", "severity=high")
    for path_, qs in (("/scan~2Ev2/vulnerabilities_view.json", ""), ("/scan~2Ev2/vulnerabilities_view.csv", ""),
                      ("/scan~2Ev2/findings", ""), ("/scan~2Ev2/vulnerabilities_view", "_nocol=path"),
                      ("/scan~2Ev2/vulnerabilities_view", "_allcols=1"), ("/other/vulnerabilities_view", ""),
                      ("/-/stowaway/images", "")):
        assert query(ds, path_, qs) is None, (path_, qs)
    page = run(ds.client.get("/scan~2Ev2/vulnerabilities_view")).text
    assert header(page)[2:4] == ["image", "vulnerability_id"]


def test_an_unknown_vulnerability_says_what_to_do(demo_db):
    ds = datasette_for(demo_db)
    got = run(ds.client.get("/-/stowaway/vulnerability/CVE-1999-0001"))
    assert got.status_code == 404 and "stowaway db import" in got.text
