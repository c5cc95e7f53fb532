"""Acceptance on corpus/shop:1.0 with exactly ../shared/feeds/osv imported."""
import json
import subprocess
import sys

import pytest
from conftest import CORPUS, SHARED, corpus, report_of

from stowaway.analyzers.base import load_all
from stowaway.analyzers.vulnerabilities.importer import import_paths
from stowaway.analyzers.vulnerabilities.rematch import rematch
from stowaway.ingest import cli
from stowaway.ingest.db import connect

FEED = SHARED / "feeds" / "osv"
SHOP = "corpus/shop:1.0"


def _expected():
    return json.loads((CORPUS / "expected.json").read_text())["images"][SHOP]


def _check(report: dict, tmp_path, only="vulnerabilities"):
    path = tmp_path / "r.json"
    path.write_text(json.dumps(report))
    run = subprocess.run([sys.executable, str(CORPUS / "check_report.py"), str(path), "--image", SHOP, "--only", only],
                         capture_output=True, text=True, timeout=120)
    return run.returncode, run.stdout


def _found(report):
    out = {}
    for v in report["vulnerabilities"]:
        key = f"{v['package']['name']}@{v['package']['version']}"
        out.setdefault(key, set()).update([v["id"], *v["aliases"]])
    return out


@corpus
def test_expected_app_packages_in_a_stored_scan_match_exactly_as_listed(tmp_path):
    """Matching alone: the planted app packages (and the OS's log4j 2.17.1, as if an app shipped it) are put
    in a stored scan, then re-evaluated from the database."""
    exp = _expected()
    database = connect(str(tmp_path / "v.db"))
    result = import_paths(database, [str(FEED)])
    assert result.skipped == 0
    conn = database.conn
    with conn:
        image_id = conn.execute("INSERT INTO images (reference, manifest_digest, platform, os_family, os_version)"
                                " VALUES (?, 'sha256:0', '', 'debian', '11')", [SHOP]).lastrowid
        scan_id = conn.execute("INSERT INTO scans (image_id, reference, status) VALUES (?, ?, 'done')",
                               [image_id, SHOP]).lastrowid
        conn.execute("UPDATE images SET last_scan_id = ? WHERE id = ?", [scan_id, image_id])  # as the pipeline does
        pkgs = exp["app_packages"] + [{"ecosystem": "maven", "name": "org.apache.logging.log4j:log4j-core",
                                       "version": "2.17.1", "path": "/srv/other/log4j-core-2.17.1.jar"}]
        conn.executemany("INSERT INTO packages (scan_id, image_id, ecosystem, name, version, path, layer_index)"
                         " VALUES (?,?,?,?,?,?,2)",
                         [(scan_id, image_id, p["ecosystem"], p["name"], p["version"], p["path"]) for p in pkgs])
    assert rematch(database).images == 1
    report = report_of(database, SHOP)
    found = _found(report)
    for pv, cves in exp["vulnerabilities_must_find"].items():
        for cve in cves:
            assert cve in found.get(pv, set()), f"{pv} {cve}"
    for pv, cves in exp["vulnerabilities_must_not_find"].items():
        for cve in cves:
            assert cve not in found.get(pv, set()), f"{pv} {cve}"
    # a CVSS score always comes with the severity it implies
    assert all(v["severity"] in ("critical", "high", "medium", "low") for v in report["vulnerabilities"]
               if v["cvss_score"] is not None)
    assert sum(v["cvss_score"] is not None for v in report["vulnerabilities"]) > 50
    # every finding says which record and range it came from, and where the package lies
    for v in report["vulnerabilities"]:
        assert v["matched_by"] and all(m["record"] and m["range"] for m in v["matched_by"])
        assert v["package"]["path"] and v["layer_index"] == 2
    code, out = _check(report, tmp_path)
    assert code == 0, out


def _inventories_app_packages() -> bool:
    return {"dpkg", "java-archive", "npm", "python-dist"} <= set(load_all())


@corpus
@pytest.mark.skipif(not _inventories_app_packages(), reason="Java, npm and Python inventory analyzers not present")
@pytest.mark.parametrize("source", [f"docker-archive:{CORPUS / 'shop-1.0.docker.tar.gz'}", f"oci:{CORPUS / 'oci'}:{SHOP}"],
                         ids=["docker-archive", "oci-layout"])
def test_shop_scan_passes_check_report(tmp_path, source):
    db = str(tmp_path / "shop.db")
    assert cli.main(["db", "import", str(FEED), "--db", db]) == 0
    assert cli.main(["scan", source, "--db", db, "--no-progress", "--risk", "vulnerabilities"]) == 0
    report = report_of(connect(db), SHOP)
    code, out = _check(report, tmp_path)
    assert code == 0, out
    # re-evaluating without the image gives the same findings
    before = sorted((v["id"], v["package"]["path"]) for v in report["vulnerabilities"])
    assert cli.main(["rematch", "--db", db]) == 0
    after = sorted((v["id"], v["package"]["path"]) for v in report_of(connect(db), SHOP)["vulnerabilities"])
    assert before == after and len(before) > 50
