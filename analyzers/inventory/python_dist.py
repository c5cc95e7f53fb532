"""Installed Python distributions: `*.dist-info/METADATA`, `*.egg-info/PKG-INFO` and egg-info files.

Only the header block of the core-metadata file is read (a long description can follow it), and
names are PEP 503-normalized so that 'Jinja2' and 'jinja2' are one package to the matcher.
"""
from __future__ import annotations

from ..base import Analyzer, register
from ..ecosystems import pep503
from ._app import collect_packages, package, warning

MAX_HEADER = 256 << 10  # header block of a METADATA file; past it the file is malformed


def parse_headers(data: bytes) -> tuple[dict[str, list[str]], bool]:
    """RFC 822 headers until the first blank line; (fields, complete)."""
    end = data.find(b"\n\n")
    crlf = data.find(b"\r\n\r\n")
    if crlf >= 0 and (end < 0 or crlf < end):
        end = crlf
    complete = end >= 0 or len(data) <= MAX_HEADER
    head = data[: end if end >= 0 else MAX_HEADER].decode("utf-8", "replace")
    fields: dict[str, list[str]] = {}
    key = None
    for line in head.splitlines():
        if line[:1] in (" ", "\t") and key:
            fields[key][-1] += "\n" + line.strip()
            continue
        name, sep, value = line.partition(":")
        if not sep:
            continue
        key = name.strip().lower()
        fields.setdefault(key, []).append(value.strip())
    return fields, complete


def licenses_of(fields: dict[str, list[str]]) -> list[str]:
    """License-Expression, else a short License field, else the trove classifiers."""
    if fields.get("license-expression"):
        return fields["license-expression"][:1]
    # some projects paste the whole licence text into License; only a short value names a licence
    named = [v for v in fields.get("license", []) if v and v.upper() != "UNKNOWN" and len(v) <= 100 and "\n" not in v]
    if named:
        return named
    out = []
    for c in fields.get("classifier", []):
        if c.startswith("License ::"):
            last = c.split("::")[-1].strip()
            if last and last != "OSI Approved":
                out.append(last)
    return out


@register
class PythonDistributions(Analyzer):
    name = "python-dist"
    version = 1
    risk = "software"
    consumes = ("owned_files",)
    produces = ("packages",)

    def required(self, path, info):
        return (path.endswith(".dist-info/METADATA") or path.endswith(".egg-info/PKG-INFO")
                or path.endswith(".egg-info"))

    def analyze(self, file):
        fields, complete = parse_headers(file.data)
        name = (fields.get("name") or [""])[0]
        version = (fields.get("version") or [""])[0]
        if not name or not version:
            if not complete:
                return [warning(file.path, f"{file.path}: no Name and Version in the first {MAX_HEADER} bytes")]
            return [warning(file.path, f"{file.path}: metadata without Name or Version")] if file.data.strip() else []
        return [package("pypi", pep503(name), version, file.path, licenses=licenses_of(fields))]

    def collect(self, ctx, layers):
        return collect_packages(ctx, layers, self.name)
