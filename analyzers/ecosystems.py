"""One place per package ecosystem: what inventory, matching, compliance and the SBOM need to know.

A package's `ecosystem` (as the inventory writes it: 'deb', 'pypi', 'maven', ...) names one entry here:
its package URL type, how its names are compared, its version scheme (a key of
vulnerabilities/versions.SCHEMES), the OSV ecosystem whose advisories cover it, and whether it is an
OS package manager. OS packages are covered by their distribution's advisories (the OSV ecosystem is
the distribution's, chosen from the image's OS: vulnerabilities/ecosystems.image_release), so their
`osv` is None.

Adding an ecosystem: an entry here, the inventory analyzer that writes it, and — if its versions need
their own rules — a scheme in vulnerabilities/versions.py.
"""
from __future__ import annotations

import re
from dataclasses import dataclass


def pep503(name: str) -> str:
    """PyPI's name normalisation: runs of '-', '_' and '.' are one '-', case-insensitive."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class Ecosystem:
    name: str  # Package.ecosystem
    purl_type: str
    scheme: str  # vulnerabilities/versions.SCHEMES
    osv: str | None  # OSV ecosystem of its advisories; None for OS packages (the distribution's)
    os: bool = False  # an OS package manager's database
    name_rule: str = "exact"  # "pep503", "lower" (case-insensitive registries) or "exact"
    aliases: tuple[str, ...] = ()  # other spellings of `name` seen in stored data and policies

    def normalize(self, name: str) -> str:
        """The name as this ecosystem compares names."""
        if self.name_rule == "pep503":
            return pep503(name)
        if self.name_rule == "lower":
            return name.lower()
        return name


ECOSYSTEMS: tuple[Ecosystem, ...] = (
    Ecosystem("deb", "deb", "dpkg", None, os=True),
    Ecosystem("rpm", "rpm", "rpm", None, os=True),
    Ecosystem("apk", "apk", "apk", None, os=True),
    Ecosystem("maven", "maven", "maven", "Maven", name_rule="lower"),
    Ecosystem("pypi", "pypi", "pep440", "PyPI", name_rule="pep503"),
    Ecosystem("npm", "npm", "semver", "npm"),
    Ecosystem("go", "golang", "go", "Go", aliases=("golang",)),
    Ecosystem("cargo", "cargo", "semver", "crates.io", aliases=("crates.io",)),
    Ecosystem("gem", "gem", "rubygems", "RubyGems", aliases=("rubygems",)),
    Ecosystem("composer", "composer", "composer", "Packagist", name_rule="lower", aliases=("packagist",)),
    Ecosystem("nuget", "nuget", "nuget", "NuGet", name_rule="lower"),
    Ecosystem("pub", "pub", "semver", "Pub"),
    Ecosystem("hex", "hex", "semver", "Hex"),
)

_BY_NAME = {spelling: e for e in ECOSYSTEMS for spelling in (e.name, *e.aliases)}
# the package types of OS package managers ('deb', 'rpm', 'apk'), as Package.ecosystem writes them
OS_PACKAGE_TYPES: tuple[str, ...] = tuple(e.name for e in ECOSYSTEMS if e.os)


def get(name: str | None) -> Ecosystem | None:
    """The entry of a Package.ecosystem value (any spelling, any case), or None."""
    return _BY_NAME.get((name or "").lower())


def purl_type(name: str) -> str:
    e = get(name)
    return e.purl_type if e else (name or "").lower()


def is_os(name: str | None) -> bool:
    e = get(name)
    return bool(e and e.os)
