"""The findings store's suppressions: made on the CLI, in Datasette, or from .trivyignore / OpenVEX files,
they hold through rescans and rematches and show the same on every surface (report, counts,
Datasette, SARIF)."""
from __future__ import annotations

import asyncio
import contextlib
import io
import json
import pathlib
import sqlite3
import sys

from conftest import corpus
from store_fixtures import LOG4J, REF, shop, shop_db, shop_template  # noqa: F401 (fixtures)

from stowaway.ingest import cli


def stowaway(*argv) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli.main([str(a) for a in argv])
    return code, out.getvalue()


def report(db, ref=REF) -> dict:
    code, text = stowaway("report", ref, "--db", db)
    assert code == 0
    return json.loads(text)


def suppressed_ids(db, ref=REF) -> dict[str, bool]:
    return {v["id"]: v["suppressed"] for v in report(db, ref)["vulnerabilities"]}


def cli_counts(db) -> dict:
    code, text = stowaway("images", "--format", "json", "--db", db)
    assert code == 0
    return {i["reference"]: i["counts"] for i in map(json.loads, text.splitlines())}


def datasette_get(db, path):
    from datasette.app import Datasette

    async def go():
        return await Datasette(files=[db]).client.get(path)

    return asyncio.run(go())


def sarif_rule_ids(db) -> list[str]:
    name = db.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    got = datasette_get(db, f"/{name}/findings_report.sarif")
    assert got.status_code == 200, got.text[:300]
    return [r["ruleId"] for r in json.loads(got.text)["runs"][0]["results"]]


def test_cli_suppression_holds_through_rescan_and_rematch_on_every_surface(shop_db):
    db = shop_db
    assert suppressed_ids(db) == {"CVE-2021-44228": False, "CVE-2021-45046": False}
    assert "CVE-2021-44228" in sarif_rule_ids(db) or "GHSA-jfh8-c2jp-5v3q" in sarif_rule_ids(db)
    # the finding's id is the GHSA record's alias: the suppression names the CVE
    code, _ = stowaway("ignore", "add", "--image", "corpus/shop", "--id", "CVE-2021-44228", "--reason",
                       "JNDI lookups disabled by the start script", "--db", db)
    assert code == 0
    # applied at once: counts change without a rescan
    assert cli_counts(db)[REF]["suppressed"] == {"vulnerability": {"critical": 1}}
    for step in (("rescan", REF), ("rematch",)):
        assert stowaway(*step, "--db", db, *(["--no-progress"] if step[0] == "rematch" else []))[0] == 0
        rep = report(db)
        vulns = {v["id"]: v for v in rep["vulnerabilities"]}
        assert vulns["CVE-2021-44228"]["suppressed"] is True, step
        assert vulns["CVE-2021-44228"]["suppressed_reason"] == "JNDI lookups disabled by the start script"
        assert vulns["CVE-2021-45046"]["suppressed"] is False
        assert rep["counts"]["suppressed"] == {"vulnerability": {"critical": 1}}
        assert rep["counts"]["failing"]["vulnerability"] == {"high": 1}
        assert cli_counts(db)[REF] == rep["counts"]
        page = datasette_get(db, "/-/stowaway/images.json").json()["images"][0]
        assert (page["critical"], page["high"], page["suppressed"]) == (0, 1, 1)
        assert page["counts"] == rep["counts"]
        rules = sarif_rule_ids(db)
        assert "CVE-2021-44228" not in rules and "GHSA-jfh8-c2jp-5v3q" not in rules
        assert {"CVE-2021-45046", "GHSA-7rjr-3q55-vv33"} & set(rules)
        software = {p["name"]: p["vulnerability_count"] for p in rep["software"]}
        assert software[LOG4J] == 1  # the suppressed one is not counted against the package
    assert len({r[0] for r in sqlite3.connect(db).execute("SELECT id FROM scans WHERE status = 'done'")}) == 2
    # the CycloneDX export of the packages says the same: a VEX analysis on the suppressed vulnerability
    name = db.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    bom = json.loads(datasette_get(db, f"/{name}/packages_view.cyclonedx?image={REF}&_size=max").text)
    analysis = {v["id"]: v.get("analysis") for v in bom["vulnerabilities"]}
    assert analysis["CVE-2021-44228"] == {"state": "not_affected", "detail": "JNDI lookups disabled by the start script"}
    assert analysis["CVE-2021-45046"] is None


