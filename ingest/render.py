"""`scan` and `report` output: the findings of a JSON report (REPORT.md) as a terminal table, SARIF 2.1.0
or CSV, with the filters and the `--fail-on` gate.

Everything here reads the report that `report.build` makes from the database, so the table, SARIF, CSV
and JSON of one image always agree, and suppressed findings are the ones the findings store marked
(`suppressed`, or the vulnerability matcher's older `ignored`). A finding is *failing* when it is in the
report and is not a passed check; the gate counts failing, unsuppressed findings that survive the
filters.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import textwrap
from dataclasses import dataclass, field
from typing import Any, Iterable

from .model import FORMATS, SEVERITIES, ScanError  # noqa: F401  (FORMATS re-exported)

SEVERITY_RANK = {s: i for i, s in enumerate(SEVERITIES)}
# GitHub code scanning reads `security-severity` (a CVSS-like score as a string) to label a result
# critical (>= 9.0), high (7.0-8.9), medium (4.0-6.9) or low (0.1-3.9); `level` is SARIF's own.
SECURITY_SEVERITY = {"critical": "9.5", "high": "8.0", "medium": "5.5", "low": "2.0", "negligible": "0.1",
                     "unknown": "0.1"}
SARIF_LEVEL = {"critical": "error", "high": "error", "medium": "warning", "low": "note", "negligible": "note",
               "unknown": "note"}
KIND_TITLES = {"vulnerability": "Vulnerabilities", "secret": "Secrets", "malware": "Malicious files",
               "unsafe_setting": "Unsafe settings", "compliance": "Software compliance", "base_image": "Base image"}
# --risk TYPE names the report sections it keeps
RISK_KINDS = {"vulnerabilities": {"vulnerability"}, "malicious": {"malware"}, "secrets": {"secret"},
              "unsafe_settings": {"unsafe_setting"}, "compliance": {"compliance"}, "base_image": {"base_image"},
              "software": set(), "files": set()}
CSV_COLUMNS = ["image", "kind", "severity", "id", "title", "package", "installed_version", "fixed_version", "path",
               "layer_index", "layer_created_by", "target", "evidence", "masked", "suppressed", "suppressed_reason"]


@dataclass
class Item:
    """One failing finding of one image, whatever its kind."""

    image: str
    kind: str
    severity: str
    id: str
    title: str = ""
    path: str = ""
    layer_index: int | None = None
    layer_command: str = ""
    package: str = ""
    ecosystem: str = ""
    installed: str = ""
    fixed: str = ""
    target: str = ""
    evidence: str = ""
    masked: str = ""
    line: int | None = None
    suppressed: bool = False
    reason: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def rank(self) -> int:
        return SEVERITY_RANK.get(self.severity, len(SEVERITIES))

    def fingerprint(self) -> str:
        parts = [self.image, self.kind, self.id, self.package, self.installed, self.path, self.target]
        return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def _sev(value) -> str:
    value = (value or "unknown").lower()
    return value if value in SEVERITY_RANK else "unknown"


def _suppressed(entry: dict) -> tuple[bool, str]:
    if entry.get("suppressed"):
        return True, entry.get("suppressed_reason") or ""
    if entry.get("ignored"):
        return True, entry.get("ignore_reason") or entry.get("suppressed_reason") or ""
    return False, ""


def items(report: dict) -> list[Item]:
    """Every failing finding of the report (passed checks are not findings), suppressed ones marked."""
    image = (report.get("image") or {}).get("reference") or ""
    layers = {layer.get("index"): layer.get("created_by") or "" for layer in (report.get("image") or {}).get("layers") or []}
    out: list[Item] = []

    def add(kind: str, entry: dict, **kw) -> None:
        s, reason = _suppressed(entry)
        li = entry.get("layer_index")
        out.append(Item(image=image, kind=kind, severity=_sev(entry.get("severity")), layer_index=li,
                        layer_command=layers.get(li, ""), path=entry.get("path") or "", suppressed=s, reason=reason,
                        **kw))

    for v in report.get("vulnerabilities") or []:
        pkg = v.get("package") or {}
        add("vulnerability", {**v, "path": pkg.get("path") or v.get("path")}, id=v.get("id") or "",
            title=v.get("title") or "", package=pkg.get("name") or "", ecosystem=pkg.get("ecosystem") or "",
            installed=pkg.get("version") or "", fixed=v.get("fixed_version") or "",
            extra={"aliases": v.get("aliases") or [], "cvss_score": v.get("cvss_score")})
    for m in report.get("malicious_files") or []:
        add("malware", m, id=m.get("rule") or "", title=m.get("title") or "malicious file",
            extra={"visible": m.get("visible")})
    for s in report.get("sensitive_information") or []:
        add("secret", s, id=s.get("rule") or "", title=s.get("title") or "", masked=s.get("masked") or "",
            line=s.get("line"), extra={"visible": s.get("visible"), "source": s.get("source")})
    for u in report.get("unsafe_settings") or []:
        if (u.get("result") or "fail") != "fail":
            continue
        add("unsafe_setting", u, id=u.get("check_id") or "", title=u.get("title") or "",
            target=str(u.get("target") or ""), evidence=str(u.get("evidence") or ""),
            extra={"category": u.get("category"), "suggestion": u.get("suggestion")})
    for c in report.get("software_compliance") or []:
        add("compliance", c, id=c.get("rule") or "", title=c.get("reason") or "forbidden software",
            package=c.get("name") or "", installed=c.get("version") or "")
    base = report.get("base_image") or {}
    if base.get("approved") is False:
        add("base_image", {**base, "severity": base.get("severity") or "medium"}, id="unapproved-base-image",
            title="not built on an approved base image" + (f" (closest: {base['closest']})" if base.get("closest") else ""))
    return out


@dataclass
class Filters:
    severities: set[str] | None = None
    ignore_unfixed: bool = False
    kinds: set[str] | None = None

    @classmethod
    def from_args(cls, args) -> "Filters":
        sev = None
        if getattr(args, "severity", None):
            sev = set()
            for part in ",".join(args.severity).split(","):
                part = part.strip().lower()
                if not part:
                    continue
                if part not in SEVERITY_RANK:
                    raise ScanError(f"--severity {part}: choose from {', '.join(SEVERITIES)}")
                sev.add(part)
        kinds = None
        if getattr(args, "risk", None):
            kinds = set().union(*(RISK_KINDS.get(r, set()) for r in args.risk))
        return cls(sev, bool(getattr(args, "ignore_unfixed", False)), kinds)

    def keep(self, item: Item) -> bool:
        if self.severities is not None and item.severity not in self.severities:
            return False
        if self.kinds is not None and item.kind not in self.kinds:
            return False
        if self.ignore_unfixed and item.kind == "vulnerability" and not item.fixed:
            return False
        return True

    def apply(self, found: Iterable[Item]) -> list[Item]:
        return [i for i in found if self.keep(i)]


def gate(found: Iterable[Item], fail_on: str | None) -> list[Item]:
    """The unsuppressed findings at or above `fail_on` (already filtered)."""
    if not fail_on:
        return []
    limit = SEVERITY_RANK[fail_on]
    return [i for i in found if not i.suppressed and i.rank <= limit]


# --- the terminal table ------------------------------------------------------------------------------

COLOURS = {"critical": "\033[1;31m", "high": "\033[31m", "medium": "\033[33m", "low": "\033[36m"}
RESET = "\033[0m"
WIDTH = 100


def _cut(text: Any, width: int) -> str:
    """One line of at most `width` characters (leading indentation kept, inner whitespace collapsed)."""
    raw = str(text if text is not None else "")
    indent = raw[: len(raw) - len(raw.lstrip(" "))]
    text = indent + re.sub(r"\s*[\r\n\t]\s*", " ", raw.strip())
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


def short_command(command: str) -> str:
    """A layer's build command as the Dockerfile said it: `/bin/sh -c #(nop) COPY ...` -> `COPY ...`,
    `/bin/sh -c apt-get ...` -> `RUN apt-get ...`; values of sensitive names masked."""
    command = _mask_command(" ".join((command or "").split()))
    for prefix in ("/bin/sh -c #(nop) ", "|"):
        if command.startswith(prefix):
            command = command[len(prefix):].lstrip()
            if prefix == "|":  # `|2 ARG=1 ARG=2 /bin/sh -c ...`: build args first
                command = command.split(" ", 1)[1] if " " in command else command
                command = command[command.find("/bin/sh -c "):] if "/bin/sh -c " in command else command
    if command.startswith("/bin/sh -c #(nop) "):
        command = command[len("/bin/sh -c #(nop) "):]
    elif command.startswith("/bin/sh -c "):
        command = "RUN " + command[len("/bin/sh -c "):]
    return command.strip()


def _layer(item: Item) -> str:
    if item.layer_index is None:
        return ""
    command = short_command(item.layer_command)
    return f"layer {item.layer_index}" + (f" ({command})" if command else "")


def _mask_command(command: str) -> str:
    from .masking import mask_command

    return mask_command(command) or ""


def summary_rows(found: list[Item], counts: dict | None = None) -> list[tuple]:
    """Per item: failing unsuppressed findings by severity, fixable, suppressed. `counts` is the read
    model's (readmodel.counts) for an unfiltered view; with filters they come from the filtered items."""
    rows = []
    for kind, title in KIND_TITLES.items():
        mine = [i for i in found if i.kind == kind]
        if counts is not None:
            failing = (counts.get("failing") or {}).get(kind) or {}
            suppressed = sum(((counts.get("suppressed") or {}).get(kind) or {}).values())
        else:
            failing = {}
            for i in mine:
                if not i.suppressed:
                    failing[i.severity] = failing.get(i.severity, 0) + 1
            suppressed = sum(1 for i in mine if i.suppressed)
        if not failing and not suppressed:
            continue
        main = [failing.get(s, 0) for s in ("critical", "high", "medium", "low")]
        total = sum(failing.values())
        fixable = sum(1 for i in mine if i.fixed and not i.suppressed) if kind == "vulnerability" else None
        rows.append((title, *main, total - sum(main), total, "-" if fixable is None else fixable, suppressed))
    return rows


