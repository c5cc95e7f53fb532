"""The evaluator through the real pipeline: built images, imported records, the stored report."""
import json

from conftest import report_of
from imagebuilder import ImageBuilder
from osv_fixtures import CRITICAL, HIGH, MEDIUM, osv

from stowaway.analyzers.base import ImageContext
from stowaway.analyzers.vulnerabilities.evaluator import Evaluation, Vulnerabilities
from stowaway.analyzers.vulnerabilities.importer import import_paths, import_records
from stowaway.analyzers.vulnerabilities.matchers import Matcher
from stowaway.ingest.db import connect
from stowaway.ingest.model import OSInfo, Package

OS_RELEASE = 'PRETTY_NAME="Debian GNU/Linux 11 (bullseye)"\nID=debian\nVERSION_ID="11"\n'


def status(*pkgs):
    out = []
    for name, version, *source in pkgs:
        block = f"Package: {name}\nStatus: install ok installed\nVersion: {version}\nArchitecture: amd64\n"
        if source:
            block += f"Source: {source[0]}\n"
        out.append(block)
    return "\n".join(out)


def metadata(name, version):
    return f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"


def shop_image():
    img = ImageBuilder()
    img.layer({"etc/os-release": OS_RELEASE,
               "var/lib/dpkg/status": status(("libssl1.1", "1.1.1n-0+deb11u3", "openssl"),
                                             ("curl", "7.74.0-1.3+deb11u1"), ("zlib1g", "1:1.2.11.dfsg-2+deb11u2", "zlib"))},
              created_by="ADD rootfs")
    img.layer({"usr/local/lib/python3.9/site-packages/Jinja2-2.10.dist-info/METADATA": metadata("Jinja2", "2.10")},
              created_by="RUN pip install Jinja2==2.10")
    img.layer({"opt/web/node_modules/lodash/package.json": json.dumps({"name": "lodash", "version": "4.17.15"})},
              created_by="COPY web")
    return img


ADVISORIES = [
    # vendor data for the OS packages, keyed by source package and release
    osv("DSA-5000-1", "Debian:11", "openssl", [{"introduced": "0"}, {"fixed": "1.1.1n-0+deb11u4"}],
        upstream=["CVE-2023-0001"], aliases=[]),
    osv("DEBIAN-CVE-2023-0001", "Debian:11", "openssl", [{"introduced": "0"}, {"fixed": "1.1.1n-0+deb11u4"}],
        aliases=["CVE-2023-0001"], severity=HIGH),
    osv("DEBIAN-CVE-2023-0002", "Debian:11", "curl", [{"introduced": "0"}], aliases=["CVE-2023-0002"]),
    osv("DEBIAN-CVE-2023-0003", "Debian:11", "zlib", [{"introduced": "0"}, {"fixed": "1:1.2.11.dfsg-2+deb11u1"}],
        aliases=["CVE-2023-0003"]),  # already fixed in the installed version
    # never for this image: another release, a binary package name, an upstream ecosystem
    osv("DSA-OLD", "Debian:10", "openssl", [{"introduced": "0"}], aliases=["CVE-2023-0004"]),
    osv("DSA-BIN", "Debian:11", "libssl1.1", [{"introduced": "0"}], aliases=["CVE-2023-0005"]),
    osv("UBUNTU-CVE-2023-0006", "Ubuntu:22.04:LTS", "openssl", [{"introduced": "0"}], aliases=["CVE-2023-0006"]),
    # the same CVE from two databases: one finding, two reasons
    osv("GHSA-jjjj", "PyPI", "jinja2", [{"introduced": "0"}, {"fixed": "2.10.1"}], aliases=["CVE-2019-10906"],
        severity=CRITICAL, published="2019-04-10T00:00:00Z"),
    osv("PYSEC-2019-217", "PyPI", "Jinja2", [{"introduced": "0"}, {"fixed": "2.10.1"}], aliases=["CVE-2019-10906"],
        published="2019-04-07T00:00:00Z"),
    osv("GHSA-llll", "npm", "lodash", [{"introduced": "0"}, {"fixed": "4.17.21"}], aliases=["CVE-2021-23337"],
        severity=MEDIUM),
    osv("GHSA-nocve", "npm", "lodash", [{"introduced": "4.17.0"}, {"last_affected": "4.17.15"}],
        database_severity="LOW"),
]


def _scan(tmp_path, scan, policy=None, advisories=ADVISORIES):
    shop_image().write_oci_layout(tmp_path / "oci", ref="demo/shop:1")
    database = connect(str(tmp_path / "scan.db"))
    import_records(database, advisories)
    database, outcomes = scan(f"oci:{tmp_path / 'oci'}", policy=policy)
    assert outcomes[0].status == "done", outcomes[0].error
    return database, report_of(database, "demo/shop:1")


