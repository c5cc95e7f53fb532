"""The analyzer registry: duplicate names refused, risk selection pulls in the inventory it needs."""
import pytest

from stowaway.analyzers import base
from stowaway.analyzers.base import Analyzer, RegistryError, register, select


def test_duplicate_name_is_refused():
    load = base.load_all()
    assert "files" in load and "os-release" in load

    class Impostor(Analyzer):
        name = "files"
        version = 9

    with pytest.raises(RegistryError, match="already registered"):
        register(Impostor)
    assert base.load_all()["files"] is not Impostor


def test_an_analyzer_needs_a_name_and_an_integer_version():
    class NoName(Analyzer):
        pass

    class FloatVersion(Analyzer):
        name = "float-version-test"
        version = 1.5

    for cls in (NoName, FloatVersion):
        with pytest.raises(RegistryError):
            register(cls)


def test_unknown_risk_type_is_refused():
    class Odd(Analyzer):
        name = "odd-risk-test"
        risk = "astrology"

    with pytest.raises(RegistryError, match="unknown risk type"):
        register(Odd)
    with pytest.raises(RegistryError, match="unknown risk type"):
        select(["astrology"])


def test_selection_by_risk_keeps_order_and_adds_inventory_when_needed():
    chosen = select(["files"])
    names = [c.name for c in chosen]
    assert "files" in names and "os-release" in names  # OS identification always runs
    assert all(c.risk in ("files", "") for c in chosen)
    orders = [c.order for c in chosen]
    assert orders == sorted(orders)
    with_vulns = {c.risk for c in select(["vulnerabilities"])}
    assert "software" in with_vulns or not any(c.risk == "software" for c in base.load_all().values())


def test_hand_picked_analyzers_keep_the_ones_every_scan_needs():
    names = [c.name for c in select(names=["files"])]
    assert names.count("files") == 1
    always = [c.name for c in base.load_all().values() if c.risk == ""]
    assert "os-release" in always and set(always) <= set(names)
    with pytest.raises(RegistryError, match="unknown analyzer"):
        select(names=["nope"])
