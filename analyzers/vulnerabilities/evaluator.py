"""Vulnerability findings from an image's inventory: an image-level evaluator that never reads a layer.

The same `Evaluation` serves a scan (packages from `ctx.packages`) and a rematch (packages from the
`packages` table), so a feed update re-evaluates stored images with exactly the scan's rules.

One finding per (package, vulnerability): a GHSA and a PYSEC record of the same CVE, or a DSA and the
tracker's DEBIAN-CVE record, become one finding whose `matched_by` lists every record and range that
matched. The finding is named by its CVE when the records name exactly one.

OS packages are matched only against their distribution's own advisories (on the source package and
the release): the vendor knows which fixes it backported, upstream ranges do not.
"""
from __future__ import annotations

import hashlib
import json
from collections import Counter
from typing import Iterable

from stowaway.ingest.model import Finding, Package

from ..base import Analyzer, Fact, register
from . import ignores as ignore_rules
from . import store
from .ecosystems import (
    APP_ECOSYSTEM,
    DISTRIBUTION_ECOSYSTEMS,
    OS_PACKAGE_TYPES,
    SCHEME_OF,
    image_release,
    package_target,
)
from .feeds.status import feed_status
from .matchers import Match, Matcher
from .versions import InvalidVersion, parse

DESCRIPTION_MAX = 1000
_JSON = json.JSONEncoder(separators=(",", ":"), sort_keys=True, default=str)
# records of these namespaces carry the CVSS vectors users expect, prefer them when records disagree
_PREFERRED_PREFIX = ("GHSA-", "CVE-")


def match_target(pkg, os_key) -> tuple | None:
    """(ecosystem, release, name, version) a package is matched as, or None."""
    if pkg.os_owned and (pkg.ecosystem or "").lower() not in OS_PACKAGE_TYPES:
        # a jar or wheel shipped inside an OS package carries the vendor's backports; its
        # vulnerabilities are the vendor's advisories for that OS package, not upstream's ranges
        return None
    return package_target(pkg.ecosystem, pkg.name, pkg.version, pkg.source_name, pkg.source_version, os_key)


def _urgency(severity: str, kev: bool, epss: float | None, fixed: str | None) -> str:
    """Repair urgency: exploited in the wild first (CISA KEV), then likely exploitation (EPSS), then severity."""
    if kev:
        return "immediate"
    if (epss is not None and epss >= 0.1) or (severity == "critical" and fixed):
        return "high"
    if severity in ("critical", "high") or (epss is not None and epss >= 0.01):
        return "medium"
    return "low"


def _best_fixed(scheme: str, matches: list[Match]) -> str | None:
    fixes = {m.hit.fixed for m in matches if m.hit.fixed}
    if not fixes:
        return None
    try:
        return max(fixes, key=lambda v: parse(scheme, v))
    except (InvalidVersion, TypeError):
        return sorted(fixes)[-1]