def coverage_gaps(report: dict) -> list[str]:
    """Ecosystems whose packages could not be checked, from `coverage` (or the scan's warnings before
    the report had it): such packages are never shown as clean."""
    gaps = []
    for c in (report.get("coverage") or {}).get("vulnerabilities") or []:
        if not c.get("checked"):
            gaps.append(f"{c.get('ecosystem')}: {c.get('packages')} packages not checked"
                        + (f" ({c['reason']})" if c.get("reason") else " (no advisories in the store)"))
    if not gaps:
        for w in (report.get("scan") or {}).get("warnings") or []:
            if "advisories" in w and ("no " in w or "not checked" in w):
                gaps.append(w)
    return gaps


def exclusions_note(excl: dict) -> str | None:
    """The secret search's path exclusions when they left files out: a gap the reader should see."""
    n = excl.get("files_excluded") or 0
    if not n:
        return None
    patterns = excl.get("exclude_paths") or []
    under = (f"{len(patterns)} excluded path patterns"
             + (" (built-in ones included)" if excl.get("default_excludes", True) else " (built-in ones off)"))
    note = f"secrets: {n} file{'s' if n != 1 else ''} not searched, under {under}"
    if excl.get("include_paths"):
        note += "; searched anyway: " + ", ".join(excl["include_paths"])
    return note + "; see the policy's [secrets] exclude_paths, default_excludes and include_paths"