def test_suppression_survives_an_upgrade_scan_of_the_same_repository(shop_db, tmp_path):
    """Keyed by repository + advisory + package name, not version: log4j-core 2.15.0 still has CVE-2021-45046."""
    db = shop_db
    assert stowaway("ignore", "add", "--image", "corpus/shop", "--id", "CVE-2021-45046", "--package", LOG4J,
                    "--reason", "accepted until 2.17", "--db", db)[0] == 0
    shop("2.15.0").write_oci_layout(tmp_path / "v2", ref="corpus/shop:2.0")
    assert stowaway("scan", f"oci:{tmp_path / 'v2'}", "--db", db, "--no-progress")[0] == 0
    assert suppressed_ids(db, "corpus/shop:2.0") == {"CVE-2021-45046": True}
    fps = sqlite3.connect(db).execute(
        "SELECT DISTINCT f.fingerprint FROM findings f JOIN vulnerability_details d ON d.finding_id = f.id"
        " WHERE d.vulnerability_id = 'CVE-2021-45046'").fetchall()
    assert len(fps) == 1  # one finding across the two versions: the same fingerprint


def test_datasette_ignore_stays_suppressed_after_rescan(shop_db):
    from datasette.app import Datasette

    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "datasette_plugin"))
    from plugin_fixtures import ROOT, post_form

    db = shop_db
    fid = sqlite3.connect(db).execute(
        "SELECT f.id FROM findings f JOIN vulnerability_details d ON d.finding_id = f.id JOIN images i"
        " ON i.last_scan_id = f.scan_id WHERE d.vulnerability_id = 'CVE-2021-45046'").fetchone()[0]
    ds = Datasette(files=[db])
    got = asyncio.run(post_form(ds, "/-/stowaway/image/1", f"/-/stowaway/finding/{fid}/ignore",
                                {"ignored": "1", "reason": "mitigated by WAF", "next": "/-/stowaway/image/1"},
                                actor=ROOT))
    assert got.status_code == 302, got.text[:300]
    row = sqlite3.connect(db).execute("SELECT reason, author, source, repository, tag FROM suppressions").fetchone()
    assert row == ("mitigated by WAF", "root", "datasette", "corpus/shop", "1.0")
    assert stowaway("rescan", REF, "--db", db)[0] == 0
    assert suppressed_ids(db)["CVE-2021-45046"] is True
    page = asyncio.run(Datasette(files=[db]).client.get("/-/stowaway/image/1?tab=vulnerabilities")).text
    assert "mitigated by WAF" in page
    # un-ignoring removes the suppression: back on the next read, no rescan needed
    fid = sqlite3.connect(db).execute(
        "SELECT f.id FROM findings f JOIN vulnerability_details d ON d.finding_id = f.id JOIN images i"
        " ON i.last_scan_id = f.scan_id WHERE d.vulnerability_id = 'CVE-2021-45046'").fetchone()[0]
    ds = Datasette(files=[db])
    got = asyncio.run(post_form(ds, "/-/stowaway/image/1", f"/-/stowaway/finding/{fid}/ignore",
                                {"ignored": "0", "next": "/-/stowaway/image/1"}, actor=ROOT))
    assert got.status_code == 302
    assert suppressed_ids(db)["CVE-2021-45046"] is False


def test_trivyignore_via_rematch_stays_after_rescan(shop_db, tmp_path):
    db = shop_db
    ignore = tmp_path / ".trivyignore"
    ignore.write_text("# accepted\nCVE-2021-44228   # patched class removed\nCVE-2000-0001 exp:2000-01-01\n")
    assert stowaway("rematch", "--db", db, "--ignore-file", ignore, "--no-progress")[0] == 0
    assert suppressed_ids(db)["CVE-2021-44228"] is True
    ignore.unlink()
    assert stowaway("rescan", REF, "--db", db)[0] == 0
    assert stowaway("rematch", "--db", db, "--no-progress")[0] == 0
    rep = report(db)
    assert {v["id"]: v.get("suppressed_reason") for v in rep["vulnerabilities"] if v["suppressed"]} == \
        {"CVE-2021-44228": "patched class removed"}


def test_expired_suppressions_stop_applying(shop_db):
    db = shop_db
    assert stowaway("ignore", "add", "--everywhere", "--id", "CVE-2021-44228", "--reason", "was fine",
                    "--expires", "2001-01-01", "--db", db)[0] == 0
    assert suppressed_ids(db)["CVE-2021-44228"] is False
    code, text = stowaway("ignore", "list", "--format", "json", "--db", db)
    assert [(s["rule"], s["active"], s["scope"]) for s in json.loads(text)] == [("CVE-2021-44228", False, "everywhere")]
    assert stowaway("ignore", "add", "--everywhere", "--id", "CVE-2021-44228", "--reason", "fine until 2999",
                    "--expires", "2999-01-01", "--db", db)[0] == 0
    assert suppressed_ids(db)["CVE-2021-44228"] is True
    assert stowaway("ignore", "add", "--everywhere", "--id", "X", "--reason", "r", "--expires", "soon",
                    "--db", db)[0] == 2


