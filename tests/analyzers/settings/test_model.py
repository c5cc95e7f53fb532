import pytest

from stowaway.analyzers.settings import configs  # noqa: F401  registers the evaluators
from stowaway.analyzers.settings.model import (
    CATEGORIES,
    CatalogError,
    Result,
    baseline_of,
    catalog,
    evaluator_of,
    load_catalog,
    to_finding,
)
from stowaway.ingest.model import OSInfo


def test_catalog_is_complete_and_every_check_can_run():
    checks = catalog()
    assert len(checks) >= 50
    for check in checks.values():
        assert check.title and check.description and check.suggestion and check.benchmark, check.id
        assert check.category in CATEGORIES
        assert check.rule or evaluator_of(check), f"{check.id} has neither a rule nor an evaluator"
    assert {c.category for c in checks.values()} == set(CATEGORIES)


def test_catalog_rejects_duplicates_and_unknown_fields():
    one = '[[check]]\nid="a"\ncategory="ssh"\ntitle="t"\ndescription="d"\nseverity="low"\nsuggestion="s"\nbenchmark="b"\n'
    with pytest.raises(CatalogError, match="duplicate"):
        load_catalog(one + one)
    with pytest.raises(CatalogError, match="colour"):
        load_catalog(one + 'colour = "red"\n')
    with pytest.raises(CatalogError, match="bad category"):
        load_catalog(one.replace('"ssh"', '"network"'))


@pytest.mark.parametrize("family,version,like,expected", [
    ("centos", "7", (), "centos7"), ("rhel", "8", (), "centos7"), ("rocky", "9", (), "centos7"),
    ("almalinux", "9", (), "centos7"), ("euleros", "2.0-SP10", (), "euleros"), ("openeuler", "22.03-LTS", (), "euleros"),
    ("hce", "2.0", (), "euleros"), ("debian", "9", (), "debian10"), ("debian", "12", (), "debian10"),
    ("ubuntu", "18.04", (), "ubuntu1604"), ("ubuntu", "24.04", (), "ubuntu1604"),
    ("linuxmint", "21", ("ubuntu", "debian"), "ubuntu1604"), ("alpine", "3.19", (), None), ("", "", (), None),
])
def test_baselines_apply_to_relatives(family, version, like, expected):
    assert baseline_of(OSInfo(family, version, id_like=like)) == expected


def test_finding_carries_the_model():
    check = catalog()["ssh.permit-root-login"]
    f = to_finding(check, Result(check.id, "fail", "x:2: PermitRootLogin yes", path="/etc/ssh/sshd_config", line=2,
                                 layer_index=3), "centos7")
    assert (f.kind, f.status, f.rule, f.path, f.layer_index, f.severity) == (
        "unsafe_setting", "fail", "ssh.permit-root-login", "/etc/ssh/sshd_config", 3, "high")
    assert f.detail["benchmark"] == "CIS CentOS Linux 7 Benchmark 5.2.10"
    assert f.detail["category"] == "ssh" and f.detail["result"] == "fail" and f.detail["line"] == 2
    assert f.detail["target"] == "/etc/ssh/sshd_config"
    with pytest.raises(ValueError):
        to_finding(check, Result(check.id, "maybe"), None)


def test_benchmark_text_per_baseline_and_docker():
    check = catalog()["container.setuid-setgid"]
    assert check.benchmark_for("ubuntu1604") == "CIS Ubuntu Linux 16.04 LTS Benchmark 6.1.13, 6.1.14; CIS Docker Benchmark 4.8"
    assert check.benchmark_for(None) == "CIS Docker Benchmark 4.8"
