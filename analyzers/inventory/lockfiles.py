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

Lockfiles inside archives (an application bundle shipped as a tarball or a zip: `/opt/app.tgz!/
package-lock.json`) are read too, through the one archive pass the layer walker shares with the other
content checks (ingest/archives.feed); their packages are recorded at the member's path, and are
visible when the archive is.
"""
from __future__ import annotations

import posixpath

from stowaway.ingest.archives import ARCHIVE_SUFFIXES, ArchiveLimits, Member, MemberConsumer, analyze_alone
from stowaway.ingest.model import ScanError

from ..base import Analyzer, register
from ._app import collect_packages, package, warning
from ._lockparse import LockfileError, parser_for

MAX_SIZE = 64 << 20
MAX_PACKAGES = 50_000  # per lockfile


@register
class Lockfiles(MemberConsumer, Analyzer):
    name = "lockfiles"
    version = 2  # 2: lockfiles inside archives
    risk = "software"
    # installed metadata first: what it reports is not repeated from the lockfile
    consumes = ("npm", "python-dist", "composer", "ruby-gemspec", "go-binary", "javascript-banner")
    produces = ("packages",)

    member_sniff = False  # lockfiles are found by name: only archives named as such are opened

    def __init__(self, policy=None):
        super().__init__(policy)
        try:
            self.member_limits = ArchiveLimits.from_policy(self.policy)
        except ValueError as exc:
            raise ScanError(str(exc)) from None

    def fingerprint(self):
        return ",".join(str(x) for x in self.member_limits.key())

    def required(self, path, info):
        if "/node_modules/" in path:
            return False
        return parser_for(path) is not None or path.lower().endswith(ARCHIVE_SUFFIXES)

    def analyze(self, file):
        return analyze_alone(self, file)

    def analyze_outer(self, file):
        if parser_for(file.path) is None:
            return []
        return self._parse(file.data, file.path, file.path)

    def analyze_member(self, member: Member) -> list[dict]:
        if "/node_modules/" in member.path or parser_for(member.name) is None:
            return []
        if member.size > MAX_SIZE:
            return [warning(member.path.split("!/", 1)[0], f"{member.path}: lockfile of {member.size} bytes,"
                                                           f" larger than {MAX_SIZE}; not read")]
        data = member.read()
        return [] if data is None else self._parse(data, member.path, member.path.split("!/", 1)[0])

    def archive_warnings(self, outer, warnings):
        return [warning(outer, w) for w in warnings]

    def _parse(self, data: bytes, path: str, file: str) -> list[dict]:
        """Packages of one lockfile at `path` (an archive member: OUTER!/MEMBER), held by the image file `file`."""
        parse = parser_for(path.rsplit("!/", 1)[-1])
        if parse is None:
            return []
        if len(data) > MAX_SIZE:
            return [warning(file, f"{path}: lockfile of {len(data)} bytes, larger than {MAX_SIZE}; not read")]
        out: list[dict] = []
        try:
            for ecosystem, name, version, meta in parse(data):
                if len(out) >= MAX_PACKAGES:
                    out.append(warning(file, f"{path}: more than {MAX_PACKAGES} packages; the rest not read"))
                    break
                out.append(package(ecosystem, name, version, path, file=file,
                                   metadata={"source": "lockfile", "lockfile": path, **meta}))
        except LockfileError as exc:
            return [warning(file, f"{path}: {exc}")]
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