def test_findings_through_the_pipeline(tmp_path, scan):
    database, rep = _scan(tmp_path, scan)
    by_id = {v["id"]: v for v in rep["vulnerabilities"]}
    assert set(by_id) == {"CVE-2023-0001", "CVE-2023-0002", "CVE-2019-10906", "CVE-2021-23337", "GHSA-nocve"}

    ssl = by_id["CVE-2023-0001"]
    # matched on the source package, reported on the binary package the image installed
    assert ssl["package"]["name"] == "libssl1.1" and ssl["package"]["ecosystem"] == "deb"
    assert ssl["fixed_version"] == "1.1.1n-0+deb11u4" and ssl["layer_index"] == 0
    assert ssl["solution"] == "upgrade openssl to 1.1.1n-0+deb11u4 or later (source package of libssl1.1)"
    assert set(ssl["aliases"]) == {"DSA-5000-1", "DEBIAN-CVE-2023-0001"}
    assert {m["record"] for m in ssl["matched_by"]} == {"DSA-5000-1", "DEBIAN-CVE-2023-0001"}
    assert ssl["severity"] == "high" and ssl["cvss_score"] == 7.5

    curl = by_id["CVE-2023-0002"]
    assert curl["fixed_version"] is None and curl["solution"] == "no fix available"
    assert curl["matched_by"][0]["range"] == "introduced 0, no fixed version above it"

    jinja = by_id["CVE-2019-10906"]
    assert jinja["package"]["path"].endswith("Jinja2-2.10.dist-info/METADATA") and jinja["layer_index"] == 1
    assert sorted(m["record"] for m in jinja["matched_by"]) == ["GHSA-jjjj", "PYSEC-2019-217"]
    assert jinja["severity"] == "critical" and jinja["cvss_score"] == 10.0
    assert jinja["published"].startswith("2019-04-07")
    assert jinja["cvss_vector"] == CRITICAL

    assert by_id["GHSA-nocve"]["severity"] == "low" and by_id["GHSA-nocve"]["cvss_score"] is None
    assert by_id["CVE-2021-23337"]["layer_index"] == 2

    counts = {s["name"]: s["vulnerability_count"] for s in rep["software"]}
    assert counts["libssl1.1"] == 1 and counts["lodash"] == 2 and counts["zlib1g"] == 0
    totals = database.execute("SELECT critical, high, medium, low, unknown, total, fixable, ignored"
                              " FROM image_vulnerability_totals WHERE image='demo/shop:1'").fetchone()
    assert totals == (1, 1, 1, 1, 1, 5, 3, 0)
    assert "vulnerability_feed" in {r[0] for r in database.execute("SELECT name FROM scan_facts")}


def test_ignore_file_from_the_policy_marks_findings_without_deleting_them(tmp_path, scan):
    rules = tmp_path / "ignore.yaml"
    rules.write_text("vulnerabilities:\n"
                     "  - id: CVE-2021-23337\n    packages: [lodash]\n    reason: template() not used\n"
                     "  - id: CVE-2023-0002\n    images: ['other/*']\n"
                     "  - id: GHSA-nocve\n    expires: 2000-01-01\n")
    database, rep = _scan(tmp_path, scan, policy={"vulnerabilities": {"ignore_file": str(rules)}})
    flags = {v["id"]: v["ignored"] for v in rep["vulnerabilities"]}
    assert flags == {"CVE-2023-0001": False, "CVE-2023-0002": False, "CVE-2019-10906": False,
                     "CVE-2021-23337": True, "GHSA-nocve": False}
    row = database.execute("SELECT f.ignored, f.ignore_reason FROM findings f JOIN vulnerability_details d"
                           " ON d.finding_id = f.id WHERE d.vulnerability_id = 'CVE-2021-23337'").fetchone()
    assert row == (1, "template() not used")
    counts = {s["name"]: s["vulnerability_count"] for s in rep["software"]}
    assert counts["lodash"] == 1  # ignored findings do not count
    assert any("expired" in w for w in rep["scan"]["warnings"])
    assert database.execute("SELECT ignored, total FROM image_vulnerability_totals").fetchone() == (1, 4)


def test_no_advisory_store_is_a_warning_not_a_failure():
    import sqlite3

    ctx = _ctx(sqlite3.connect(":memory:"), [Package("pypi", "jinja2", "2.10", "/m", 0)], OSInfo("debian", "11"))
    out = list(Vulnerabilities({}).collect(ctx, []))
    assert [(o.name, o.value) for o in out] == [("vulnerability_coverage", [
        {"ecosystem": "PyPI", "packages": 1, "advisories": 0, "checked": False, "reason": "no advisory database"}])]
    assert ctx.warnings == ["vulnerabilities: no advisory database; run `stowaway db import` or `stowaway db update`"]


def _ctx(db, packages, os_info):
    ctx = ImageContext(spec=type("Spec", (), {"reference": "x:1"})(), fs=None, policy={}, db=db, os=os_info)
    ctx.packages.extend(packages)
    return ctx