def table(report: dict, found: list[Item], colour: bool = False, shown_filters: str = "",
          counts: dict | None = None) -> str:
    out = io.StringIO()
    img = report.get("image") or {}
    scan = report.get("scan") or {}

    def w(line: str = "") -> None:
        out.write(line.rstrip() + "\n")

    def sev(s: str) -> str:
        label = s.upper().ljust(8)
        return f"{COLOURS[s]}{label}{RESET}" if colour and s in COLOURS else label

    os_text = " ".join(x for x in ((img.get("os") or {}).get("family"), (img.get("os") or {}).get("version")) if x)
    w(_cut(f"{img.get('reference')}  ({os_text or 'unknown OS'}, {len(img.get('layers') or [])} layers,"
           f" {(img.get('manifest_digest') or '')[:19]})", WIDTH))
    w(_cut(f"scan {scan.get('id')} finished {scan.get('finished_at')}" + (f"; filters: {shown_filters}" if shown_filters
                                                                           else ""), WIDTH))
    w()
    rows = summary_rows(found, counts)
    head = ("", "CRITICAL", "HIGH", "MEDIUM", "LOW", "OTHER", "TOTAL", "FIXABLE", "SUPPRESSED")
    if rows:
        widths = [20, 8, 6, 6, 5, 5, 5, 7, 10]
        w("  ".join(h.rjust(wd) if i else h.ljust(wd) for i, (h, wd) in enumerate(zip(head, widths))))
        for r in rows:
            w("  ".join(str(c).rjust(wd) if i else str(c).ljust(wd) for i, (c, wd) in enumerate(zip(r, widths))))
    else:
        w("no findings" + (" after the filters" if shown_filters else ""))
    gaps = coverage_gaps(report)
    note = exclusions_note(scan.get("secrets_exclusions") or {})
    if note:
        gaps = gaps + [note]
    w()
    w("coverage gaps: " + ("none" if not gaps else ""))
    for g in gaps:
        for line in textwrap.wrap(g, WIDTH - 4, initial_indent="  ", subsequent_indent="    "):
            w(line)
    for kind, title in KIND_TITLES.items():
        mine = sorted((i for i in found if i.kind == kind), key=lambda i: (i.suppressed, i.rank, i.id, i.package))
        if not mine:
            continue
        w()
        w(f"{title} ({len(mine)})")
        w("-" * min(WIDTH, len(title) + 8))
        if kind == "vulnerability":
            idw = max(2, min(max(len(i.id) for i in mine), 19))
            instw = max(9, min(max(len(i.installed) for i in mine), 16))
            fixw = min(max(len(i.fixed or "no fix") for i in mine), 16)
            pkgw = max(12, WIDTH - 9 - idw - 1 - 1 - instw - 4 - fixw)
            pkgw = max(7, min(pkgw, max(len(i.package) for i in mine)))
            w(f"{'SEVERITY':<8} {'ID':<{idw}} {'PACKAGE':<{pkgw}} {'INSTALLED':<{instw}}    FIXED")
        for i in mine:
            mark = "[suppressed" + (f": {i.reason}" if i.reason else "") + "]  " if i.suppressed else ""
            if kind == "vulnerability":
                w(f"{sev(i.severity)} {_cut(i.id, idw):<{idw}} {_cut(i.package, pkgw):<{pkgw}}"
                  f" {_cut(i.installed, instw):<{instw}} -> {_cut(i.fixed or 'no fix', fixw)}")
            elif kind == "secret":
                w(f"{sev(i.severity)} {_cut(i.id, 24):<24} {_cut(i.masked, 20):<20} "
                  + _cut(f"{i.path}" + (f":{i.line}" if i.line else ""), 44))
            elif kind == "unsafe_setting":
                w(f"{sev(i.severity)} {_cut(i.id, 30):<30} " + _cut(i.title, 60))
                w(_cut(f"         target: {i.target}" + (f"   evidence: {i.evidence}" if i.evidence else ""), WIDTH))
            elif kind == "compliance":
                w(f"{sev(i.severity)} {_cut(i.id, 24):<24} {_cut(i.package + ' ' + i.installed, 30):<30} "
                  + _cut(i.title, 35))
            else:
                w(f"{sev(i.severity)} {_cut(i.id, 30):<30} " + _cut(i.title, 60))
            where = i.path if kind != "secret" else ""
            detail = "  ".join(x for x in (where, _layer(i)) if x)
            if detail or mark:
                w(_cut(f"         {mark}{detail}", WIDTH))
    warnings = scan.get("warnings") or []
    if warnings:
        w()
        w(f"warnings ({len(warnings)})")
        for x in warnings:
            for line in textwrap.wrap(x, WIDTH - 4, initial_indent="  ", subsequent_indent="    "):
                w(line)
    return out.getvalue()


