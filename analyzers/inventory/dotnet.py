""".NET dependencies from an application's `*.deps.json` (the runtime's own record of what it loads)."""
from __future__ import annotations

from ..base import Analyzer, register
from ._app import collect_packages, package, read_json

MAX_SIZE = 32 << 20


@register
class DotnetDeps(Analyzer):
    name = "dotnet-deps"
    version = 1
    risk = "software"
    consumes = ("owned_files",)
    produces = ("packages",)

    def required(self, path, info):
        return path.endswith(".deps.json")

    def analyze(self, file):
        doc, problems = read_json(file, MAX_SIZE)
        if doc is None:
            return problems
        libraries = doc.get("libraries") if isinstance(doc, dict) else None
        out = []
        for key, lib in (libraries or {}).items() if isinstance(libraries, dict) else ():
            name, _, version = key.partition("/")
            kind = lib.get("type", "") if isinstance(lib, dict) else ""
            if not name or not version or kind not in ("package", "project"):
                continue  # 'reference' and 'runtimepack' entries are the framework, not NuGet packages
            out.append(package("nuget", name, version, file.path, metadata={"type": kind}))
        return out

    def collect(self, ctx, layers):
        return collect_packages(ctx, layers, self.name)
