"""Debian packages: /var/lib/dpkg/status, distroless status.d/, file ownership and DEP-5 licences.

Which packages exist comes from the database the final image shows; the layer of each comes from
the per-layer copies (see _ospkg.attribute). The files every package owns (info/*.list, *.md5sums)
are left on `ctx.owned_files` for later analyzers, so that they can tell OS files from the rest.
"""
from __future__ import annotations

import re

from stowaway.ingest.model import Package

from ..base import Analyzer, register
from ._ospkg import attribute, distro_qualifier, max_package_db, package_db_fingerprint, purl, report_problems

STATUS = "/var/lib/dpkg/status"
STATUS_D = "/var/lib/dpkg/status.d/"
INFO = "/var/lib/dpkg/info/"
DOC = "/usr/share/doc/"
MAX_FILE_LIST = 16 << 20
MAX_COPYRIGHT = 512 << 10
MAX_WARNINGS = 50

# what dpkg itself calls "not installed": the package's files are gone
ABSENT = {"not-installed", "config-files"}
KEPT = {"Package": "name", "Version": "version", "Architecture": "arch", "Source": "source", "Status": "status",
        "Maintainer": "maintainer", "Installed-Size": "installed_size", "Multi-Arch": "multi_arch"}
_PARAGRAPHS = re.compile(r"\n[ \t]*\n")
_SOURCE = re.compile(r"^(\S+)(?:\s*\((.*)\))?\s*$")


def parse_status(text: str) -> tuple[list[dict], list[str]]:
    """Installed packages of a dpkg status file (or status.d entry), and what was wrong with it."""
    packages: list[dict] = []
    warnings: list[str] = []
    for number, block in enumerate(_PARAGRAPHS.split(text.replace("\r\n", "\n"))):
        if not block.strip():
            continue
        fields: dict[str, str] = {}
        bad = 0
        for line in block.split("\n"):
            if not line or line[0] in " \t":
                continue  # continuation of a multi-line field (Description, Conffiles): not needed
            key, sep, value = line.partition(":")
            if not sep or " " in key:
                bad += 1
                continue
            field = KEPT.get(key)
            if field:
                fields[field] = value.strip()
        name, version = fields.get("name", ""), fields.get("version", "")
        if not name or not version:
            if len(warnings) < MAX_WARNINGS:
                what = f"package {name!r}" if name else f"paragraph {number + 1}"
                warnings.append(f"{what} has no {'Version' if name else 'Package'} field; skipped")
            continue
        if bad and len(warnings) < MAX_WARNINGS:
            warnings.append(f"package {name}: {bad} malformed line(s) ignored")
        status = fields.pop("status", "")
        state = status.split()[-1] if status.split() else ""
        if state in ABSENT:
            continue
        source, source_version = name, version
        m = _SOURCE.match(fields.pop("source", ""))
        if m:
            source = m.group(1)
            source_version = (m.group(2) or "").strip() or version
        fields.update(source=source, source_version=source_version)
        if status:
            fields["status"] = status
        packages.append(fields)
    return packages, warnings


def parse_file_list(text: str, md5sums: bool) -> list[str]:
    """Absolute paths from info/NAME.list (absolute already) or NAME.md5sums ('<md5>  <relative path>')."""
    out = []
    for line in text.splitlines():
        if md5sums:
            _, _, line = line.partition(" ")
            line = line.lstrip(" *")
        if not line or line == "/.":
            continue
        out.append(line if line.startswith("/") else "/" + line)
    return out


def parse_copyright(text: str) -> list[str]:
    """Licence short names of a machine-readable (DEP-5) copyright file; [] for free-form ones."""
    seen: dict[str, None] = {}
    for m in re.finditer(r"(?m)^License:[ \t]*(\S[^\n]*)$", text):
        name = m.group(1).strip()
        if name and len(name) <= 100:
            seen.setdefault(name, None)
        if len(seen) >= 20:
            break
    return list(seen)


def _package_of_info(path: str) -> str:
    base = path.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    return base.split(":", 1)[0]  # 'libc6:amd64.list' is multi-arch 'libc6'


