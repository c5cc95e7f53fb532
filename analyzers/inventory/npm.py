"""npm packages: every `package.json` with a name and a version, in node_modules or the app's own.

A package.json is JSON anywhere in the image; one that is not an object, lacks a name or a version,
or is larger than any real one would be is skipped (the large one with a warning).
"""
from __future__ import annotations

from ..base import Analyzer, register
from ._app import collect_packages, package, read_json

MAX_SIZE = 8 << 20


def licenses_of(doc: dict) -> list[str]:
    out = []
    lic = doc.get("license")
    if isinstance(lic, str):
        out.append(lic)
    elif isinstance(lic, dict) and isinstance(lic.get("type"), str):
        out.append(lic["type"])
    for item in doc.get("licenses") or () if isinstance(doc.get("licenses"), list) else ():
        if isinstance(item, str):
            out.append(item)
        elif isinstance(item, dict) and isinstance(item.get("type"), str):
            out.append(item["type"])
    return out


@register
class NpmPackages(Analyzer):
    name = "npm"
    version = 1
    risk = "software"
    consumes = ("owned_files",)
    produces = ("packages",)

    def required(self, path, info):
        return path.endswith("/package.json")

    def analyze(self, file):
        # templates and test fixtures are often not JSON at all: no warning for those
        doc, problems = read_json(file, MAX_SIZE, warn_invalid=False)
        if not isinstance(doc, dict):
            return problems
        name, version = doc.get("name"), doc.get("version")
        if not isinstance(name, str) or not isinstance(version, str) or not name.strip() or not version.strip():
            return []
        meta = {"private": True} if doc.get("private") is True else None
        return [package("npm", name.strip(), version.strip(), file.path, licenses=licenses_of(doc), metadata=meta)]

    def collect(self, ctx, layers):
        return collect_packages(ctx, layers, self.name)
