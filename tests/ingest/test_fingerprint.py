"""Finding fingerprints tell findings apart across scans; the same finding keeps its fingerprint."""
from stowaway.ingest.findings import finding_fingerprint
from stowaway.ingest.model import Finding, Package


def weak(account, status="fail"):
    return Finding("unsafe_setting", "Weak password", "high", "/etc/shadow", 7, rule="weak-password", status=status,
                   detail={"check_id": "weak-password", "target": account, "category": "weak_password"})


def test_one_check_on_two_accounts_are_two_findings():
    assert finding_fingerprint(weak("admin"), None) != finding_fingerprint(weak("test"), None)


def test_same_finding_same_fingerprint_whatever_its_layer():
    a, b = weak("admin"), Finding(**{**weak("admin").__dict__, "layer_index": 3})
    assert finding_fingerprint(a, None) == finding_fingerprint(b, None)


def test_vulnerabilities_differ_by_package():
    p1 = Package("maven", "org.apache.logging.log4j:log4j-core", "2.14.1", "/a.jar")
    p2 = Package("maven", "org.apache.logging.log4j:log4j-api", "2.14.1", "/b.jar")
    f = Finding("vulnerability", "CVE-2021-44228", "critical", detail={"vulnerability_id": "CVE-2021-44228"})
    assert finding_fingerprint(f, p1) != finding_fingerprint(f, p2)
