"""Re-evaluation of stored images from their stored inventories, without opening any image."""
import json
import shutil

from conftest import report_of
from imagebuilder import ImageBuilder
from osv_fixtures import CRITICAL, osv
from test_evaluator import ADVISORIES, shop_image

from stowaway.analyzers.vulnerabilities.importer import import_records
from stowaway.analyzers.vulnerabilities.rematch import rematch
from stowaway.ingest import cli


def _ids(database, ref="demo/shop:1"):
    return sorted(v["id"] for v in report_of(database, ref)["vulnerabilities"])


def test_import_then_rematch_finds_without_reading_the_image(tmp_path, scan):
    shop_image().write_oci_layout(tmp_path / "oci", ref="demo/shop:1")
    database, outcomes = scan(f"oci:{tmp_path / 'oci'}")
    assert _ids(database) == []
    shutil.rmtree(tmp_path / "oci")  # nothing of the image is left to read

    import_records(database, ADVISORIES)
    result = rematch(database)
    assert (result.images, result.findings) == (1, 5)
    assert _ids(database) == ["CVE-2019-10906", "CVE-2021-23337", "CVE-2023-0001", "CVE-2023-0002", "GHSA-nocve"]
    rep = report_of(database, "demo/shop:1")
    assert {s["name"]: s["vulnerability_count"] for s in rep["software"]}["lodash"] == 2
    assert database.execute("SELECT feed_version FROM scans").fetchone()[0]
    facts = dict(database.execute("SELECT name, value FROM scan_facts WHERE name='vulnerabilities_rematched'"))
    assert json.loads(facts["vulnerabilities_rematched"])["findings"] == 5

    # a newer record narrows lodash's range: the finding goes, and a second rematch changes nothing
    import_records(database, [osv("GHSA-llll", "npm", "lodash", [{"introduced": "0"}, {"fixed": "4.17.12"}],
                                  aliases=["CVE-2021-23337"], modified="2025-01-01T00:00:00Z")])
    rematch(database)
    rematch(database)
    assert "CVE-2021-23337" not in _ids(database)
    assert database.execute("SELECT COUNT(*) FROM findings WHERE kind='vulnerability'").fetchone()[0] == 4
    assert database.execute("SELECT COUNT(*) FROM vulnerability_details").fetchone()[0] == 4
    assert {s["name"]: s["vulnerability_count"] for s in report_of(database, "demo/shop:1")["software"]}["lodash"] == 1


def test_only_the_latest_scan_of_each_image_is_rewritten(tmp_path, scan):
    shop_image().write_oci_layout(tmp_path / "oci", ref="demo/shop:1")
    database, first = scan(f"oci:{tmp_path / 'oci'}")
    import_records(database, ADVISORIES)
    database, second = scan(f"oci:{tmp_path / 'oci'}")
    import_records(database, [osv("GHSA-new", "npm", "lodash", [{"introduced": "0"}], aliases=["CVE-2099-0001"])])
    rematch(database)
    per_scan = dict(database.execute("SELECT scan_id, COUNT(*) FROM findings WHERE kind='vulnerability'"
                                     " GROUP BY scan_id"))
    assert per_scan == {second[0].scan_id: 6}  # the first scan had no advisories and stays as it was


