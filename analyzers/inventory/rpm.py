"""RPM packages from the rpm database, in whichever of its three formats the image has.

Berkeley DB 'Packages', ndb 'Packages.db' and SQLite 'rpmdb.sqlite' are recognised by content and
read in pure Python (analyzers/inventory/rpmdb/). A damaged header costs that package and a warning,
never the rest of the database.
"""
from __future__ import annotations

from stowaway.ingest.model import Package

from ..base import Analyzer, register
from ._ospkg import attribute, distro_qualifier, max_package_db, package_db_fingerprint, purl, report_problems
from .rpmdb import RpmDBError, read_packages

DIRS = ("/var/lib/rpm/", "/usr/lib/sysimage/rpm/", "/usr/share/rpm/")
NAMES = ("rpmdb.sqlite", "Packages.db", "Packages")
PATHS = frozenset(d + n for d in DIRS for n in NAMES)
FORMAT_RANK = {"sqlite": 3, "ndb": 2, "bdb": 1}
MAX_WARNINGS = 50


def evr(p: dict) -> str:
    """rpm's [epoch:]version-release (epoch 0 and none both left out, as rpm -q prints them)."""
    core = f"{p['version']}-{p['release']}" if p.get("release") else p["version"]
    return f"{p['epoch']}:{core}" if p.get("epoch") else core


def split_source_rpm(filename: str) -> tuple[str, str]:
    """'util-linux-2.32.1-42.el8_8.src.rpm' -> ('util-linux', '2.32.1-42.el8_8')."""
    for suffix in (".src.rpm", ".nosrc.rpm"):
        if filename.endswith(suffix):
            parts = filename[: -len(suffix)].rsplit("-", 2)
            if len(parts) == 3 and all(parts):
                return parts[0], f"{parts[1]}-{parts[2]}"
    return "", ""


@register
class Rpm(Analyzer):
    name = "rpm"
    version = 1
    risk = "software"
    consumes = ("os",)
    produces = ("packages", "owned_files")

    def fingerprint(self):
        return package_db_fingerprint(self.policy)

    def size_cap(self, path):
        return max_package_db(self.policy)

    def required(self, path, info):
        return path in PATHS

    def analyze(self, file):
        try:
            fmt, packages, problems = read_packages(file.data)
        except RpmDBError as exc:
            return [{"kind": "rpmdb", "path": file.path, "format": "", "packages": [], "warnings": [str(exc)]}]
        record = {"kind": "rpmdb", "path": file.path, "format": fmt, "packages": packages}
        if problems:
            record["warnings"] = problems[:MAX_WARNINGS] + (
                [f"{len(problems) - MAX_WARNINGS} further problems"] if len(problems) > MAX_WARNINGS else [])
        return [record]

    def collect(self, ctx, layers):
        owned = ctx.owned_files  # a declared product: app inventories and compliance consume it
        visible = [(index, r) for index, records in enumerate(layers) for r in records
                   if ctx.fs.visible(r["path"], index)]
        if not visible:
            return
        # two databases left side by side (a backend conversion): the one written last is rpm's
        final_layer, record = max(visible, key=lambda v: (v[0], FORMAT_RANK.get(v[1].get("format"), 0)))
        report_problems(ctx, self.name, record["path"], record.get("warnings", ()))
        # every copy of any rpm database counts for attribution: the backend may change between layers
        history = [(i, {_key(p) for r in recs for p in r.get("packages", ())}) for i, recs in enumerate(layers) if recs]
        distro = distro_qualifier(ctx.os)
        for p in record["packages"]:
            owned.update(p.get("files", ()))
            yield self._package(p, record, attribute(final_layer, _key(p), history), ctx.os.family, distro)

    def _package(self, p, record, layer, namespace, distro):
        source_name, source_version = split_source_rpm(p.get("sourcerpm", ""))
        if source_version and p.get("epoch"):
            source_version = f"{p['epoch']}:{source_version}"  # a source rpm carries its binaries' epoch
        core = f"{p['version']}-{p['release']}" if p.get("release") else p["version"]
        qualifiers = {"arch": p.get("arch", ""), "epoch": str(p["epoch"]) if p.get("epoch") else "", "distro": distro}
        if source_name and source_name != p["name"]:
            qualifiers["upstream"] = p["sourcerpm"]
        metadata = {k: p[k] for k in ("epoch", "release", "sourcerpm", "vendor", "size", "modularitylabel", "summary")
                    if p.get(k) not in (None, "")}
        metadata["database_format"] = record.get("format", "")
        return Package(ecosystem="rpm", name=p["name"], version=evr(p), path=record["path"], layer_index=layer,
                       arch=p.get("arch", ""), source_name=source_name, source_version=source_version,
                       purl=purl("rpm", namespace, p["name"], core, qualifiers),
                       licenses=(p["license"],) if p.get("license") else (), metadata=metadata)


def _key(p: dict) -> tuple:
    return p["name"], p.get("epoch"), p.get("version"), p.get("release"), p.get("arch")
