"""Records and versions that used to blind or crash matching: YAML timestamps and withdrawals, alias
bombs, unparsable listed versions and 5,000-digit numbers (issues 14 and 15)."""
import json

from osv_fixtures import osv

from stowaway.analyzers.vulnerabilities.evaluator import Evaluation
from stowaway.analyzers.vulnerabilities.importer import import_paths, import_records
from stowaway.analyzers.vulnerabilities.matchers import Matcher
from stowaway.analyzers.vulnerabilities.rematch import rematch
from stowaway.ingest import cli
from stowaway.ingest.model import Package

YAML_RECORD = """\
id: PYSEC-2022-43055
modified: {modified}
published: 2022-09-01T10:00:00Z
{withdrawn}aliases: [CVE-2022-9999]
affected:
- package: {{ecosystem: PyPI, name: demo-lib}}
  ranges:
  - type: ECOSYSTEM
    events: [{{introduced: '0'}}, {{fixed: '{fixed}'}}]
"""


def _yaml(path, modified, fixed, withdrawn=""):
    path.write_text(YAML_RECORD.format(modified=modified, fixed=fixed, withdrawn=withdrawn))
    return path


def _ids(db, packages):
    return sorted(f.detail["vulnerability_id"] for f in Evaluation(Matcher(db.conn)).evaluate(packages, "", ""))


LIB = Package("pypi", "demo-lib", "1.5", "/site-packages/demo_lib-1.5.dist-info/METADATA", 1)


def test_yaml_timestamps_are_kept_and_a_newer_record_replaces_the_old(db, tmp_path):
    path = _yaml(tmp_path / "PYSEC-2022-43055.yaml", "2022-10-01T00:00:00Z", "1.2")
    assert import_paths(db, [str(path)]).inserted == 1
    stored = db.execute("SELECT modified, published FROM advisories").fetchone()
    assert stored == ("2022-10-01T00:00:00.000000Z", "2022-09-01T10:00:00.000000Z")
    assert _ids(db, [LIB]) == []  # 1.5 is above the fix

    # the correction: a newer unquoted time (an offset this time) widens the range
    _yaml(path, "2022-10-02T02:00:00+02:00", "2.0")
    result = import_paths(db, [str(path)])
    assert (result.updated, result.unchanged) == (1, 0)
    assert _ids(db, [LIB]) == ["CVE-2022-9999"]
    # the same file again changes nothing
    assert import_paths(db, [str(path)]).unchanged == 1


def test_withdrawn_record_is_not_matched_and_status_counts_it(db, tmp_path, capsys):
    path = _yaml(tmp_path / "PYSEC-2022-43055.yaml", "2022-10-01T00:00:00Z", "2.0")
    import_paths(db, [str(path)])
    assert _ids(db, [LIB]) == ["CVE-2022-9999"]
    _yaml(path, "2022-11-01T00:00:00Z", "2.0", withdrawn="withdrawn: 2022-11-01T00:00:00Z\n")
    assert import_paths(db, [str(path)]).updated == 1
    assert db.execute("SELECT withdrawn FROM advisories").fetchone()[0] == "2022-11-01T00:00:00.000000Z"
    assert _ids(db, [LIB]) == []
    db_path = db.execute("PRAGMA database_list").fetchone()[2]
    assert cli.main(["db", "status", "--db", db_path]) == 0
    out = capsys.readouterr().out
    assert "withdrawn records (stored, never matched): 1" in out
    assert "KEV: none imported (its flags read 'unknown')" in out


def test_yaml_alias_bomb_fails_that_file_only_with_one_line(db, tmp_path, capsys):
    bomb = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    # 9**7 strings once expanded (small enough that a regression fails the test instead of hanging it);
    # the real attack nests a dozen levels
    for i in range(1, 7):
        bomb.append(f"{chr(97 + i)}: &{chr(97 + i)} [{','.join(['*' + chr(96 + i)] * 9)}]")
    bomb.append("id: BOMB-1\nmodified: 2024-01-01T00:00:00Z\nseverity: *g\ndetails: x\naffected:\n"
                "- package: {ecosystem: PyPI, name: x}\n  versions: ['1.0']")
    (tmp_path / "feed").mkdir()
    (tmp_path / "feed" / "BOMB-1.yaml").write_text("\n".join(bomb) + "\n")
    _yaml(tmp_path / "feed" / "PYSEC-2022-43055.yaml", "2022-10-01T00:00:00Z", "2.0")
    db_path = db.execute("PRAGMA database_list").fetchone()[2]
    assert cli.main(["db", "import", str(tmp_path / "feed"), "--db", db_path]) == 0
    err = capsys.readouterr().err
    assert "Traceback" not in err and "MemoryError" not in err
    lines = [line for line in err.splitlines() if "BOMB-1.yaml" in line]
    assert len(lines) == 1 and "YAML aliases (*name) are not accepted" in lines[0]
    assert [r[0] for r in db.execute("SELECT id FROM advisories")] == ["PYSEC-2022-43055"]