def test_rematch_cli_with_a_plain_ignore_file(tmp_path, scan, capsys):
    shop_image().write_oci_layout(tmp_path / "oci", ref="demo/shop:1")
    database, _ = scan(f"oci:{tmp_path / 'oci'}")
    feed = tmp_path / "feed"
    feed.mkdir()
    for rec in ADVISORIES:
        (feed / f"{rec['id']}.json").write_text(json.dumps(rec))
    ignore = tmp_path / ".trivyignore"
    ignore.write_text("# accepted\nCVE-2023-0002   # curl: not reachable\nGHSA-nocve exp:2000-01-01\n")
    db_path = str(tmp_path / "scan.db")
    assert cli.main(["db", "import", str(feed), "--db", db_path, "--rematch", "--ignore-file", str(ignore)]) == 0
    err = capsys.readouterr().err
    assert "11 new" in err and "re-evaluated 1 images" in err and "1 ignored" in err and "expired" in err
    ignored = {v["id"]: v["ignored"] for v in report_of(database, "demo/shop:1")["vulnerabilities"]}
    assert ignored["CVE-2023-0002"] is True and ignored["GHSA-nocve"] is False
    reason = database.execute("SELECT ignore_reason FROM findings WHERE ignored=1").fetchone()[0]
    assert reason == "curl: not reachable"
    assert {s["name"]: s["vulnerability_count"] for s in report_of(database, "demo/shop:1")["software"]}["curl"] == 0

    # the file fed the findings store: the suppression holds through a rematch without it, a rescan
    # (test_suppressions.py), until it is removed
    assert cli.main(["rematch", "--db", db_path]) == 0
    assert [v["id"] for v in report_of(database, "demo/shop:1")["vulnerabilities"] if v["suppressed"]] == \
        ["CVE-2023-0002"]
    sid = database.execute("SELECT id FROM suppressions WHERE rule = 'CVE-2023-0002'").fetchone()[0]
    assert cli.main(["ignore", "remove", str(sid), "--db", db_path]) == 0
    assert not any(v["ignored"] for v in report_of(database, "demo/shop:1")["vulnerabilities"])
    assert {s["name"]: s["vulnerability_count"] for s in report_of(database, "demo/shop:1")["software"]}["curl"] == 1
    assert cli.main(["rematch", "--db", str(tmp_path / "missing.db")]) == 2


def test_rematch_rewrites_only_what_changed(tmp_path, scan):
    shop_image().write_oci_layout(tmp_path / "oci", ref="demo/shop:1")
    import_records(connect_db(tmp_path), ADVISORIES)
    database, _ = scan(f"oci:{tmp_path / 'oci'}")  # findings written by the scan itself
    ids_before = dict(database.execute("SELECT d.vulnerability_id, f.id FROM findings f JOIN vulnerability_details d"
                                       " ON d.finding_id = f.id"))
    first = rematch(database)
    assert (first.inserted, first.deleted) == (0, 0)  # the scan and the rematch agree on every finding
    # a new fixed version for lodash: that finding alone is rewritten, the others keep their rows
    import_records(database, [osv("GHSA-llll", "npm", "lodash", [{"introduced": "0"}, {"fixed": "4.17.20"}],
                                  aliases=["CVE-2021-23337"], modified="2025-01-01T00:00:00Z")])
    second = rematch(database)
    assert (second.inserted, second.deleted, second.changed_images) == (1, 1, 1)
    ids_after = dict(database.execute("SELECT d.vulnerability_id, f.id FROM findings f JOIN vulnerability_details d"
                                      " ON d.finding_id = f.id"))
    assert ids_after.keys() == ids_before.keys()
    assert {k for k in ids_after if ids_after[k] != ids_before[k]} == {"CVE-2021-23337"}
    fixed = [v["fixed_version"] for v in report_of(database, "demo/shop:1")["vulnerabilities"] if v["id"] == "CVE-2021-23337"]
    assert fixed == ["4.17.20"]
    third = rematch(database)
    assert (third.inserted, third.deleted, third.changed_images) == (0, 0, 0)


def connect_db(tmp_path):
    from stowaway.ingest.db import connect

    return connect(str(tmp_path / "scan.db"))


