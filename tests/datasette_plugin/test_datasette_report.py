"""The per-image report page: summary strip, tabs (one per request), expandable vulnerabilities with
their fix roll-up, grouped unsafe settings, and suppressing a finding without losing one's place.

The strip's numbers are checked against `stowaway report REF --format json` (the installed command),
before and after a suppression."""
from __future__ import annotations

import asyncio
import html
import json
import os
import re
import sqlite3
import subprocess
import sys

from conftest import corpus
from markupsafe import escape
from plugin_fixtures import (  # noqa: F401 (demo_db and corpus_db_path are fixtures)
    LOG4J,
    ROOT,
    VULNS_V1,
    corpus_db_path,
    datasette_for,
    demo_db,
    post_form,
)

from stowaway.datasette_plugin import report_page
from stowaway.datasette_plugin.report_page import TAB_KEYS, duration
from stowaway.ingest.model import SEVERITIES


def run(coro):
    return asyncio.run(coro)


def get(ds, path, actor=None):
    cookies = {"ds_actor": ds.sign({"a": actor}, "actor")} if actor else {}
    got = run(ds.client.get(path, cookies=cookies))
    assert got.status_code == 200, (path, got.status_code, got.text[:500])
    return got.text


def one(path, sql, params=()):
    with sqlite3.connect(path) as conn:
        return conn.execute(sql, params).fetchone()