def test_an_unparsable_installed_version_is_still_found_in_the_listed_versions(db):
    # PyPA's paramiko record lists '0.1-bulbasaur', which PEP 440 cannot read
    import_records(db, [osv("PYSEC-2018-1", "PyPI", "paramiko", [{"introduced": "0"}, {"fixed": "1.17.6"}],
                            versions=["0.1-bulbasaur", "1.17.5"], aliases=["CVE-2018-7750"])])
    ev = Evaluation(Matcher(db.conn))
    got = ev.evaluate([Package("pypi", "paramiko", "0.1-bulbasaur", "/p/METADATA", 0)], "", "")
    assert [f.detail["vulnerability_id"] for f in got] == ["CVE-2018-7750"]
    assert got[0].detail["matched_by"][0]["range"] == "listed in versions"
    assert any("checked against listed versions only" in w for w in ev.matcher.warnings)
    # an unlisted unreadable version is a warning, not a match
    ev2 = Evaluation(Matcher(db.conn))
    assert ev2.evaluate([Package("pypi", "paramiko", "0.2-pikachu", "/p/METADATA", 0)], "", "") == []


HUGE = "1." + "9" * 5000


def test_a_5000_digit_version_hides_no_other_vulnerability(db, tmp_path, scan):
    records = [
        osv("GHSA-huge-event", "PyPI", "victim", [{"introduced": "0"}, {"fixed": HUGE}], aliases=["CVE-2024-0001"]),
        osv("GHSA-ok-event", "PyPI", "victim", [{"introduced": "0"}, {"fixed": "3.0"}], aliases=["CVE-2024-0002"]),
        osv("GHSA-other", "npm", "lodash", [{"introduced": "0"}, {"fixed": "4.17.21"}], aliases=["CVE-2024-0003"]),
        osv("GHSA-deb", "Debian:11", "openssl", [{"introduced": "0"}, {"fixed": "1:" + "9" * 5000}],
            aliases=["CVE-2024-0004"]),
    ]
    import_records(db, records)
    pkgs = [Package("pypi", "victim", "2.0", "/v/METADATA", 0),
            Package("pypi", "victim", HUGE, "/w/METADATA", 0),
            Package("npm", "lodash", "4.17.15", "/n/package.json", 0),
            Package("npm", "lodash", "4." + "1" * 5000, "/m/package.json", 0),
            Package("deb", "libssl1.1", "1." + "9" * 5000, "/var/lib/dpkg/status", 0, source_name="openssl")]
    ev = Evaluation(Matcher(db.conn))
    got = ev.evaluate(pkgs, "debian", "11")
    assert sorted({f.detail["vulnerability_id"] for f in got}) == ["CVE-2024-0002", "CVE-2024-0003"]
    warnings = " ".join(list(ev.warnings) + list(ev.matcher.warnings))
    assert "5,002 characters" in warnings and "victim" in warnings


def test_rematch_survives_huge_versions_in_the_database(tmp_path, scan):
    from imagebuilder import ImageBuilder

    img = ImageBuilder()
    img.layer({"usr/lib/python3/site-packages/victim-9.dist-info/METADATA":
               f"Metadata-Version: 2.1\nName: victim\nVersion: {HUGE}\n",
               "usr/lib/python3/site-packages/other-1.0.dist-info/METADATA":
               "Metadata-Version: 2.1\nName: other\nVersion: 1.0\n"})
    img.write_oci_layout(tmp_path / "oci", ref="demo/huge:1")
    database, outcomes = scan(f"oci:{tmp_path / 'oci'}")
    assert outcomes[0].status == "done"
    import_records(database, [osv("GHSA-a", "PyPI", "victim", [{"introduced": "0"}, {"fixed": "2.0"}]),
                              osv("GHSA-b", "PyPI", "other", [{"introduced": "0"}, {"fixed": HUGE}],
                                  aliases=["CVE-2024-0010"]),
                              osv("GHSA-c", "PyPI", "other", [{"introduced": "0"}, {"fixed": "1.1"}],
                                  aliases=["CVE-2024-0011"])])
    result = rematch(database)
    assert result.images == 1 and result.findings == 1
    assert json.dumps(result.summary())


def test_a_field_of_an_impossible_type_skips_that_record_only(db, tmp_path):
    # YAML makes a date of an unquoted value inside `severity`: that record is skipped, its neighbour imported
    (tmp_path / "feed").mkdir()
    (tmp_path / "feed" / "BAD-1.yaml").write_text(
        "id: BAD-1\nmodified: 2024-01-01T00:00:00Z\nseverity: [{type: CVSS_V3, score: 2024-01-01}]\n"
        "affected:\n- package: {ecosystem: PyPI, name: x}\n  versions: ['1.0']\n")
    _yaml(tmp_path / "feed" / "PYSEC-2022-43055.yaml", "2022-10-01T00:00:00Z", "2.0")
    result = import_paths(db, [str(tmp_path / "feed")])
    assert result.inserted == 2 and result.skipped == 0  # a date where a string belongs is kept as text
    stored = db.execute("SELECT severity_vectors FROM advisories WHERE id = 'BAD-1'").fetchone()[0]
    assert "2024-01-01" in stored