def test_db_status_and_bad_paths(tmp_path, capsys):
    db_path = str(tmp_path / "v.db")
    feed = tmp_path / "feed.json"
    feed.write_text(json.dumps(ADVISORIES))
    assert cli.main(["db", "import", str(feed), "--db", db_path]) == 0
    capsys.readouterr()
    assert cli.main(["db", "status", "--db", db_path]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split() == ["ECOSYSTEM", "ADVISORIES", "ENTRIES", "NEWEST", "MODIFIED"]
    assert "Debian:11" in out and "PyPI" in out
    imports = [line.split() for line in lines if line.startswith("IMPORT") or line[:1].isdigit()]
    assert imports[0][:2] == ["IMPORT", "KIND"] and imports[1][3:6] == ["11", "11", "0"]
    assert cli.main(["db", "import", str(tmp_path / "nope"), "--db", db_path]) == 2
    assert capsys.readouterr().err.strip() == f"stowaway: {tmp_path / 'nope'}: no such file or directory"


def _finding_ids(database):
    return dict(database.execute("SELECT d.vulnerability_id, f.id FROM findings f JOIN vulnerability_details d"
                                 " ON d.finding_id = f.id"))


def test_an_image_matched_against_the_current_store_is_not_evaluated_again(tmp_path, scan, monkeypatch):
    from stowaway.analyzers.vulnerabilities import nvd
    from stowaway.analyzers.vulnerabilities.evaluator import Evaluation
    from stowaway.analyzers.vulnerabilities.rematch import feed_marker

    shop_image().write_oci_layout(tmp_path / "oci", ref="demo/shop:1")
    database, _ = scan(f"oci:{tmp_path / 'oci'}")
    import_records(database, ADVISORIES)
    seen: set = set()  # (rematch, image): fan-out evaluates an image's packages one by one
    real = Evaluation.evaluate_targets

    class Evaluated:
        def __len__(self):
            return len(seen)

    evaluated = Evaluated()

    def counting(self, items, *args, **kw):
        if not hasattr(self, "round_"):
            self.round_ = len({r for r, _ in seen}) + 1  # one Evaluation per rematch
        seen.add((self.round_, args[2] if len(args) > 2 else kw.get("image")))
        return real(self, items, *args, **kw)

    monkeypatch.setattr(Evaluation, "evaluate_targets", counting)
    first = rematch(database)
    assert (first.images, first.current, first.findings, len(evaluated)) == (1, 0, 5, 1)
    ids = _finding_ids(database)

    # the same store: nothing to evaluate, the findings and their counts reported as they are
    second = rematch(database)
    assert (second.images, second.current, second.findings, second.changed_images, len(evaluated)) == (1, 1, 5, 0, 1)
    assert "re-evaluated 0 of 1 images (the other 1 were matched against this advisory store already" in second.summary()
    assert _finding_ids(database) == ids

    # --all evaluates anyway (a repair), and finds the same
    assert rematch(database, all_images=True).current == 0 and len(evaluated) == 2
    assert _finding_ids(database) == ids

    # an import that names none of its packages still moves the store: evaluated, nothing rewritten, and
    # the scan's feed_version follows
    import_records(database, [osv("GHSA-other", "npm", "left-pad", [{"introduced": "0"}], aliases=["CVE-2099-0002"])])
    third = rematch(database)
    assert (third.current, third.inserted, third.deleted, len(evaluated)) == (0, 0, 0, 3)
    assert database.execute("SELECT feed_version FROM scans WHERE image_id IS NOT NULL ORDER BY id DESC"
                            ).fetchone()[0] == feed_marker(database.conn)
    assert _finding_ids(database) == ids

    # NVD's API download writes its table without an import: that moves the marker too
    with database.conn:
        nvd.store_rows(database.conn, [nvd.row_of({"id": "CVE-2099-0003", "lastModified": "2025-01-01T00:00:00"},
                                                  "2025-01-02T00:00:00Z")])
    assert rematch(database).current == 0 and len(evaluated) == 4


def _state(database) -> dict:
    """What a rematch decides, per image, without row ids or times: findings with their content, package
    counts, coverage and fixes (as a set: partial evaluation appends), and the report rows' counts."""
    conn = database.conn
    out: dict = {}
    for image_id, ref in conn.execute("SELECT id, reference FROM images"):
        scan_id = conn.execute("SELECT last_scan_id FROM images WHERE id = ?", [image_id]).fetchone()[0]
        facts = dict(conn.execute("SELECT name, value FROM scan_facts WHERE scan_id = ?", [scan_id]))
        out[ref] = {
            "findings": sorted(conn.execute(
                "SELECT f.title, f.severity, f.suppressed, f.fingerprint, p.name, d.content_hash, d.fixed_version,"
                " d.aliases, d.matched_by FROM findings f JOIN vulnerability_details d ON d.finding_id = f.id"
                " LEFT JOIN packages p ON p.id = f.package_id WHERE f.scan_id = ?", [scan_id])),
            "counts": sorted(conn.execute("SELECT name, vulnerability_count FROM packages WHERE scan_id = ?", [scan_id])),
            "coverage": json.loads(facts["vulnerability_coverage"]),
            "fixes": sorted(json.dumps(f, sort_keys=True) for f in json.loads(facts["vulnerability_fixes"])),
            "total": json.loads(facts["vulnerabilities_rematched"])["findings"],
            "overview": conn.execute("SELECT vulnerabilities, critical, high, suppressed FROM image_overview"
                                     " WHERE id = ?", [image_id]).fetchone(),
            "rows": sorted(conn.execute("SELECT vulnerability_id, package, severity, fixed_version FROM"
                                        " vulnerabilities_view WHERE image_id = ?", [image_id])),
        }
    return out


def test_after_an_update_only_the_packages_changed_records_name_are_evaluated(tmp_path, scan, monkeypatch):
    """After an import, rematch evaluates only the packages whose records changed (or share a name with one
    that did); an image without any is not rewritten but moves to the new feed; the result equals a full
    rematch."""
    from test_evaluator import OS_RELEASE, metadata, status

    from stowaway.analyzers.vulnerabilities.evaluator import Evaluation
    from stowaway.analyzers.vulnerabilities.rematch import feed_marker

    shop_image().write_oci_layout(tmp_path / "a", ref="demo/shop:1")
    plain = ImageBuilder()  # the same distribution and Jinja2, no lodash
    plain.layer({"etc/os-release": OS_RELEASE, "var/lib/dpkg/status": status(("curl", "7.74.0-1.3+deb11u1"))})
    plain.layer({"usr/local/lib/python3.9/site-packages/Jinja2-2.10.dist-info/METADATA": metadata("Jinja2", "2.10")})
    plain.write_oci_layout(tmp_path / "b", ref="demo/plain:1")
    scan(f"oci:{tmp_path / 'a'}")
    database, _ = scan(f"oci:{tmp_path / 'b'}")
    import_records(database, ADVISORIES)
    rematch(database)
    ref_of = dict(database.execute("SELECT s.id, i.reference FROM images i JOIN scans s ON s.id = i.last_scan_id"))
    ids_before = {r: _finding_ids_of(database, r) for r in ref_of.values()}
    evaluated: dict[str, list] = {}
    real = Evaluation.evaluate_targets

    def recording(self, items, family, version, image="", *args):
        evaluated[image] = sorted(p.name for p, _ in items)
        return real(self, items, family, version, image, *args)

    monkeypatch.setattr(Evaluation, "evaluate_targets", recording)

    # lodash's record gets a later fix and lodash a new record: only demo/shop:1 has lodash
    import_records(database, [osv("GHSA-llll", "npm", "lodash", [{"introduced": "0"}, {"fixed": "4.17.20"}],
                                  aliases=["CVE-2021-23337"], modified="2025-01-01T00:00:00Z"),
                              osv("GHSA-new1", "npm", "lodash", [{"introduced": "0"}], aliases=["CVE-2099-0101"])])
    result = rematch(database)
    assert evaluated == {"demo/shop:1": ["lodash"], "demo/plain:1": []}
    assert (result.inserted, result.deleted, result.findings) == (2, 1, 8)
    marker = feed_marker(database.conn)
    assert {r[0] for r in database.execute("SELECT s.feed_version FROM images i JOIN scans s ON s.id = i.last_scan_id")
            } == {marker}
    assert _finding_ids_of(database, "demo/plain:1") == ids_before["demo/plain:1"]  # not rewritten
    shop_now = _finding_ids_of(database, "demo/shop:1")
    assert {k for k in shop_now if shop_now[k] != ids_before["demo/shop:1"].get(k)} == {"CVE-2021-23337",
                                                                                         "CVE-2099-0101"}
    partial = _state(database)
    rematch(database, all_images=True)
    assert _state(database) == partial

    # a record of another package naming curl's CVE (curl's own record carries no severity): curl is
    # evaluated again in both images, and takes that record's severity
    evaluated.clear()
    import_records(database, [osv("GHSA-curl", "PyPI", "pycurl-unrelated", [{"introduced": "0"}],
                                  aliases=["CVE-2023-0002"], severity=CRITICAL)])
    rematch(database)
    assert evaluated == {"demo/shop:1": ["curl"], "demo/plain:1": ["curl"]}
    partial = _state(database)
    assert any("CVE-2023-0002" in f[0] and f[1] == "critical" for f in partial["demo/plain:1"]["findings"])
    rematch(database, all_images=True)
    assert _state(database) == partial


def _finding_ids_of(database, ref):
    return dict(database.execute(
        "SELECT d.vulnerability_id, f.id FROM findings f JOIN vulnerability_details d ON d.finding_id = f.id"
        " JOIN images i ON i.last_scan_id = f.scan_id WHERE i.reference = ?", [ref]))