class Evaluation:
    """Builds findings for the packages of one image; reusable across images (caches live in the Matcher)."""

    def __init__(self, matcher: Matcher, ignores: ignore_rules.IgnoreRules | None = None):
        self.matcher = matcher
        self.ignores = ignores or ignore_rules.IgnoreRules([])
        self.warnings: Counter = Counter()
        self._cores: dict[tuple, list] = {}
        self._fix_all: dict[tuple, str | None] = {}
        # (package, target) -> its findings and its fixes entry, when no ignore rule makes them per image
        # (a rematch meets the same package in thousands of images): shared objects, never changed
        self._per_package: dict[tuple, tuple[list[Finding], dict | None]] = {}
        # of the last evaluate()/evaluate_targets() call: per package with findings, the lowest version
        # that fixes all of them; and per ecosystem, what could be checked (evaluate() only)
        self.last_fixes: list[dict] = []
        self.last_coverage: list[dict] = []

    def evaluate(self, packages: Iterable[Package], os_family: str, os_version: str,
                 image: str = "") -> list[Finding]:
        os_key = image_release(os_family, os_version)
        items = []
        seen = set()
        uncovered_os = matched_os = 0
        per_ecosystem: Counter = Counter()
        not_covered: Counter = Counter()
        for pkg in packages:
            if pkg.key in seen:
                continue
            seen.add(pkg.key)
            target = match_target(pkg, os_key)
            if target is None:
                kind = coverage_gap(pkg.ecosystem, pkg.os_owned, os_family, os_version)
                if kind:
                    not_covered[kind] += 1
                uncovered_os += (pkg.ecosystem or "").lower() in OS_PACKAGE_TYPES and not pkg.os_owned
                continue
            per_ecosystem[target[:2]] += 1
            matched_os += target[0] in DISTRIBUTION_ECOSYSTEMS
            items.append((pkg, target))
        findings = self.evaluate_targets(items, os_family, os_version, image, uncovered_os, matched_os)
        self.last_coverage = self.coverage(per_ecosystem, not_covered, os_family, os_version)
        return findings

    def coverage(self, per_ecosystem: Counter, not_covered: Counter, os_family: str = "",
                 os_version: str = "") -> list[dict]:
        """REPORT.md's coverage.vulnerabilities: per ecosystem (and release) with packages, how many
        packages, how many advisories the store holds for it, and whether they were checked. Warns for
        every application ecosystem with packages and no advisories (OS ones are worded by
        evaluate_targets)."""
        out = []
        for (eco, release), n in sorted(per_ecosystem.items()):
            label = f"{eco}:{release}" if release else eco
            count = self.matcher.advisory_count(eco, release)
            entry = {"ecosystem": label, "packages": n, "advisories": count, "checked": count > 0}
            if not count:
                entry["reason"] = f"not checked: no {label} advisories in the store"
                if eco in DISTRIBUTION_ECOSYSTEMS:
                    entry["reason"] = feed_status(os_family, os_version, self.matcher.conn)[1]
                else:
                    self.warnings[f"no {label} advisories in the store: {n} {label} packages not checked;"
                                  " import that ecosystem's feed"] += 1
            out.append(entry)
        os_label = coverage_gap("deb", False, os_family, os_version)
        for label, n in sorted(not_covered.items()):
            reason = feed_status(os_family, os_version, self.matcher.conn)[1] if label == os_label else \
                f"not checked: no advisory source for {label} packages"
            out.append({"ecosystem": label, "packages": n, "advisories": 0, "checked": False, "reason": reason})
        return out

    def evaluate_targets(self, items, os_family: str, os_version: str, image: str = "", uncovered_os: int = 0,
                         matched_os: int = 0) -> list[Finding]:
        """Findings of (package, match target) pairs; the counts only word the warnings."""
        out: list[Finding] = []
        self.last_fixes = []
        shared = not self.ignores  # without ignore rules a package's findings are the same in every image
        for pkg, target in items:
            try:
                memo = (pkg.key, pkg.layer_index, pkg.source_name, target)
                got = self._per_package.get(memo) if shared else None
                if got is None:
                    matches = self.matcher.match(*target)
                    found = list(self._findings(pkg, target, matches, image)) if matches else []
                    fixes = {"ecosystem": pkg.ecosystem, "name": pkg.name, "version": pkg.version, "path": pkg.path,
                             "fix_all_version": self.fix_all(target), "findings": len(found)} if matches else None
                    got = (found, fixes)
                    if shared:
                        self._per_package[memo] = got
                if got[1] is not None:
                    out.extend(got[0])
                    self.last_fixes.append(got[1])
            except (ValueError, TypeError, RecursionError) as exc:
                # one package or record that cannot be read never costs the rest of the image its matching
                version = target[3] if len(target[3]) <= 60 else f"{target[3][:40]}… ({len(target[3]):,} characters)"
                self.warnings[f"{target[0]} package {pkg.name} {version}: not checked, its version or an"
                              f" advisory for it cannot be compared ({str(exc)[:120]})"] += 1
        self.os_warning(os_family, os_version, uncovered_os, matched_os)
        return out

    def os_warning(self, os_family: str, os_version: str, uncovered_os: int, matched_os: int) -> None:
        """The warning of an image whose OS packages no vendor feed in the store covers."""
        if not uncovered_os and not matched_os:
            return
        release = image_release(os_family, os_version)
        if uncovered_os or not (release and self.matcher.covers(*release)):
            # says which vendor feed would cover them, or that the vendor publishes none (feeds/status.py)
            self.warnings[f"{uncovered_os or matched_os} OS packages "
                          + feed_status(os_family, os_version, self.matcher.conn)[1]] += 1

    def _findings(self, pkg: Package, target, matches: list[Match], image: str) -> Iterable[Finding]:
        # what a finding says about a (package, version) is the same in every image that has it
        cores = self._cores.get(target)
        if cores is None:
            cores = []
            for vid, group in self._group(matches).items():
                core = self._core(target, vid, group)
                cores.append((vid, core, hashlib.sha1(_JSON.encode(core).encode()).hexdigest()))
            self._cores[target] = cores
        for vid, core, core_hash in cores:
            yield self._finding(pkg, target[0], vid, core, core_hash, image)

    def fix_all(self, target) -> str | None:
        """The lowest version that fixes every vulnerability of a (package, version): the highest of the
        findings' fixed versions, then raised again while that version is itself affected (a later
        range). None when a finding has no fix."""
        if target in self._fix_all:
            return self._fix_all[target]
        ecosystem, release, name, _ = target
        scheme = SCHEME_OF[ecosystem]
        fixes = [core["fixed_version"] for _, core, _ in self._cores.get(target, ())]
        best = None
        try:
            if fixes and None not in fixes:
                candidate = max(fixes, key=lambda v: parse(scheme, v))
                for _ in range(8):
                    still = self.matcher.match(ecosystem, release, name, candidate)
                    if not still:
                        best = candidate
                        break
                    more = [m.hit.fixed for m in still]
                    if None in more:
                        break
                    candidate = max([candidate, *more], key=lambda v: parse(scheme, v))
        except (InvalidVersion, TypeError, ValueError):
            best = None
        self._fix_all[target] = best
        return best

    def _group(self, matches: list[Match]) -> dict[str, list[Match]]:
        groups: dict[str, list[Match]] = {}
        multi: list[tuple[tuple, Match]] = []
        for m in matches:
            adv = self.matcher.advisory(m.candidate.advisory_id)
            if len(adv.cves) == 1:
                groups.setdefault(adv.cves[0], []).append(m)
            elif len(adv.cves) > 1:
                multi.append((adv.cves, m))
            else:
                groups.setdefault(adv.id, []).append(m)
        for cves, m in multi:
            # an advisory naming several CVEs (a DSA, a USN) folds into the per-CVE findings it repeats
            if all(c in groups for c in cves):
                for c in cves:
                    groups[c].append(m)
            else:
                groups.setdefault(m.candidate.advisory_id, []).append(m)
        return groups

    def _core(self, target, vid: str, group: list[Match]) -> dict:
        ecosystem, _, _, version = target
        advs = [self.matcher.advisory(m.candidate.advisory_id) for m in group]
        order = sorted(range(len(advs)), key=lambda i: (not advs[i].id.startswith(_PREFERRED_PREFIX), advs[i].id))
        names: set[str] = set()
        for a in advs:
            names.update((a.id, *a.aliases, *a.cves))
        names.discard(vid)
        cves = sorted({c for a in advs for c in a.cves})
        severity, source, score, vector = self._severity(ecosystem, vid, group, advs, order, names, cves)
        fixed = _best_fixed(SCHEME_OF[ecosystem], group)
        text = next((advs[i].summary for i in order if advs[i].summary), "") or \
            next((advs[i].details for i in order if advs[i].details), "")
        # with no KEV catalogue imported, "not listed" would read as "not exploited": it is unknown (None)
        kev = int(any(self.matcher.kev(c) for c in cves)) if self.matcher.has_kev else None
        epss_values = [e for e in (self.matcher.epss(c) for c in cves) if e is not None]
        epss = max(epss_values) if epss_values else None
        return {
            "severity": severity, "severity_source": source, "aliases": sorted(names), "fixed_version": fixed,
            "cvss_score": score, "cvss_vector": vector,
            "published": min((a.published for a in advs if a.published), default=None),
            "description": text[:DESCRIPTION_MAX],
            "matched_by": [{"record": m.candidate.advisory_id, "ecosystem": m.candidate.raw_ecosystem,
                            "package": m.candidate.raw_name, "version": version, "range": m.hit.why,
                            "source": a.source_file, **({"possibly_affected": True} if m.hit.possible else {})}
                           for m, a in zip(group, advs)],
            "kev": kev, "epss": epss, "urgency": _urgency(severity, bool(kev), epss, fixed),
        }

    def _severity(self, ecosystem: str, vid: str, group: list[Match], advs: list, order: list[int], names: set,
                  cves: list[str]) -> tuple[str, str, float | None, str | None]:
        """(level, where it came from, CVSS score, vector), from the first source that has one: the matched
        records' own rating — for an OS package the vendor's (Debian urgency, Ubuntu priority, Red Hat /
        SUSE / openEuler severity: the distribution rates the impact of its own build), else the record's
        CVSS (v3, v4, v2) and then an advisory database's own rating (GHSA); another record in the store
        for the same vulnerability; NVD. 'unknown' only when none has one. A record's CVSS score is kept
        beside a vendor rating."""
        scored = next((advs[i] for i in order if advs[i].cvss_score is not None), None)
        vendor = next((m.candidate.severity for m in group if m.candidate.severity), None) \
            or next((advs[i].database_severity for i in order if advs[i].database_severity), None)
        if vendor and ecosystem in DISTRIBUTION_ECOSYSTEMS:
            return vendor, "vendor", scored.cvss_score if scored else None, scored.cvss_vector if scored else None
        if scored is not None and scored.severity:
            return scored.severity, "record_cvss", scored.cvss_score, scored.cvss_vector
        if vendor:
            return vendor, "record", None, None
        rated = next((advs[i].severity for i in order if advs[i].severity), None)
        if rated:
            return rated, "record", None, None
        other = self.matcher.aliased_severity({vid, *names, *cves}, exclude={a.id for a in advs})
        if other:
            return other[0], "alias", other[1], other[2]
        from_nvd = self.matcher.nvd_severity(cves or ([vid] if vid.startswith("CVE-") else []))
        if from_nvd:
            return from_nvd[0], "nvd", from_nvd[1], from_nvd[2]
        return "unknown", "unknown", None, None

    def _finding(self, pkg, ecosystem: str, vid: str, core: dict, core_hash: str, image: str) -> Finding:
        fixed = core["fixed_version"]
        target_name = pkg.source_name if ecosystem in DISTRIBUTION_ECOSYSTEMS and pkg.source_name else pkg.name
        solution = f"upgrade {target_name} to {fixed} or later" if fixed else "no fix available"
        if ecosystem in DISTRIBUTION_ECOSYSTEMS and fixed and target_name != pkg.name:
            solution += f" (source package of {pkg.name})"
        detail = {"vulnerability_id": vid, "package_name": pkg.name, "ecosystem": pkg.ecosystem,
                  "installed_version": pkg.version, "solution": solution, **core}
        severity = detail.pop("severity")
        reason = None
        if self.ignores:
            reason = self.ignores.match([vid, *core["aliases"]], pkg.name, pkg.version, pkg.purl, image, pkg.path)
            if reason:
                detail["ignore_reason"] = reason
        # what the finding says, in one value: a rematch rewrites only the findings whose content changed
        own = "\x1f".join((core_hash, vid, pkg.name, pkg.version, pkg.ecosystem, pkg.path, str(pkg.layer_index),
                            solution, reason or ""))
        detail["content_hash"] = hashlib.sha1(own.encode()).hexdigest()
        # a version known only as a range that overlaps the affected versions (matchers.version_range)
        possibly = all(m.get("possibly_affected") for m in core["matched_by"])
        title = f"{vid} in {pkg.name} {pkg.version}" + (" (possibly affected)" if possibly else "")
        return Finding(kind="vulnerability", title=title, severity=severity,
                       path=pkg.path, layer_index=pkg.layer_index, rule=vid, package=pkg.key, detail=detail)