def test_an_expiry_that_passes_takes_effect_on_read_only_commands(shop_db):
    """The day a suppression's expiry passes, `report` and `images` (read-only commands a CI gate runs)
    stop honouring it, without a rescan or any `stowaway ignore` command in between."""
    db = shop_db
    assert stowaway("ignore", "add", "--everywhere", "--id", "CVE-2021-44228", "--reason", "until the fix",
                    "--expires", "2999-01-01", "--db", db)[0] == 0
    assert suppressed_ids(db)["CVE-2021-44228"] is True
    suppressed_count = cli_counts(db)[REF]
    with sqlite3.connect(db) as conn:  # time passes: the expiry is now in the past
        conn.execute("UPDATE suppressions SET expires = '2001-01-01' WHERE rule = 'CVE-2021-44228'")
    conn.close()
    assert suppressed_ids(db)["CVE-2021-44228"] is False
    assert cli_counts(db)[REF] != suppressed_count
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM findings WHERE suppressed = 1 AND suppression_id ="
                            " (SELECT id FROM suppressions WHERE rule = 'CVE-2021-44228')").fetchone()[0] == 0
    conn.close()


def test_openvex_import_and_export(shop_db, tmp_path):
    db = shop_db
    vex = {"@context": "https://openvex.dev/ns/v0.2.0", "@id": "https://example.com/vex/1", "author": "sec team",
           "timestamp": "2024-01-01T00:00:00Z", "version": 1, "statements": [
               {"vulnerability": {"name": "CVE-2021-45046"}, "status": "not_affected",
                "justification": "vulnerable_code_not_in_execute_path",
                "products": [{"@id": "pkg:oci/shop?repository_url=corpus/shop&tag=1.0",
                              "subcomponents": [{"@id": "pkg:maven/org.apache.logging.log4j/log4j-core@2.14.1"}]}]},
               {"vulnerability": {"name": "CVE-2021-44228"}, "status": "affected", "action_statement": "upgrade"},
               {"vulnerability": {"name": "CVE-2021-44228"}, "status": "not_affected",
                "impact_statement": "not this one", "products": [{"@id": "pkg:oci/other?repository_url=corp/other"}]}]}
    (tmp_path / "vex.json").write_text(json.dumps(vex))
    assert stowaway("ignore", "import", tmp_path / "vex.json", "--db", db)[0] == 0
    assert suppressed_ids(db) == {"CVE-2021-44228": False, "CVE-2021-45046": True}
    row = sqlite3.connect(db).execute("SELECT rule, package, repository, tag, reason, author FROM suppressions"
                                      " WHERE rule = 'CVE-2021-45046'").fetchone()
    assert row == ("CVE-2021-45046", LOG4J, "corpus/shop", "1.0", "vulnerable_code_not_in_execute_path", "sec team")
    code, text = stowaway("ignore", "export", "--format", "openvex", "--db", db)
    doc = json.loads(text)
    assert doc["@context"] == "https://openvex.dev/ns/v0.2.0" and {"@id", "author", "timestamp", "version"} <= set(doc)
    st = {s["vulnerability"]["name"]: s for s in doc["statements"]}
    assert st["CVE-2021-45046"]["status"] == "not_affected"
    assert "justification" not in st["CVE-2021-45046"] and st["CVE-2021-45046"]["impact_statement"]
    assert st["CVE-2021-45046"]["products"][0]["@id"] == "pkg:oci/shop?repository_url=corpus/shop&tag=1.0"
    # what was exported comes back as the same suppressions in another database
    other = tmp_path / "other.db"
    (tmp_path / "out.json").write_text(text)
    assert stowaway("ignore", "import", tmp_path / "out.json", "--db", other)[0] == 0
    got = sqlite3.connect(other).execute("SELECT rule, repository, tag FROM suppressions ORDER BY rule").fetchall()
    assert got == [("CVE-2021-44228", "corp/other", ""), ("CVE-2021-45046", "corpus/shop", "1.0")]


def test_structured_ignore_file_import_scopes_by_image_and_path(shop_db, tmp_path):
    db = shop_db
    (tmp_path / "ignore.yaml").write_text(
        "vulnerabilities:\n  - id: CVE-2021-44228\n    images: ['corpus/*']\n    paths: ['/opt/shop/lib/*.jar']\n"
        "    reason: vendored copy, unused\n  - id: CVE-2021-45046\n    images: ['elsewhere/*']\n")
    assert stowaway("ignore", "import", tmp_path / "ignore.yaml", "--db", db)[0] == 0
    assert suppressed_ids(db) == {"CVE-2021-44228": True, "CVE-2021-45046": False}