@register
class Dpkg(Analyzer):
    name = "dpkg"
    version = 1
    risk = "software"
    consumes = ("os",)
    produces = ("packages", "owned_files")

    def fingerprint(self):
        return package_db_fingerprint(self.policy)

    def size_cap(self, path):
        if path == STATUS:
            return max_package_db(self.policy)
        return None

    def required(self, path, info):
        if path == STATUS:
            return True
        if path.startswith(INFO):
            return (path.endswith(".list") or path.endswith(".md5sums")) and info.size <= MAX_FILE_LIST
        if path.startswith(STATUS_D):
            return info.size <= MAX_FILE_LIST
        if path.startswith(DOC) and path.endswith("/copyright"):
            return path.count("/") == 5 and info.size <= MAX_COPYRIGHT
        return False

    def analyze(self, file):
        path = file.path
        if path.startswith(DOC):
            licenses = parse_copyright(file.text())
            return [{"kind": "copyright", "path": path, "licenses": licenses}] if licenses else []
        if path.endswith(".md5sums") or path.startswith(INFO):
            package = _package_of_info(path)
            return [{"kind": "files", "path": path, "package": package,
                     "files": parse_file_list(file.text(), path.endswith(".md5sums"))}]
        packages, warnings = parse_status(file.text())
        record = {"kind": "status" if path == STATUS else "status.d", "path": path, "packages": packages}
        if warnings:
            record["warnings"] = warnings
        return [record]

    def collect(self, ctx, layers):
        owned = ctx.owned_files  # a declared product: app inventories and compliance consume it
        licenses_of: dict[str, list[str]] = {}
        databases: list[tuple[int, dict]] = []
        for index, records in enumerate(layers):
            for r in records:
                if not ctx.fs.visible(r["path"], index):
                    continue
                kind = r.get("kind")
                if kind == "files":
                    owned.update(r["files"])
                elif kind == "copyright":
                    licenses_of[r["path"][len(DOC):].split("/", 1)[0]] = r["licenses"]
                elif kind in ("status", "status.d"):
                    databases.append((index, r))
        namespace = ctx.os.family if ctx.os.family in ("debian", "ubuntu", "uos", "kylin") else "debian"
        distro = distro_qualifier(ctx.os)
        for final_layer, record in databases:
            path = record["path"]
            history = [(i, {(p["name"], p["version"]) for r in recs if r.get("path") == path
                            for p in r.get("packages", ())})
                       for i, recs in enumerate(layers) if any(r.get("path") == path for r in recs)]
            report_problems(ctx, self.name, path, record.get("warnings", ()))
            for p in record["packages"]:
                yield self._package(p, path, attribute(final_layer, (p["name"], p["version"]), history),
                                    namespace, distro, licenses_of, ctx)

    def _package(self, p, path, layer, namespace, distro, licenses_of, ctx):
        name, version, arch = p["name"], p["version"], p.get("arch", "")
        qualifiers = {"arch": arch, "distro": distro}
        if p["source"] != name:
            qualifiers["upstream"] = p["source"] if p["source_version"] == version else f"{p['source']}@{p['source_version']}"
        licenses = licenses_of.get(name) or licenses_of.get(_doc_dir(ctx, name)) or []
        metadata = {k: p[k] for k in ("maintainer", "installed_size", "multi_arch", "status") if p.get(k)}
        return Package(ecosystem="deb", name=name, version=version, path=path, layer_index=layer, arch=arch,
                       source_name=p["source"], source_version=p["source_version"],
                       purl=purl("deb", namespace, name, version, qualifiers), licenses=tuple(licenses),
                       metadata=metadata)


def _doc_dir(ctx, name: str) -> str:
    # /usr/share/doc/libfoo-dev is often a symlink to the doc directory of the library it ships with
    real = ctx.fs.resolve(f"{DOC}{name}")
    if real and real.startswith(DOC):
        return real[len(DOC):].split("/", 1)[0]
    return ""