def coverage_gap(ecosystem: str, os_owned: bool, os_family: str, os_version: str) -> str | None:
    """What a package that no advisory source covers is counted under in coverage, or None when it is
    covered elsewhere (an application package an OS package installed goes with the vendor's data)."""
    eco = (ecosystem or "").lower()
    if eco in OS_PACKAGE_TYPES:
        return None if os_owned else (f"{os_family} {os_version}".strip() or "an unidentified distribution")
    if os_owned or eco in APP_ECOSYSTEM:
        return None
    return ecosystem or "unknown ecosystem"


def unchecked_coverage(packages: Iterable[Package], os_family: str, os_version: str,
                       reason: str = "no advisory database") -> list[dict]:
    """Coverage when nothing could be checked at all: every ecosystem with packages, not checked."""
    os_key = image_release(os_family, os_version)
    counts: Counter = Counter()
    seen = set()
    for pkg in packages:
        if pkg.key in seen:
            continue
        seen.add(pkg.key)
        target = match_target(pkg, os_key)
        label = (f"{target[0]}:{target[1]}" if target[1] else target[0]) if target else \
            coverage_gap(pkg.ecosystem, pkg.os_owned, os_family, os_version)
        if label:
            counts[label] += 1
    return [{"ecosystem": label, "packages": n, "advisories": 0, "checked": False, "reason": reason}
            for label, n in sorted(counts.items())]


