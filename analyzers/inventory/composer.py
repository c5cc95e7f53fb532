"""PHP packages installed by Composer: `vendor/composer/installed.json` (Composer 1 list or 2 object)."""
from __future__ import annotations

from ..base import Analyzer, register
from ._app import collect_packages, package, read_json

MAX_SIZE = 32 << 20


@register
class ComposerPackages(Analyzer):
    name = "composer"
    version = 1
    risk = "software"
    consumes = ("owned_files",)
    produces = ("packages",)

    def required(self, path, info):
        return path.endswith("/vendor/composer/installed.json")

    def analyze(self, file):
        doc, problems = read_json(file, MAX_SIZE)
        if doc is None:
            return problems
        entries = doc.get("packages") if isinstance(doc, dict) else doc
        out = []
        for e in entries if isinstance(entries, list) else ():
            if not isinstance(e, dict):
                continue
            name, version = e.get("name"), e.get("version")
            if not isinstance(name, str) or not isinstance(version, str) or not name or not version:
                continue
            lic = e.get("license")
            licenses = [x for x in lic if isinstance(x, str)] if isinstance(lic, list) else [lic] if isinstance(lic, str) else []
            if len(version) > 1 and version[0] in "vV" and version[1].isdigit():
                version = version[1:]  # 'v1.2.3' is how tags are often written; advisories say '1.2.3'
            out.append(package("composer", name, version, file.path, licenses=licenses))
        return out

    def collect(self, ctx, layers):
        return collect_packages(ctx, layers, self.name)