# --- SARIF 2.1.0 -------------------------------------------------------------------------------------

SARIF_SCHEMA = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"


def _rule_id(i: Item) -> str:
    return f"{i.kind}/{i.id}" if i.kind != "vulnerability" else i.id


def _uri(path: str) -> str:
    outer = path.split("!/", 1)[0]
    return outer.lstrip("/") or outer


def sarif(reports: list[dict], found: list[Item], version: str = "0.1.0") -> dict:
    """One run, every failing unsuppressed finding (no page limit), one rule per distinct id."""
    rules: dict[str, dict] = {}
    index: dict[str, int] = {}  # rule id -> its position in `rules` (insertion order, as rules is built)
    results = []
    for i in found:
        if i.suppressed:
            continue
        rid = _rule_id(i)
        rule = rules.get(rid)
        score = i.extra.get("cvss_score")
        security = f"{float(score):.1f}" if i.kind == "vulnerability" and isinstance(score, (int, float)) and score \
            else SECURITY_SEVERITY[i.severity]
        if rule is None:
            name = i.title or i.id
            rule = rules[rid] = {
                "id": rid, "name": "".join(p.capitalize() for p in i.kind.split("_")),
                "shortDescription": {"text": _cut(name, 200) or rid},
                "fullDescription": {"text": name or rid},
                "defaultConfiguration": {"level": SARIF_LEVEL[i.severity]},
                "help": {"text": _help(i), "markdown": _help(i)},
                "properties": {"security-severity": security, "precision": "very-high",
                               "tags": ["security", i.kind.replace("_", "-"), i.severity]},
            }
            if i.kind == "vulnerability" and i.id.startswith(("CVE-", "GHSA-")):
                rule["helpUri"] = (f"https://nvd.nist.gov/vuln/detail/{i.id}" if i.id.startswith("CVE-")
                                   else f"https://github.com/advisories/{i.id}")
        elif float(security) > float(rule["properties"]["security-severity"]):
            rule["properties"]["security-severity"] = security
        location: dict[str, Any] = {"physicalLocation": {"artifactLocation": {"uri": _uri(i.path or i.target or i.image)}}}
        if i.line:
            location["physicalLocation"]["region"] = {"startLine": int(i.line)}
        if i.layer_index is not None:
            location["logicalLocations"] = [{"name": f"layer {i.layer_index}", "kind": "module",
                                             "fullyQualifiedName": f"{i.image}@layer {i.layer_index}"}]
        props: dict[str, Any] = {"image": i.image, "severity": i.severity, "layer_index": i.layer_index}
        if i.layer_command:
            props["layer_created_by"] = _mask_command(i.layer_command)
        if i.path:
            props["path"] = i.path
        if i.kind == "vulnerability":
            props.update(package=i.package, installed_version=i.installed, fixed_version=i.fixed or None)
        if i.kind == "secret":
            props["masked"] = i.masked
        if i.kind == "unsafe_setting":
            props.update(target=i.target, evidence=i.evidence)
        results.append({"ruleId": rid, "ruleIndex": index.setdefault(rid, len(index)), "level": SARIF_LEVEL[i.severity],
                        "message": {"text": _message(i)}, "locations": [location],
                        "partialFingerprints": {"stowaway/v1": i.fingerprint()}, "properties": props})
    return {
        "$schema": SARIF_SCHEMA, "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": "Stowaway", "version": version, "semanticVersion": version,
                                "informationUri": "https://github.com/stowaway/stowaway",
                                "rules": list(rules.values())}},
            "results": results,
            "properties": {"images": [(r.get("image") or {}).get("reference") for r in reports]},
        }],
    }


