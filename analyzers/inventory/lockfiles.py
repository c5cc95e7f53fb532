"""Lockfiles as inventory: package-lock.json / npm-shrinkwrap.json (v1-v3), yarn.lock (v1, berry),
pnpm-lock.yaml, poetry.lock, Pipfile.lock, requirements*.txt (exact pins), go.mod / go.sum,
Gemfile.lock and composer.lock (parsers in _lockparse.py).

Each package is reported with the lockfile as its path and `metadata = {"source": "lockfile",
"lockfile": PATH}`, in the ecosystem the installed-package analyzers use, so the vulnerability matcher
treats it like an installed package. A package that installed metadata already reports for the same
project (the same ecosystem, name and version, recorded under the lockfile's directory:
`/app/node_modules/x/package.json` for `/app/package-lock.json`, a venv or `vendor/` inside the
project) is not repeated. A lockfile that cannot be parsed, or is larger than MAX_SIZE, is a scan
warning naming it; the other lockfiles are still read.
"""
from __future__ import annotations

import posixpath

from ..base import Analyzer, register
from ._app import collect_packages, package, warning
from ._lockparse import LockfileError, parser_for

MAX_SIZE = 64 << 20
MAX_PACKAGES = 50_000  # per lockfile


@register
class Lockfiles(Analyzer):
    name = "lockfiles"
    version = 1
    risk = "software"
    # installed metadata first: what it reports is not repeated from the lockfile
    consumes = ("npm", "python-dist", "composer", "ruby-gemspec", "go-binary", "javascript-banner")
    produces = ("packages",)

    def required(self, path, info):
        return "/node_modules/" not in path and parser_for(path) is not None

    def analyze(self, file):
        parse = parser_for(file.path)
        if parse is None:
            return []
        if len(file.data) > MAX_SIZE:
            return [warning(file.path, f"{file.path}: lockfile of {len(file.data)} bytes, larger than {MAX_SIZE};"
                                       " not read")]
        out = []
        try:
            for ecosystem, name, version, meta in parse(file.data):
                if len(out) >= MAX_PACKAGES:
                    out.append(warning(file.path, f"{file.path}: more than {MAX_PACKAGES} packages; the rest not read"))
                    break
                out.append(package(ecosystem, name, version, file.path,
                                   metadata={"source": "lockfile", "lockfile": file.path, **meta}))
        except LockfileError as exc:
            return [warning(file.path, f"{file.path}: {exc}")]
        return out

    def collect(self, ctx, layers):
        installed: dict[tuple[str, str, str], list[str]] = {}
        for p in ctx.packages:
            if (p.metadata or {}).get("source") != "lockfile":
                installed.setdefault((p.ecosystem, p.name.lower(), p.version), []).append(p.path)
        found = list(collect_packages(ctx, layers, self.name))
        with_go_mod = {posixpath.dirname(p.path) for p in found if p.path.endswith("/go.mod")}
        for p in found:
            project = posixpath.dirname(p.path).rstrip("/") + "/"
            if p.path.endswith("/go.sum") and posixpath.dirname(p.path) in with_go_mod:
                continue  # go.mod beside it is the authority; go.sum also lists versions not selected
            if any(path.startswith(project) for path in installed.get((p.ecosystem, p.name.lower(), p.version), ())):
                continue
            yield p