def test_os_packages_of_an_unknown_distribution_are_not_guessed(db):
    import_records(db, ADVISORIES)
    pkgs = [Package("deb", "libssl1.1", "1.1.1n-0+deb11u3", "/var/lib/dpkg/status", 0, source_name="openssl")]
    ctx = _ctx(db, pkgs, OSInfo())
    out = list(Vulnerabilities({}).collect(ctx, []))
    assert [type(o).__name__ for o in out] == ["Fact", "Fact", "Fact"]  # feed, coverage, fixes: no finding
    coverage = next(o.value for o in out if o.name == "vulnerability_coverage")
    assert coverage == [{"ecosystem": "an unidentified distribution", "packages": 1, "advisories": 0,
                         "checked": False, "reason": "not checked: the distribution could not be identified"}]
    assert any("1 OS packages not checked: the distribution could not be identified" in w for w in ctx.warnings)


def test_rpm_source_package_takes_the_binary_epoch(db):
    import_records(db, [osv("RLSA-1", "Rocky Linux:9", "openssl", [{"introduced": "0"}, {"fixed": "1:3.0.7-25.el9_3"}],
                            aliases=["CVE-2023-0100"])])
    ev = Evaluation(Matcher(db.conn))
    # without the epoch, 3.0.7-24 would compare below '1:…' anyway; with a newer release it must not
    fixed = Package("rpm", "openssl-libs", "1:3.0.7-26.el9", "/var/lib/rpm/rpmdb.sqlite", 0, source_name="openssl",
                    source_version="3.0.7-26.el9")
    vulnerable = Package("rpm", "openssl-libs", "1:3.0.7-24.el9", "/var/lib/rpm/rpmdb.sqlite", 0,
                         source_name="openssl", source_version="3.0.7-24.el9")
    assert ev.evaluate([fixed], "rocky", "9.3") == []
    got = ev.evaluate([vulnerable], "rocky", "9.3")
    assert [f.detail["vulnerability_id"] for f in got] == ["CVE-2023-0100"]
    assert got[0].detail["matched_by"][0]["version"] == "1:3.0.7-24.el9"


def test_invalid_installed_version_is_a_counted_warning(db):
    import_records(db, [osv("GHSA-v", "PyPI", "foo", [{"introduced": "0"}, {"fixed": "2.0"}])])
    ev = Evaluation(Matcher(db.conn))
    assert ev.evaluate([Package("pypi", "foo", "not-a-version!", "/x/METADATA", 0)], "", "") == []
    assert any("not a valid pep440 version" in w for w in ev.matcher.warnings)


def test_kev_and_epss_raise_the_urgency(db, tmp_path):
    import_records(db, [osv("GHSA-k", "Maven", "org.apache.logging.log4j:log4j-core",
                            [{"introduced": "2.0"}, {"fixed": "2.15.0"}], aliases=["CVE-2021-44228"], severity=CRITICAL),
                        osv("GHSA-e", "Maven", "org.apache.logging.log4j:log4j-core",
                            [{"introduced": "2.0"}, {"fixed": "2.16.0"}], aliases=["CVE-2021-45046"], severity=MEDIUM)])
    pkg = Package("maven", "org.apache.logging.log4j:log4j-core", "2.14.1", "/app/log4j-core-2.14.1.jar", 2)
    before = {f.detail["vulnerability_id"]: f.detail["urgency"] for f in Evaluation(Matcher(db.conn)).evaluate([pkg], "", "")}
    assert before == {"CVE-2021-44228": "high", "CVE-2021-45046": "low"}
    (tmp_path / "kev.json").write_text(json.dumps({"catalogVersion": "1", "vulnerabilities": [{"cveID": "CVE-2021-44228"}]}))
    (tmp_path / "epss.csv").write_text("cve,epss,percentile\nCVE-2021-45046,0.5,0.99\n")
    import_paths(db, [str(tmp_path / "kev.json"), str(tmp_path / "epss.csv")])
    after = {f.detail["vulnerability_id"]: (f.detail["urgency"], f.detail["kev"], f.detail["epss"])
             for f in Evaluation(Matcher(db.conn)).evaluate([pkg], "", "")}
    assert after == {"CVE-2021-44228": ("immediate", 1, None), "CVE-2021-45046": ("high", 0, 0.5)}


def test_a_distribution_without_imported_advisories_is_a_warning(db):
    import_records(db, [osv("GHSA-v", "PyPI", "foo", [{"introduced": "0"}, {"fixed": "2.0"}])])
    ev = Evaluation(Matcher(db.conn))
    pkgs = [Package("deb", "libssl1.1", "1.1.1n-0+deb11u3", "/var/lib/dpkg/status", 0, source_name="openssl")]
    assert ev.evaluate(iter(pkgs), "debian", "11") == []
    assert list(ev.warnings) == ["1 OS packages not checked: no Debian 11 advisories in the store; import the Debian"
                                 " security tracker JSON (security-tracker.debian.org/tracker/data/json) or"
                                 " osv.dev's Debian export"]
    import_records(db, [osv("DSA-9", "Debian:11", "zlib", [{"introduced": "0"}])])
    ev = Evaluation(Matcher(db.conn))
    assert ev.evaluate(pkgs, "debian", "11") == [] and not ev.warnings
