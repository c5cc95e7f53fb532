"""The check model: a catalog of checks (checks.toml) and the results they give an image.

A check has a stable id, a title, a description, a severity, the suggestion that fixes it and the
benchmark it comes from. Evaluating it gives one `Result` per image (or per target: one per account
for weak passwords, one per file for some file checks): fail, pass or not_applicable, with the
evidence (file, line, value). Checks whose logic is a comparison of one value in one file are
written as data (`rule` in checks.toml) and evaluated by `rules.py`; the others are functions that
the category modules register with `@evaluator(check_id)`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Callable, Iterable, Iterator

import tomllib

from stowaway.ingest.model import Finding

CATEGORIES = ("baseline", "ssh", "weak_password", "password_policy")
RESULTS = ("fail", "pass", "not_applicable")
SEVERITIES = ("critical", "high", "medium", "low")

# The OS configuration baselines and the families that fall under each.
BASELINES = {
    "centos7": "CIS CentOS Linux 7 Benchmark",
    "debian10": "CIS Debian Linux 10 Benchmark",
    "euleros": "EulerOS 2.0 security baseline",
    "ubuntu1604": "CIS Ubuntu Linux 16.04 LTS Benchmark",
}
BENCHMARK_NAMES = {**BASELINES, "docker": "CIS Docker Benchmark"}
FAMILY_BASELINE = {
    "centos": "centos7", "rhel": "centos7", "rocky": "centos7", "almalinux": "centos7", "oracle": "centos7",
    "anolis": "centos7", "opencloudos": "centos7", "tencentos": "centos7",
    "euleros": "euleros", "openeuler": "euleros", "hce": "euleros", "kylin": "euleros",
    "debian": "debian10", "uos": "debian10",
    "ubuntu": "ubuntu1604",
}
ID_LIKE_BASELINE = {"rhel": "centos7", "centos": "centos7", "fedora": "centos7", "openeuler": "euleros",
                    "ubuntu": "ubuntu1604", "debian": "debian10"}


@dataclass(frozen=True)
class Check:
    id: str
    category: str
    title: str
    description: str
    severity: str
    suggestion: str
    benchmark: str | dict  # one text, or {baseline: section text} when the section differs per baseline
    scope: str = "all"  # all | os (only when an OS baseline applies)
    rule: dict = field(default_factory=dict)

    def benchmark_for(self, baseline: str | None) -> str:
        """The benchmark text for an image under `baseline`: its OS section plus any Docker section."""
        if isinstance(self.benchmark, str):
            return self.benchmark
        parts = []
        os_key = baseline if baseline in self.benchmark else (None if "docker" in self.benchmark else next(iter(self.benchmark)))
        if os_key:
            parts.append(f"{BENCHMARK_NAMES.get(os_key, os_key)} {self.benchmark[os_key]}")
        if "docker" in self.benchmark:
            parts.append(f"{BENCHMARK_NAMES['docker']} {self.benchmark['docker']}")
        return "; ".join(parts)


@dataclass(frozen=True)
class Result:
    check_id: str
    result: str
    evidence: str = ""
    path: str = ""
    line: int | None = None
    target: str = ""
    layer_index: int | None = None


class CatalogError(Exception):
    pass


def load_catalog(text: str | None = None) -> dict[str, Check]:
    if text is None:
        text = resources.files(__package__).joinpath("checks.toml").read_text(encoding="utf-8")
    data = tomllib.loads(text)
    catalog: dict[str, Check] = {}
    for raw in data.get("check", []):
        try:
            check = Check(**raw)
        except TypeError as exc:
            raise CatalogError(f"check {raw.get('id')!r}: {exc}") from None
        if check.id in catalog:
            raise CatalogError(f"duplicate check id {check.id!r}")
        if check.category not in CATEGORIES or check.severity not in SEVERITIES:
            raise CatalogError(f"check {check.id!r}: bad category or severity")
        catalog[check.id] = check
    return catalog


_CATALOG: dict[str, Check] | None = None


def catalog() -> dict[str, Check]:
    global _CATALOG
    if _CATALOG is None:
        _CATALOG = load_catalog()
    return _CATALOG


Evaluator = Callable[[Any, Check], Iterable[Result]]
_EVALUATORS: dict[str, Evaluator] = {}


def evaluator(check_id: str):
    """Registers the function that evaluates a check that is code rather than data."""
    def deco(fn):
        if check_id in _EVALUATORS:
            raise CatalogError(f"two evaluators for {check_id!r}")
        _EVALUATORS[check_id] = fn
        return fn
    return deco


def evaluator_of(check: Check) -> Evaluator | None:
    return _EVALUATORS.get(check.id)


def baseline_of(os_info) -> str | None:
    """Which OS baseline applies to an image, from its OS family (or the families it says it is like)."""
    found = FAMILY_BASELINE.get(os_info.family or "")
    if found:
        return found
    for like in os_info.id_like or ():
        if like in ID_LIKE_BASELINE:
            return ID_LIKE_BASELINE[like]
    return None


def to_finding(check: Check, r: Result, baseline: str | None) -> Finding:
    if r.result not in RESULTS:
        raise ValueError(f"{check.id}: result {r.result!r}")
    return Finding(
        kind="unsafe_setting", title=check.title, severity=check.severity, path=r.path,
        layer_index=r.layer_index, status=r.result, rule=check.id,
        detail={"category": check.category, "check_id": check.id, "result": r.result,
                "target": r.target or r.path or "image config", "evidence": r.evidence,
                "description": check.description, "suggestion": check.suggestion,
                "benchmark": check.benchmark_for(baseline), "line": r.line})


def run_checks(env, checks: Iterable[Check], baseline: str | None) -> Iterator[Finding]:
    """Evaluates checks against an environment; a failing evaluator costs its own check only."""
    from . import rules

    for check in checks:
        fn = evaluator_of(check) or (rules.evaluate if check.rule else None)
        if fn is None:
            raise CatalogError(f"check {check.id!r} has neither a rule nor an evaluator")
        try:
            results = list(fn(env, check))
        except Exception as exc:  # a bug in one check must not lose the others
            env.warn(f"check {check.id}: {exc.__class__.__name__}: {exc}")
            continue
        for r in results:
            yield to_finding(check, r, baseline)