def test_secret_and_check_suppressions_by_rule_and_path(shop_db):
    db = shop_db
    rep = report(db)
    secret = rep["sensitive_information"][0]
    failing_check = next(s for s in rep["unsafe_settings"] if s["result"] == "fail")
    assert stowaway("ignore", "add", "--image", REF, "--id", secret["rule"], "--path", secret["path"],
                    "--reason", "test fixture token", "--db", db)[0] == 0
    assert stowaway("ignore", "add", "--image", REF, "--id", failing_check["check_id"], "--kind", "unsafe_setting",
                    "--reason", "bastion host", "--db", db)[0] == 0
    rep = report(db)
    assert all(s["suppressed"] for s in rep["sensitive_information"])
    assert [s["suppressed"] for s in rep["unsafe_settings"] if s["check_id"] == failing_check["check_id"]] == [True]
    assert rep["counts"]["suppressed"].get("secret") and rep["counts"]["suppressed"].get("unsafe_setting")
    assert stowaway("ignore", "remove", "99", "--db", db)[0] == 2


def test_old_ignored_findings_become_suppressions(tmp_path):
    """A database of the previous schema (v2) with a finding ignored in Datasette: the migration turns the
    ignore into a suppression of the image's repository and tag, and the finding stays suppressed."""
    from stowaway.ingest import db as dbm

    path = str(tmp_path / "old.db")
    conn = sqlite3.connect(path)
    for version, script in enumerate(dbm.MIGRATIONS[:2], start=1):
        conn.executescript(script)
        conn.execute(f"PRAGMA user_version={version}")
    conn.execute("INSERT INTO images (id, reference, repository, tag, manifest_digest, last_scan_id)"
                 " VALUES (1, 'corp/app:1', 'corp/app', '1', 'sha256:aa', 1)")
    conn.execute("INSERT INTO scans (id, image_id, status) VALUES (1, 1, 'done')")
    conn.execute("INSERT INTO findings (id, scan_id, image_id, kind, severity, severity_rank, rule, status, ignored,"
                 " ignore_reason) VALUES (1, 1, 1, 'vulnerability', 'high', 1, 'CVE-1', 'fail', 1, 'accepted')")
    conn.execute("INSERT INTO vulnerability_details (finding_id, vulnerability_id, package_name) VALUES (1, 'CVE-1', 'x')")
    conn.commit()
    conn.close()
    database = dbm.connect(path)
    assert database.execute("SELECT rule, package, repository, tag, reason FROM suppressions").fetchall() == [
        ("CVE-1", "x", "corp/app", "1", "accepted")]
    assert database.execute("SELECT suppressed, suppressed_reason FROM findings").fetchone() == (1, "accepted")
    assert database.execute("SELECT vulnerabilities, suppressed FROM image_overview").fetchone() == (0, 1)


@corpus
def test_corpus_shop_suppression_holds_through_rescan_and_rematch(tmp_path_factory, tmp_path):
    """The issue's own example on the public corpus: CVE-2021-44228 in corpus/shop, found by the real
    matcher from ../shared/feeds/osv, suppressed for the repository, then rescan and rematch."""
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "datasette_plugin"))
    from plugin_fixtures import corpus_db_path

    src = sqlite3.connect(corpus_db_path(tmp_path_factory))
    db = str(tmp_path / "corpus.db")
    dst = sqlite3.connect(db)
    src.backup(dst)
    dst.close()
    ref = "corpus/shop:1.0"
    assert stowaway("ignore", "add", "--image", "corpus/shop", "--id", "CVE-2021-44228", "--reason",
                    "accepted: lookups disabled", "--db", db)[0] == 0
    for step in (("rescan", ref), ("rematch", "--no-progress")):
        assert stowaway(*step, "--db", db)[0] == 0, step
        rep = report(db, ref)
        hits = [v for v in rep["vulnerabilities"] if v["id"] == "CVE-2021-44228"
                or "CVE-2021-44228" in (v.get("aliases") or [])]
        assert hits and all(v["suppressed"] and v["suppressed_reason"] == "accepted: lookups disabled" for v in hits)
        assert rep["counts"]["suppressed"]["vulnerability"]
        assert cli_counts(db)[ref] == rep["counts"]
        page = {i["reference"]: i for i in datasette_get(db, "/-/stowaway/images.json?size=1000").json()["images"]}
        assert page[ref]["counts"] == rep["counts"]
        name = pathlib.Path(db).stem
        sarif = json.loads(datasette_get(db, f"/{name}/vulnerabilities_view.sarif?image={ref}").text)
        rules = {r["ruleId"] for r in sarif["runs"][0]["results"]}
        assert rules and "CVE-2021-44228" not in rules
