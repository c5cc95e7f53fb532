"""Alpine packages from /lib/apk/db/installed (apk's 'installed' database, one-letter fields).

Blank-line separated stanzas: P name, V version ('1.2.3-r0'), A arch, o origin (the source package),
L licence, F directory and R file within it (the package's files), among others.
"""
from __future__ import annotations

from stowaway.ingest.model import Package

from ..base import Analyzer, register
from ._ospkg import attribute, distro_qualifier, max_package_db, package_db_fingerprint, purl, report_problems

PATHS = frozenset({"/lib/apk/db/installed", "/usr/lib/apk/db/installed"})
MAX_WARNINGS = 50
FIELDS = {"P": "name", "V": "version", "A": "arch", "o": "origin", "L": "license", "m": "maintainer",
          "U": "url", "T": "description", "I": "installed_size", "t": "build_time", "c": "commit"}


def parse_installed(text: str) -> tuple[list[dict], list[str]]:
    packages: list[dict] = []
    warnings: list[str] = []
    current: dict = {}
    files: list[str] = []
    directory = ""
    number = 0

    def close():
        nonlocal current, files, directory
        if current:
            if current.get("name") and current.get("version"):
                current["files"] = files
                packages.append(current)
            elif len(warnings) < MAX_WARNINGS:
                what = f"package {current['name']!r}" if current.get("name") else f"stanza {number}"
                warnings.append(f"{what} has no {'V' if current.get('name') else 'P'} field; skipped")
        current, files, directory = {}, [], ""

    for line in text.splitlines():
        if not line.strip():
            close()
            continue
        if len(line) < 2 or line[1] != ":":
            if len(warnings) < MAX_WARNINGS:
                warnings.append(f"malformed line {line[:60]!r} ignored")
            continue
        if not current and not files:
            number += 1
        key, value = line[0], line[2:]
        if key == "F":
            directory = value
            files.append("/" + value)
        elif key == "R":
            files.append(f"/{directory}/{value}" if directory else "/" + value)
        elif key in FIELDS:
            current[FIELDS[key]] = value
    close()
    return packages, warnings


@register
class Apk(Analyzer):
    name = "apk"
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
        packages, warnings = parse_installed(file.text())
        record = {"kind": "apk", "path": file.path, "packages": packages}
        if warnings:
            record["warnings"] = warnings
        return [record]

    def collect(self, ctx, layers):
        owned = ctx.owned_files  # a declared product: app inventories and compliance consume it
        visible = [(i, r) for i, records in enumerate(layers) for r in records if ctx.fs.visible(r["path"], i)]
        if not visible:
            return
        final_layer, record = max(visible, key=lambda v: v[0])
        report_problems(ctx, self.name, record["path"], record.get("warnings", ()))
        history = [(i, {(p["name"], p["version"]) for r in recs for p in r.get("packages", ())})
                   for i, recs in enumerate(layers) if recs]
        distro = distro_qualifier(ctx.os)
        namespace = ctx.os.family if ctx.os.family in ("alpine", "wolfi", "chainguard") else "alpine"
        for p in record["packages"]:
            owned.update(p.get("files", ()))
            origin = p.get("origin") or p["name"]
            qualifiers = {"arch": p.get("arch", ""), "distro": distro}
            if origin != p["name"]:
                qualifiers["upstream"] = origin
            metadata = {k: p[k] for k in ("maintainer", "url", "installed_size", "build_time", "commit") if p.get(k)}
            yield Package(ecosystem="apk", name=p["name"], version=p["version"], path=record["path"],
                          layer_index=attribute(final_layer, (p["name"], p["version"]), history),
                          arch=p.get("arch", ""), source_name=origin, source_version=p["version"],
                          purl=purl("apk", namespace, p["name"], p["version"], qualifiers),
                          licenses=(p["license"],) if p.get("license") else (), metadata=metadata)