def json_report(db_path, ref) -> dict:
    done = subprocess.run([os.path.join(os.path.dirname(sys.executable), "stowaway"), "report", ref, "--db", db_path,
                           "--format", "json"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


STRIP_COUNT = re.compile(r'class="sw-sev sw-sev-(?P<sev>\w+) sw-sev-count" data-kind="(?P<kind>\w+)"'
                         r' data-severity="(?P=sev)" data-failing="(?P<failing>\d+)" data-suppressed="(?P<suppressed>\d+)"')
KIND_COUNT = re.compile(r'class="sw-strip-n sw-kind-count" data-kind="(?P<kind>\w+)" data-failing="(?P<failing>\d+)"'
                        r' data-suppressed="(?P<suppressed>\d+)"')


def strip_counts(page: str) -> dict:
    """The strip's per kind and severity numbers, shaped as the JSON report's `counts`."""
    strip = page.split('class="sw-strip"')[1].split('class="sw-tabs"')[0]
    out: dict = {"failing": {}, "suppressed": {}}
    for m in STRIP_COUNT.finditer(strip):
        for side in ("failing", "suppressed"):
            if int(m[side]):
                out[side].setdefault(m["kind"], {})[m["sev"]] = int(m[side])
    totals = {m["kind"]: (int(m["failing"]), int(m["suppressed"])) for m in KIND_COUNT.finditer(strip)}
    for kind, (failing, suppressed) in totals.items():  # the card totals are the sums of their badges
        assert failing == sum(out["failing"].get(kind, {}).values())
        assert suppressed == sum(out["suppressed"].get(kind, {}).values())
    return out


def attr(page: str, element_id: str, name: str) -> str:
    return re.search(rf'id="{element_id}" data-{name}="([^"]*)"', page)[1]


def row_of(page: str, fid) -> str:
    """The markup of finding FID's row, up to the next finding's."""
    return page.split(f'id="finding-{fid}"')[1].split('id="finding-')[0]


def tab_label_count(page: str, tab: str) -> str:
    return re.search(rf'data-tab="{tab}" href="[^"]*"[^>]*>[^<]*<span class="sw-tab-count">([^<]*)</span>', page)[1]


def check_strip_matches_report(ds, db_path, ref, image_id):
    report = json_report(db_path, ref)
    page = get(ds, f"/-/stowaway/image/{image_id}")
    assert strip_counts(page) == report["counts"]
    open_vulns = [v for v in report["vulnerabilities"] if not v.get("suppressed")]
    assert int(attr(page, "sw-fixable", "fixable")) == len([v for v in open_vulns if v.get("fixed_version")])
    suppressed = sum(n for kinds in report["counts"]["suppressed"].values() for n in kinds.values())
    assert int(attr(page, "sw-suppressed", "suppressed")) == suppressed
    assert tab_label_count(page, "vulnerabilities") == str(len(open_vulns))
    assert tab_label_count(page, "software") == f"{len(report['software']):,}"
    # every warning of the scan, in full, and its wall time
    for warning in report["scan"]["warnings"]:
        assert f"<li>{escape(warning)}</li>" in page
    assert f'data-seconds="{report["scan"]["seconds"]}"' in page
    return report, page


def test_summary_strip_counts_match_the_json_report_and_follow_a_suppression(demo_db):
    ds = datasette_for(demo_db)
    image_id = one(demo_db, "SELECT id FROM images WHERE reference = 'demo/app:1.0'")[0]
    report, page = check_strip_matches_report(ds, demo_db, "demo/app:1.0", image_id)
    assert report["counts"]["failing"]["vulnerability"]["high"] == 1  # something to suppress below
    assert attr(page, "sw-suppressed", "suppressed") == "0"

    fid = one(demo_db, "SELECT finding_id FROM vulnerability_details d JOIN findings f ON f.id = d.finding_id"
                       " WHERE d.vulnerability_id = 'CVE-2022-0001' AND f.image_id = ?", [image_id])[0]
    tab = f"/-/stowaway/image/{image_id}?tab=vulnerabilities"
    form = row_of(get(ds, tab, ROOT), fid)
    next_url = html.unescape(re.search(r'name="next" value="([^"]+)"', form)[1])
    assert next_url == f"{tab}#finding-{fid}"
    done = run(post_form(ds, tab, f"/-/stowaway/finding/{fid}/ignore",
                         {"ignored": "1", "reason": "not reachable here", "scope": "tag", "next": next_url}, actor=ROOT))
    # back to the same tab, at the finding's row
    assert done.status_code == 302 and done.headers["location"] == f"{tab}#finding-{fid}"

    report, page = check_strip_matches_report(ds, demo_db, "demo/app:1.0", image_id)
    assert "high" not in report["counts"]["failing"]["vulnerability"]
    assert report["counts"]["suppressed"]["vulnerability"] == {"high": 1}
    assert attr(page, "sw-suppressed", "suppressed") == "1"
    after = get(ds, tab, ROOT)
    assert tab_label_count(after, "vulnerabilities") == str(len(VULNS_V1) - 1)
    # the row stays where it was (severity order, not moved to the end) and says why it is suppressed
    order = re.findall(r'<details class="sw-finding sw-vuln[^"]*" id="finding-(\d+)"', after)
    before_order = re.findall(r'<details class="sw-finding sw-vuln[^"]*" id="finding-(\d+)"', get(ds, tab))
    assert order == before_order and order.index(str(fid)) == 1
    row = row_of(after, fid)
    assert "suppressed: not reachable here" in row and "un-suppress" in row


def test_tabs_render_one_section_each_with_counts(demo_db):
    ds = datasette_for(demo_db)
    pages = {tab: get(ds, f"/-/stowaway/image/2?tab={tab}") for tab in TAB_KEYS}
    for tab, page in pages.items():
        current = re.findall(r'class="sw-tab sw-tab-current" data-tab="([\w-]+)"', page)
        assert current == [tab]
        assert page.count('class="sw-section sw-tabpanel"') == 1
    basic = pages["basic"]
    failing_settings = one(demo_db, "SELECT COUNT(*) FROM failing_findings WHERE image_id = 2"
                                    " AND kind = 'unsafe_setting' AND suppressed = 0")[0]
    assert tab_label_count(basic, "malicious") == "1" and tab_label_count(basic, "settings") == str(failing_settings)
    assert tab_label_count(basic, "base-image") == "not approved"
    # the long lists are not on the default tab: the page stays short
    assert "CVE-2023-0003" not in basic and "CVE-2023-0003" in pages["vulnerabilities"]
    assert get(ds, "/-/stowaway/image/2?tab=nonsense") == basic  # an unknown tab is the default


def test_vulnerability_rows_expand_to_their_details(demo_db, tmp_path):
    with sqlite3.connect(demo_db) as conn:  # as the matcher records it: the one upgrade that fixes them all
        conn.execute("INSERT OR REPLACE INTO scan_facts (scan_id, name, value) SELECT last_scan_id,"
                     " 'vulnerability_fixes', ? FROM images WHERE id = 2",
                     [json.dumps([{"ecosystem": LOG4J.ecosystem, "name": LOG4J.name, "version": LOG4J.version,
                                   "path": LOG4J.path, "fix_all_version": "2.17.1", "findings": 1}])])
    ds = datasette_for(demo_db)
    page = get(ds, "/-/stowaway/image/2?tab=vulnerabilities")
    fid = one(demo_db, "SELECT finding_id FROM vulnerability_details d JOIN findings f ON f.id = d.finding_id"
                       " WHERE d.vulnerability_id = 'CVE-2021-44228' AND f.image_id = 2")[0]
    summary, body = row_of(page, fid).split("</summary>")
    assert "CVE-2021-44228" in summary and "critical" in summary and "2.15.0" in summary
    assert 'href="/-/stowaway/vulnerability/CVE-2021-44228"' in body
    assert "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H" in body and "<strong>10.0</strong>" in body
    assert "2021-12-10" in body and "Upgrade org.apache.logging.log4j:log4j-core to 2.15.0." in body
    assert "Description of CVE-2021-44228." in body
    assert "https://nvd.nist.gov/vuln/detail/CVE-2021-44228" in body
    assert "https://github.com/advisories/GHSA-jfh8-c2jp-5v3q" in body
    # the layer command that brought the package in
    assert "layer 1</a>: <code class=\"sw-cmd\">/bin/sh -c #(nop) COPY dir:app in /opt/app/ </code>" in body
    # the fix roll-up: one line per vulnerable package
    rollup = page.split('class="rows-and-columns sw-rollup"')[1].split("</table>")[0]
    assert f"Upgrade {LOG4J.name} to 2.17.1</strong>: fixes 1 vulnerability" in rollup
    openssl = [v for v in VULNS_V1 if v[4].name == "libssl-demo"]
    fixable = len([v for v in openssl if v[3]])
    assert f"fixes published for {fixable} of {len(openssl)}; no single version fixes all" in rollup
    report = json_report(demo_db, "demo/app:1.0")  # the same fact as the JSON report's software[]
    assert [s["fix_all_version"] for s in report["software"] if s["name"] == LOG4J.name] == ["2.17.1"]
    # filters and paging stay on the tab
    critical = get(ds, "/-/stowaway/image/2?tab=vulnerabilities&severity=critical")
    assert critical.count('<details class="sw-finding sw-vuln') == 1
    fixable_only = get(ds, "/-/stowaway/image/2?tab=vulnerabilities&fix=yes")
    assert fixable_only.count('<details class="sw-finding sw-vuln') == len([v for v in VULNS_V1 if v[3]])


def test_vulnerabilities_are_paged(demo_db, monkeypatch):
    monkeypatch.setitem(report_page.PAGE_SIZE, "vulnerabilities", 3)
    ds = datasette_for(demo_db)
    pages = [get(ds, f"/-/stowaway/image/2?tab=vulnerabilities&page={n}") for n in (1, 2, 3)]
    ids = [re.findall(r'<details class="sw-finding sw-vuln[^"]*" id="finding-(\d+)"', p) for p in pages]
    assert [len(i) for i in ids] == [3, 3, 2] and len({x for i in ids for x in i}) == len(VULNS_V1)
    assert "Page 1 of 3" in pages[0] and "tab=vulnerabilities&amp;page=2" in pages[0]
    # the severity order runs across the pages
    severities = [re.findall(r'<summary><span class="sw-f-id">[^<]*</span><span class="sw-f-sev"><span class="sw-sev sw-sev-(\w+)"', p)
                  for p in pages]
    flat = [s for page in severities for s in page]
    assert len(flat) == len(VULNS_V1) and flat == sorted(flat, key=SEVERITIES.index)


def test_unsafe_settings_grouped_failing_first_details_behind_a_click(demo_db):
    ds = datasette_for(demo_db)
    page = get(ds, "/-/stowaway/image/2?tab=settings")
    groups = re.findall(r'<section class="sw-check-group" id="group-(\w+)">', page)
    assert groups.index("ssh") < groups.index("password_policy")  # the group with a failure first
    fid = one(demo_db, "SELECT d.finding_id FROM setting_details d JOIN findings f ON f.id = d.finding_id"
                       " JOIN images i ON i.last_scan_id = f.scan_id WHERE i.id = 2"
                       " AND d.check_id = 'ssh.permit_root_login'")[0]
    ssh = page.split('id="group-ssh"')[1].split("</section>")[0]
    assert f'id="finding-{fid}"' in ssh
    summary, body = row_of(page, fid).split("</details>")[0].split("</summary>")
    assert "fail" in summary and "SSH permits root login" in summary
    assert "Set PermitRootLogin no." not in summary and "Set PermitRootLogin no." in body
    assert "Root can log in over SSH." in body and "PermitRootLogin yes" in body
    # a passed check sits folded below the failures of its group
    policy = page.split('id="group-password_policy"')[1].split("</section>")[0]
    passed = one(demo_db, "SELECT COUNT(*) FROM unsafe_settings_view WHERE image_id = 2"
                          " AND category = 'password_policy' AND result <> 'fail'")[0]
    assert passed >= 1
    assert f'<details class="sw-passed"><summary>{passed} passed or not applicable</summary>' in policy
    assert "PASS_MAX_DAYS 90" in policy.split('<details class="sw-passed">')[1]
    # the weak-password list and the sensitive-path exclusions are one click away from their tabs
    assert 'href="/-/stowaway/settings#weak-passwords"' in page
    secrets = get(ds, "/-/stowaway/image/2?tab=secrets")
    assert 'href="/-/stowaway/settings#exclusions"' in secrets
    settings = get(ds, "/-/stowaway/settings")
    assert 'id="weak-passwords"' in settings and 'id="exclusions"' in settings


def test_warnings_in_full_and_coverage_gaps_in_the_strip(demo_db):
    long_warning = "malware: /opt/app/huge.bin (300 MiB) is over malware.max_file_size (64 MiB): not scanned " + "x" * 300
    with sqlite3.connect(demo_db) as conn:
        conn.execute("UPDATE scans SET warnings = ? WHERE id = (SELECT last_scan_id FROM images WHERE id = 2)",
                     [json.dumps([long_warning, "secrets: a <rule> timed out"])])
        conn.execute("INSERT OR REPLACE INTO scan_facts (scan_id, name, value) SELECT last_scan_id,"
                     " 'vulnerability_coverage', ? FROM images WHERE id = 2", [json.dumps([
                         {"ecosystem": "Debian:11", "packages": 2, "advisories": 0, "checked": False,
                          "reason": "not checked: no Debian 11 advisories in the store"},
                         {"ecosystem": "Maven", "packages": 1, "advisories": 4, "checked": True}])])
    ds = datasette_for(demo_db)
    page = get(ds, "/-/stowaway/image/2?tab=software")
    strip = page.split('class="sw-strip"')[1].split('class="sw-tabs"')[0]
    assert "2 warnings</span>" in strip
    assert f"<li>{long_warning}</li>" in strip and "<li>secrets: a &lt;rule&gt; timed out</li>" in strip
    gaps = strip.split('id="sw-gaps"')[1].split("</details>")[0]
    assert "2 Debian:11 packages not checked: no Debian 11 advisories in the store" in gaps
    assert "Maven" not in gaps
    report = json_report(demo_db, "demo/app:1.0")
    assert report["scan"]["warnings"] == [long_warning, "secrets: a <rule> timed out"]


def test_scan_duration_is_the_scans_wall_time(demo_db):
    ds = datasette_for(demo_db)
    seconds, started, finished = one(demo_db, "SELECT seconds, started_at, finished_at FROM scans"
                                              " WHERE id = (SELECT last_scan_id FROM images WHERE id = 2)")
    page = get(ds, "/-/stowaway/image/2")
    line = page.split('class="sw-scan-line"')[1].split("</p>")[0]
    assert f"started {started}, finished {finished}" in line
    assert f'data-seconds="{seconds}">{duration(seconds)}</span>' in line
    assert [duration(s) for s in (0.119, 4.277, 59.96, 125, 7300)] == ["0.1 s", "4.3 s", "60.0 s", "2 min 5 s",
                                                                      "2 h 2 min"]


def test_layer_commands_are_masked_on_every_tab(demo_db):
    from plugin_fixtures import RAW_ENV_SECRET

    ds = datasette_for(demo_db)
    for tab in TAB_KEYS:
        for actor in (None, ROOT):
            assert RAW_ENV_SECRET not in get(ds, f"/-/stowaway/image/2?tab={tab}", actor)
    # the malware finding sits in the layer whose command exported the token: shown, masked
    assert "API_TOKEN=••••••" in get(ds, "/-/stowaway/image/2?tab=malicious")


@corpus
def test_corpus_shop_strip_matches_its_json_report(tmp_path_factory, tmp_path):
    import shutil

    path = str(tmp_path / "corpus.db")
    shutil.copy(corpus_db_path(tmp_path_factory), path)
    ds = datasette_for(path)
    image_id = one(path, "SELECT id FROM images WHERE reference = 'corpus/shop:1.0'")[0]
    report, page = check_strip_matches_report(ds, path, "corpus/shop:1.0", image_id)
    assert report["counts"]["failing"]["vulnerability"]
    vulns = get(ds, f"/-/stowaway/image/{image_id}?tab=vulnerabilities")
    for s in report["software"]:
        if s.get("fix_all_version"):
            assert f"Upgrade {html.escape(s['name'])} to {html.escape(s['fix_all_version'])}</strong>" in vulns
    settings = get(ds, f"/-/stowaway/image/{image_id}?tab=settings")
    groups = re.findall(r'<section class="sw-check-group" id="group-(\w+)">', settings)
    assert set(groups) >= {"baseline", "ssh", "weak_password", "password_policy"}


def test_a_vulnerability_page_leads_to_the_row_in_each_report(demo_db):
    ds = datasette_for(demo_db)
    page = get(ds, "/-/stowaway/vulnerability/CVE-2021-44228", ROOT)
    rows = [(iid, fid) for fid, iid in (one(demo_db, "SELECT f.id, f.image_id FROM findings f JOIN vulnerability_details d"
                                                    " ON d.finding_id = f.id JOIN images i ON i.last_scan_id = f.scan_id"
                                                    " WHERE d.vulnerability_id = 'CVE-2021-44228' AND i.id = ?", [i])
                                        for i in (1, 2))]
    for image_id, fid in rows:
        assert f'href="/-/stowaway/image/{image_id}?tab=vulnerabilities#finding-{fid}"' in page
        assert f'<tr id="finding-{fid}"' in page  # the suppress control's way back lands here
        assert f'id="finding-{fid}"' in get(ds, f"/-/stowaway/image/{image_id}?tab=vulnerabilities")
        assert f'name="next" value="/-/stowaway/vulnerability/CVE-2021-44228#finding-{fid}"' in page


def test_items_a_scan_did_not_look_for_say_not_checked(scan, tmp_path):
    from imagebuilder import ImageBuilder

    layout = tmp_path / "oci"
    ImageBuilder().layer({"etc/os-release": "ID=alpine\nVERSION_ID=3.19.0\n", "app/.env": "X=1\n"}).write_oci_layout(
        layout, ref="only/secrets:1")
    database, outcomes = scan(f"oci:{layout}", risks=["secrets"])
    assert [o.status for o in outcomes] == ["done"]
    database.conn.close()
    ds = datasette_for(str(tmp_path / "scan.db"))
    page = get(ds, "/-/stowaway/image/only/secrets:1")
    for tab in ("vulnerabilities", "malicious", "settings", "compliance", "software"):
        assert tab_label_count(page, tab) == "not checked", tab
    assert tab_label_count(page, "secrets") == "0"  # looked for, none found: a real 0
    cards = dict(re.findall(r'data-kind="(\w+)" data-failing="\d+" data-suppressed="\d+">([^<]*)</strong>', page))
    assert cards["vulnerability"] == "not checked" and cards["malware"] == "not checked" and cards["secret"] == "0"
    gaps = page.split('id="sw-gaps"')[1].split("</details>")[0]
    assert "Vulnerabilities</a>: not checked: this scan&#39;s risk types (secrets) left it out" in gaps


def test_the_suppressed_card_links_to_exactly_the_suppressed_findings(demo_db):
    ds = datasette_for(demo_db)
    fid = one(demo_db, "SELECT finding_id FROM vulnerability_details d JOIN findings f ON f.id = d.finding_id"
                       " WHERE d.vulnerability_id = 'CVE-2023-0002' AND f.image_id = 2")[0]
    page = "/-/stowaway/image/2?tab=vulnerabilities"
    assert run(post_form(ds, page, f"/-/stowaway/finding/{fid}/ignore",
                         {"ignored": "1", "reason": "accepted", "next": page}, actor=ROOT)).status_code == 302
    strip = get(ds, "/-/stowaway/image/2")
    link = html.unescape(re.search(r'<a class="sw-strip-card" href="([^"]+)" title="the suppressed findings', strip)[1])
    rows = run(ds.client.get(link.replace("/findings_report?", "/findings_report.json?") + "&_shape=array")).json()
    assert [r["id"] for r in rows] == [fid] and attr(strip, "sw-suppressed", "suppressed") == "1"
