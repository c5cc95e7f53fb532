"""Advisories' own reference URLs: stored on import (http/https only, at most 20 a record, a longer list
reported as truncated), updated by a re-import, shown in the JSON report (`vulnerabilities[].references`),
on the Datasette report page's expanded vulnerability row and on the vulnerability page."""
from __future__ import annotations

import asyncio
import json
import pathlib

import pytest
from conftest import report_of
from imagebuilder import ImageBuilder
from osv_fixtures import MEDIUM, osv
from test_evaluator import shop_image

from stowaway.analyzers.vulnerabilities import store
from stowaway.analyzers.vulnerabilities.importer import import_paths, import_records

SHARED_OSV = pathlib.Path(__file__).resolve().parents[4] / "shared" / "feeds" / "osv" / "bulk" / \
    "npm-santatracker-osv-api-vulns.json"

GOOD = ["https://github.com/lodash/lodash/commit/3469357", "https://nvd.nist.gov/vuln/detail/CVE-2021-23337",
        "http://example.org/lodash-advisory"]
HOSTILE = ["javascript:alert(document.cookie)", "data:text/html,<script>alert(1)</script>", "/relative/path",
           "JAVASCRIPT://%0aalert(3)", "https://example.org/a b"]


def lodash(refs, modified="2024-01-01T00:00:00Z"):
    return osv("GHSA-llll", "npm", "lodash", [{"introduced": "0"}, {"fixed": "4.17.21"}], aliases=["CVE-2021-23337"],
               severity=MEDIUM, modified=modified, references=refs)


def _refs(urls, kind="WEB"):
    return [{"type": kind, "url": u} for u in urls]


def test_clean_references_keeps_http_links_only_and_caps_them():
    kept, dropped, refused = store.clean_references(
        _refs(HOSTILE) + _refs(GOOD, "ADVISORY") + [{"url": GOOD[0]}, 7, None]
        + _refs([f"https://example.org/{n}" for n in range(30)]))
    assert [k["url"] for k in kept] == GOOD + [f"https://example.org/{n}" for n in range(17)]
    assert kept[0]["type"] == "ADVISORY"
    assert (dropped, refused) == (13, len(HOSTILE) + 2)
    assert store.clean_references("not a list") == ([], 0, 0)
    assert store.safe_url(" https://a.example/x ") == "https://a.example/x"
    # raw quotes and angle brackets (a mailing-list link's '@<dev.solr.apache.org>') are percent-encoded
    assert store.safe_url('https://evil.example/"><script>') == "https://evil.example/%22%3E%3Cscript%3E"
    assert store.safe_url("https://a.example/" + "x" * 3000) is None


def test_import_stores_references_and_a_reimport_updates_them(tmp_path):
    from stowaway.ingest.db import connect

    database = connect(str(tmp_path / "scan.db"))
    result = import_records(database, [lodash(_refs(HOSTILE + GOOD))])
    text, dropped = database.execute(
        "SELECT reference_urls, references_dropped FROM advisories WHERE id='GHSA-llll'").fetchone()
    assert [r["url"] for r in json.loads(text)] == GOOD and dropped is None
    assert result.warnings["reference that is not an http(s) URL (not stored)"] == 1

    # the same record again changes nothing; a newer one replaces the list and reports the cap
    assert import_records(database, [lodash(_refs(["https://other.example/"]))]).unchanged == 1
    many = [f"https://example.org/{n}" for n in range(25)]
    result = import_records(database, [lodash(_refs(many), modified="2025-01-01T00:00:00Z")])
    text, dropped = database.execute(
        "SELECT reference_urls, references_dropped FROM advisories WHERE id='GHSA-llll'").fetchone()
    assert [r["url"] for r in json.loads(text)] == many[:store.MAX_REFERENCES] and dropped == 5
    assert result.warnings[f"more than {store.MAX_REFERENCES} references (the rest not stored)"] == 1

    # a record stored before references were kept (marked -1 by the store's step 5) is read again
    database.execute("UPDATE advisories SET reference_urls = NULL, references_dropped = -1")
    database.conn.commit()
    assert import_records(database, [lodash(_refs(GOOD), modified="2025-01-01T00:00:00Z")]).updated == 1
    assert [r["url"] for r in json.loads(database.execute("SELECT reference_urls FROM advisories").fetchone()[0])] == GOOD