def _message(i: Item) -> str:
    where = f" in {i.path}" if i.path else ""
    layer = f" (layer {i.layer_index})" if i.layer_index is not None else ""
    if i.kind == "vulnerability":
        fix = f"; fixed in {i.fixed}" if i.fixed else "; no fix yet"
        return f"{i.image}: {i.package} {i.installed} is affected by {i.id} ({i.severity}){fix}{where}{layer}"
    if i.kind == "secret":
        return f"{i.image}: {i.title or i.id} ({i.masked}){where}{layer}"
    if i.kind == "unsafe_setting":
        return f"{i.image}: {i.title}: {i.target}" + (f" ({i.evidence})" if i.evidence else "") + layer
    return f"{i.image}: {i.title or i.id}{where}{layer}"


def _help(i: Item) -> str:
    if i.kind == "vulnerability":
        return (f"{i.id} affects {i.package}." + (f" Upgrade to {i.fixed} or later." if i.fixed else " No fix yet."))
    if i.kind == "unsafe_setting" and i.extra.get("suggestion"):
        return str(i.extra["suggestion"])
    return i.title or i.id


# --- CSV -----------------------------------------------------------------------------------------------

def to_csv(found: list[Item]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for i in sorted(found, key=lambda i: (i.image, i.kind, i.rank, i.id)):
        writer.writerow([i.image, i.kind, i.severity, i.id, i.title, i.package, i.installed, i.fixed, i.path,
                         i.layer_index, _mask_command(i.layer_command), i.target, i.evidence, i.masked,
                         "true" if i.suppressed else "false", i.reason])
    return buf.getvalue()


def to_json(reports: list[dict]) -> str:
    """One report as REPORT.md has it; several (an index, several sources) as a JSON array of them."""
    return json.dumps(reports[0] if len(reports) == 1 else reports, indent=2, ensure_ascii=False)
