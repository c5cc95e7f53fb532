"""Coverage (what could be checked, per ecosystem) and the fix roll-up, in the stored report."""
from conftest import report_of
from osv_fixtures import osv
from test_evaluator import shop_image

from stowaway.analyzers.vulnerabilities.importer import import_records
from stowaway.analyzers.vulnerabilities.rematch import rematch
from stowaway.ingest.db import connect

PYPI_ONLY = [
    osv("PYSEC-2019-217", "PyPI", "Jinja2", [{"introduced": "0"}, {"fixed": "2.10.1"}], aliases=["CVE-2019-10906"]),
    # a later range: 2.10.1 fixes the first, but is itself affected by this one
    osv("PYSEC-2021-66", "PyPI", "Jinja2", [{"introduced": "2.0"}, {"fixed": "2.11.3"}], aliases=["CVE-2020-28493"]),
    osv("PYSEC-2024-1", "PyPI", "Jinja2", [{"introduced": "2.11.0"}, {"fixed": "2.11.3"}], aliases=["CVE-2024-0001"]),
]


def _coverage(rep):
    return {c["ecosystem"]: (c["packages"], c["advisories"], c["checked"]) for c in rep["coverage"]["vulnerabilities"]}


def test_an_image_with_no_feed_for_its_distribution_or_npm_says_not_checked(tmp_path, scan):
    shop_image().write_oci_layout(tmp_path / "oci", ref="demo/shop:1")
    database = connect(str(tmp_path / "scan.db"))
    import_records(database, PYPI_ONLY)
    database, outcomes = scan(f"oci:{tmp_path / 'oci'}")
    assert outcomes[0].status == "done"
    rep = report_of(database, "demo/shop:1")
    assert _coverage(rep) == {"Debian:11": (3, 0, False), "PyPI": (1, 3, True), "npm": (1, 0, False)}
    warnings = rep["scan"]["warnings"]
    assert any("3 OS packages not checked: no Debian 11 advisories in the store" in w for w in warnings)
    reasons = {c["ecosystem"]: c.get("reason") for c in rep["coverage"]["vulnerabilities"]}
    assert reasons["Debian:11"].startswith("not checked: no Debian 11 advisories in the store; import")
    assert reasons["npm"] == "not checked: no npm advisories in the store" and reasons["PyPI"] is None
    assert any("no npm advisories in the store: 1 npm packages not checked" in w for w in warnings)
    # the fix roll-up: one upgrade that fixes both findings of Jinja2 2.10
    jinja = next(s for s in rep["software"] if s["name"].lower() == "jinja2")
    assert (jinja["fix_all_version"], jinja["fix_all_fixes"]) == ("2.11.3", 2)
    assert next(s for s in rep["software"] if s["name"] == "lodash")["fix_all_version"] is None
    # no KEV catalogue imported: "known exploited" is unknown, not "no"
    assert {v.get("kev") for v in rep["vulnerabilities"]} == {None}
    assert {v["severity_source"] for v in rep["vulnerabilities"]} == {"unknown"}

    # npm advisories arrive: a rematch updates coverage without reading the image again
    import_records(database, [osv("GHSA-l", "npm", "lodash", [{"introduced": "0"}, {"fixed": "4.17.21"}])])
    rematch(database)
    rep = report_of(database, "demo/shop:1")
    assert _coverage(rep)["npm"] == (1, 1, True)
    assert next(s for s in rep["software"] if s["name"] == "lodash")["fix_all_version"] == "4.17.21"


def test_an_unfixed_finding_means_no_single_upgrade(db):
    from stowaway.analyzers.vulnerabilities.evaluator import Evaluation
    from stowaway.analyzers.vulnerabilities.matchers import Matcher
    from stowaway.ingest.model import Package

    import_records(db, [osv("GHSA-1", "Maven", "g:a", [{"introduced": "0"}, {"fixed": "1.5"}]),
                        osv("GHSA-2", "Maven", "g:a", [{"introduced": "0"}])])
    ev = Evaluation(Matcher(db.conn))
    ev.evaluate([Package("maven", "g:a", "1.0", "/a.jar", 0)], "", "")
    assert ev.last_fixes == [{"ecosystem": "maven", "name": "g:a", "version": "1.0", "path": "/a.jar",
                              "fix_all_version": None, "findings": 2}]