def test_nvd_references_are_stored_and_reach_the_report(tmp_path, scan):
    shop_image().write_oci_layout(tmp_path / "oci", ref="demo/shop:1")
    nvd_doc = {"format": "NVD_CVE", "vulnerabilities": [{"cve": {
        "id": "CVE-2021-23337", "lastModified": "2024-01-01T00:00:00.000", "published": "2021-02-15T13:15:00.000",
        "vulnStatus": "Analyzed", "descriptions": [{"lang": "en", "value": "lodash command injection"}],
        "references": [{"url": "https://snyk.io/vuln/SNYK-JS-LODASH-1040724", "source": "report@snyk.io",
                        "tags": ["Exploit", "Third Party Advisory"]}, {"url": "javascript:alert(1)"}]}}]}
    (tmp_path / "nvd.json").write_text(json.dumps(nvd_doc))
    database, _ = scan(f"oci:{tmp_path / 'oci'}")
    import_records(database, [lodash(_refs(GOOD[:1]))])
    import_paths(database, [str(tmp_path / "nvd.json")])
    database, _ = scan(f"oci:{tmp_path / 'oci'}")
    vuln = next(v for v in report_of(database, "demo/shop:1")["vulnerabilities"] if v["id"] == "CVE-2021-23337")
    assert vuln["references"] == [GOOD[0], "https://snyk.io/vuln/SNYK-JS-LODASH-1040724"]
    assert "references_truncated" not in vuln


@pytest.fixture
def scanned(tmp_path, scan):
    """The shop image scanned after an import of a lodash record with good, hostile and too many links."""
    shop_image().write_oci_layout(tmp_path / "oci", ref="demo/shop:1")
    database, _ = scan(f"oci:{tmp_path / 'oci'}")
    many = [f"https://example.org/ref/{n}" for n in range(30)]
    import_records(database, [lodash(_refs(HOSTILE[:2]) + _refs(GOOD) + _refs(many)),
                              osv("GHSA-nocve", "npm", "lodash", [{"introduced": "4.17.0"}, {"fixed": "4.17.16"}])])
    database, _ = scan(f"oci:{tmp_path / 'oci'}")
    return database, tmp_path / "scan.db"


def test_json_report_lists_the_records_references(scanned):
    database, _ = scanned
    rep = report_of(database, "demo/shop:1")
    vuln = next(v for v in rep["vulnerabilities"] if v["id"] == "CVE-2021-23337")
    assert vuln["references"][:3] == GOOD
    assert len(vuln["references"]) == store.MAX_REFERENCES and vuln["references_truncated"] is True
    assert not any(u.lower().startswith(("javascript:", "data:")) for v in rep["vulnerabilities"]
                   for u in v["references"])
    # every vulnerability entry has the field, empty when its records publish no links
    assert all(isinstance(v["references"], list) for v in rep["vulnerabilities"])
    assert next(v for v in rep["vulnerabilities"] if v["id"] == "GHSA-nocve")["references"] == []

    # a re-import of a newer record updates the report without a rescan
    import_records(database, [lodash(_refs(["https://example.com/fixed-notes"]), modified="2026-01-01T00:00:00Z")])
    vuln = next(v for v in report_of(database, "demo/shop:1")["vulnerabilities"] if v["id"] == "CVE-2021-23337")
    assert vuln["references"] == ["https://example.com/fixed-notes"] and "references_truncated" not in vuln


def _get(ds, path: str) -> str:
    got = asyncio.run(ds.client.get(path))
    assert got.status_code == 200, (path, got.text[:500])
    return got.text


def test_datasette_pages_show_the_references_after_the_id_links(scanned):
    from datasette.app import Datasette

    database, path = scanned
    image_id = database.execute("SELECT id FROM images").fetchone()[0]
    finding = database.execute("SELECT finding_id FROM vulnerability_details WHERE vulnerability_id='CVE-2021-23337'"
                               ).fetchone()[0]
    ds = Datasette(files=[str(path)])
    page = _get(ds, f"/-/stowaway/image/{image_id}?tab=vulnerabilities")
    start = page.index(f'id="finding-{finding}"')
    row = page[start:page.index("</details>", start)]
    hrefs = [h for h in row.split('href="')[1:]]
    links = [h.split('"', 1)[0] for h in hrefs]
    nvd_link = links.index("https://nvd.nist.gov/vuln/detail/CVE-2021-23337")
    # the record's own links follow the id-derived ones; the NVD link it repeats is shown once
    assert links.index(GOOD[0]) > nvd_link and links.index(GOOD[2]) > nvd_link
    assert links.count("https://nvd.nist.gov/vuln/detail/CVE-2021-23337") == 1
    assert "https://example.org/ref/16" in links and "https://example.org/ref/17" not in links
    assert "More references were published than are stored" in row
    assert "javascript:" not in page.lower() and 'href="data:' not in page

    vuln_page = _get(ds, "/-/stowaway/vulnerability/CVE-2021-23337")
    assert f'href="{GOOD[0]}"' in vuln_page and f'href="{GOOD[2]}"' in vuln_page
    assert "javascript:" not in vuln_page.lower()
    # an advisory no image is affected by: its page shows its own links too
    import_records(database, [osv("GHSA-none", "npm", "left-pad", [{"introduced": "0"}], aliases=["CVE-2099-1"],
                                  references=_refs(["https://example.net/left-pad"]))])
    assert 'href="https://example.net/left-pad"' in _get(Datasette(files=[str(path)]), "/-/stowaway/vulnerability/CVE-2099-1")


