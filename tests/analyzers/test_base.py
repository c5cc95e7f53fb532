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
    with_vulns = {c.risk for c in select(["vulnerabilities"])}
    assert "software" in with_vulns or not any(c.risk == "software" for c in base.load_all().values())


def test_hand_picked_analyzers_keep_the_ones_every_scan_needs():
    names = [c.name for c in select(names=["files"])]
    assert names.count("files") == 1
    always = [c.name for c in base.load_all().values() if c.risk == ""]
    assert "os-release" in always and set(always) <= set(names)
    with pytest.raises(RegistryError, match="unknown analyzer"):
        select(names=["nope"])


def _positions(classes):
    return {c.name: i for i, c in enumerate(classes)}


def test_every_analyzer_runs_after_what_it_consumes_and_evaluators_last():
    everything = select()
    at = _positions(everything)
    assert at["os-release"] < at["dpkg"] < at["python-dist"]  # os -> owned_files -> packages
    assert at["npm"] < at["javascript-banner"]  # consumed by name
    assert at["dpkg"] < at["vulnerabilities"] and at["dpkg"] < at["compliance"]
    stages = [c.stage for c in everything]
    assert stages == sorted(stages, key=["index", "evaluate"].index)  # every evaluator after every indexer
    for c in everything:
        for product in c.consumes:
            producers = [p for p in everything if product in p.produces and p is not c and p.stage == c.stage]
            assert all(at[p.name] < at[c.name] for p in producers), (c.name, product)


def test_a_dependency_cycle_is_refused_at_registration():
    class First(Analyzer):
        name = "cycle-first-test"
        consumes = ("cycle-second-test",)

    class Second(Analyzer):
        name = "cycle-second-test"
        consumes = ("cycle-first-test",)

    register(First)
    try:
        with pytest.raises(RegistryError, match="cycle"):
            register(Second)
        assert "cycle-second-test" not in base.load_all()
    finally:
        base._REGISTRY.pop("cycle-first-test", None)


def test_an_index_analyzer_cannot_consume_an_evaluator_and_products_are_known():
    class Early(Analyzer):
        name = "early-consumer-test"
        consumes = ("vulnerabilities",)

    with pytest.raises(RegistryError, match="cannot consume the evaluator"):
        register(Early)

    class Odd(Analyzer):
        name = "odd-product-test"
        produces = ("horoscope",)

    with pytest.raises(RegistryError, match="unknown product"):
        register(Odd)


def test_the_image_context_has_only_declared_fields():
    from stowaway.analyzers.base import ImageContext

    ctx = ImageContext(spec=None, fs=None, policy={})
    ctx.owned_files.add("/usr/bin/x")  # a declared product
    with pytest.raises(AttributeError):
        ctx.scan_id = 3  # type: ignore[attr-defined]


def test_the_module_table_names_every_analyzer_where_it_is_defined():
    registry = base.load_all()
    builtin = {n: (c.__module__, c.risk) for n, c in registry.items() if c.__module__.startswith("stowaway.analyzers.")}
    assert builtin == base.MODULES


def test_a_selection_by_risk_imports_only_the_modules_it_runs():
    import subprocess
    import sys

    code = ("import sys; from stowaway.analyzers.base import select; "
            "print(sorted(c.name for c in select(['secrets']))); "
            "print(sorted(m for m in sys.modules if m.startswith('stowaway.analyzers.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.splitlines()
    assert out[0] == "['os-release', 'secrets']"
    loaded = eval(out[1])
    assert "stowaway.analyzers.secrets.analyzer" in loaded and "stowaway.analyzers.inventory.os_release" in loaded
    assert not [m for m in loaded if m.startswith(("stowaway.analyzers.settings", "stowaway.analyzers.vulnerabilities",
                                                   "stowaway.analyzers.malware", "stowaway.analyzers.inventory.dpkg"))]
