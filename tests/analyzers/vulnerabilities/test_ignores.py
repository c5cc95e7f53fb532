import datetime as dt

import pytest

from stowaway.analyzers.vulnerabilities.ignores import load
from stowaway.ingest.model import ScanError

TODAY = dt.date(2025, 6, 1)


def test_plain_trivyignore(tmp_path):
    f = tmp_path / ".trivyignore"
    f.write_text("# header\n\nCVE-2021-44228\nCVE-2020-1 exp:2025-05-31\nCVE-2020-2 exp:2025-06-01 # until June\n")
    rules = load(str(f), today=TODAY)
    assert rules.match(["GHSA-jfh8-c2jp-5v3q", "CVE-2021-44228"]) == f"ignored by {f}"
    assert rules.match(["CVE-2020-1"]) is None  # expired yesterday
    assert rules.match(["CVE-2020-2"]) == "until June"
    assert rules.warnings() == [f"ignore rule for CVE-2020-1 in {f} expired on 2025-05-31"]


def test_yaml_scopes(tmp_path):
    f = tmp_path / "ignore.yaml"
    f.write_text("vulnerabilities:\n"
                 "  - id: CVE-1\n    packages: ['lodash@4.17.15']\n    statement: not reachable\n"
                 "  - id: CVE-2\n    paths: ['opt/app/*.jar']\n    images: ['corpus/*']\n    expired_at: 2026-01-01\n"
                 "  - id: CVE-3\n    purls: ['pkg:npm/jquery@3.4.1']\n")
    rules = load(str(f), today=TODAY)
    assert rules.match(["CVE-1"], "lodash", "4.17.15") == "not reachable"
    assert rules.match(["CVE-1"], "lodash", "4.17.21") is None
    assert rules.match(["CVE-2"], path="/opt/app/a.jar", image="corpus/shop:1.0")
    assert rules.match(["CVE-2"], path="/opt/app/a.jar", image="other/shop:1.0") is None
    assert rules.match(["CVE-2"], path="/srv/a.jar", image="corpus/shop:1.0") is None
    assert rules.match(["CVE-3"], "jquery", "3.4.1", purl="pkg:npm/jquery@3.4.1")
    assert rules.match(["CVE-3"], "jquery", "3.5.0", purl="pkg:npm/jquery@3.5.0") is None


def test_toml(tmp_path):
    f = tmp_path / "ignore.toml"
    f.write_text('[[ignore]]\nid = "CVE-9"\nreason = "accepted"\nexpires = 2030-01-01\n')
    assert load(str(f), today=TODAY).match(["CVE-9"]) == "accepted"


@pytest.mark.parametrize("name,text,message", [
    ("i.yaml", "vulnerabilities:\n  - reason: x\n", "entry 1 has no id"),
    ("i.yaml", "vulnerabilities: [\n", "invalid YAML"),
    ("i.toml", "[[ignore]\n", "invalid TOML"),
    ("i.txt", "CVE-1 exp:someday\n", "is not a date"),
])
def test_bad_ignore_files_are_one_clear_error(tmp_path, name, text, message):
    f = tmp_path / name
    f.write_text(text)
    with pytest.raises(ScanError, match=message):
        load(str(f))


def test_missing_file():
    with pytest.raises(ScanError, match="cannot read ignore file"):
        load("/nonexistent/.trivyignore")