def policy_ignore_file(policy: dict) -> str | None:
    section = policy.get("vulnerabilities") if isinstance(policy, dict) else None
    return section.get("ignore_file") if isinstance(section, dict) else None


@register
class Vulnerabilities(Analyzer):
    name = "vulnerabilities"
    version = 1
    risk = "vulnerabilities"
    stage = "evaluate"  # matches in the writer, against its advisory store
    needs_db = True
    consumes = ("os", "packages")
    produces = ("findings", "facts")
    reads_layers = False

    def collect(self, ctx, layers):
        conn = ctx.db.conn if ctx.db is not None and hasattr(ctx.db, "conn") else ctx.db
        if conn is None or not store.has_store(conn):
            ctx.warn("vulnerabilities: no advisory database; run `stowaway db import` or `stowaway db update`")
            yield Fact("vulnerability_coverage", unchecked_coverage(ctx.packages, ctx.os.family, ctx.os.version))
            return
        rules = ignore_rules.load(policy_ignore_file(ctx.policy))
        for w in rules.warnings():
            ctx.warn(f"vulnerabilities: {w}")
        evaluation = Evaluation(Matcher(conn), rules)
        yield from evaluation.evaluate(ctx.packages, ctx.os.family, ctx.os.version, ctx.spec.reference)
        for message, n in (evaluation.warnings + evaluation.matcher.warnings).most_common(20):
            ctx.warn(f"vulnerabilities: {message}" + (f" ({n}×)" if n > 1 else ""))
        yield Fact("vulnerability_feed", store.feed_summary(conn))
        yield Fact("vulnerability_coverage", evaluation.last_coverage)
        yield Fact("vulnerability_fixes", evaluation.last_fixes)