@pytest.mark.skipif(not SHARED_OSV.exists(), reason="../shared/feeds/osv not present")
def test_a_real_osv_record_references_reach_the_report(tmp_path, scan):
    """GHSA-6chw-6frg-f759 (acorn 5.5.0 up to 5.7.4) as osv.dev publishes it, from ../shared/feeds/osv."""
    doc = json.loads(SHARED_OSV.read_text())
    record = next(v for v in doc["vulns"] if v["id"] == "GHSA-6chw-6frg-f759")
    published = [r["url"] for r in record["references"] if r["url"].startswith(("https://", "http://"))]
    assert published
    img = ImageBuilder()
    img.layer({"app/node_modules/acorn/package.json": json.dumps({"name": "acorn", "version": "5.6.0"})})
    img.write_oci_layout(tmp_path / "oci", ref="demo/acorn:1")
    database, _ = scan(f"oci:{tmp_path / 'oci'}")
    import_paths(database, [str(SHARED_OSV)])
    database, _ = scan(f"oci:{tmp_path / 'oci'}")
    vuln = next(v for v in report_of(database, "demo/acorn:1")["vulnerabilities"]
                if "GHSA-6chw-6frg-f759" in [v["id"], *v["aliases"]])
    assert set(published[:store.MAX_REFERENCES]) <= set(vuln["references"])


def _stored(database, rid):
    return [r["url"] for r in json.loads(database.execute(
        "SELECT reference_urls FROM advisories WHERE id = ?", [rid]).fetchone()[0] or "[]")]


def test_vendor_feeds_keep_their_references(tmp_path):
    from vendor_docs import rhsa, suse_cvrf

    from stowaway.ingest.db import connect

    database = connect(str(tmp_path / "scan.db"))
    doc = rhsa("RHSA-2020:5566", ["CVE-2020-1971"], "cpe:/o:redhat:enterprise_linux:7::server", "7Server-7.9.Z",
               "openssl-1:1.0.2k-21.el7_9.src", ["openssl-1:1.0.2k-21.el7_9.x86_64"], "Important")
    doc["document"]["references"] = [
        {"category": "self", "summary": "the advisory", "url": "https://access.redhat.com/errata/RHSA-2020:5566"},
        {"category": "external", "summary": "bad", "url": "javascript:alert(1)"}]
    doc["vulnerabilities"][0]["references"] = [
        {"category": "self", "summary": "the CVE", "url": "https://access.redhat.com/security/cve/CVE-2020-1971"}]
    cvrf = suse_cvrf("SUSE-SU-2023:0001-1", "Security update for python3", ["SUSE Linux Enterprise Server 15 SP3"],
                     ["python3-base-3.6.15-150300.10.45.1"], "CVE-2023-24329", "important")
    cvrf = cvrf.replace("<ProductTree", """<DocumentReferences><Reference Type="Self">
      <URL>https://www.suse.com/support/update/announcement/2023/suse-su-20230001-1/</URL>
      <Description>Link for SUSE-SU-2023:0001-1</Description></Reference>
      <Reference Type="External"><URL>data:text/html,x</URL></Reference></DocumentReferences>
  <ProductTree""", 1)
    (tmp_path / "feeds").mkdir()
    (tmp_path / "feeds" / "rhsa.json").write_text(json.dumps(doc))
    (tmp_path / "feeds" / "cvrf-suse-su-2023-0001-1.xml").write_text(cvrf)
    import_paths(database, [str(tmp_path / "feeds")])
    assert _stored(database, "RHSA-2020:5566") == ["https://access.redhat.com/security/cve/CVE-2020-1971",
                                                   "https://access.redhat.com/errata/RHSA-2020:5566"]
    assert _stored(database, "SUSE-SU-2023:0001-1") == [
        "https://www.suse.com/support/update/announcement/2023/suse-su-20230001-1/"]
