"""Where an advisory and an installed package meet: (ecosystem, release, normalized name).

OSV writes ecosystems as 'Debian:11', 'Ubuntu:22.04:LTS', 'Alpine:v3.18', 'openEuler:22.03-LTS-SP1',
'Red Hat:enterprise_linux:8::appstream', 'SUSE:Linux Enterprise Server 15 SP3', 'PyPI', 'Maven', ...
Both sides are reduced to the same key so that matching is one indexed lookup: the ecosystem's base
name, a release ('' for language ecosystems) and the package name as that ecosystem compares names.
"""
from __future__ import annotations

import functools
import re

from .. import ecosystems as registry

# The distributions' side; what each package ecosystem is (purl type, name rule, scheme, OSV name) is
# in analyzers/ecosystems.py, the one place per ecosystem.
# OSV base ecosystem of a distribution -> the version scheme of its packages (versions.SCHEMES)
DISTRIBUTION_SCHEME = {
    "Debian": "dpkg", "Ubuntu": "dpkg",
    "Alpine": "apk", "Wolfi": "apk", "Chainguard": "apk",
    "Red Hat": "rpm", "Rocky Linux": "rpm", "AlmaLinux": "rpm", "SUSE": "rpm", "openSUSE": "rpm",
    "openEuler": "rpm", "EulerOS": "rpm", "HCE": "rpm", "Mageia": "rpm", "Photon OS": "rpm", "Mariner": "rpm",
    "Azure Linux": "rpm",
}
# OSV base ecosystem -> version scheme; an ecosystem missing here is not matched
SCHEME_OF = {**DISTRIBUTION_SCHEME, **{e.osv: e.scheme for e in registry.ECOSYSTEMS if e.osv}}

# OSV ecosystems of distributions, whose advisories cover OS packages by source package and release
# (not registry.OS_PACKAGE_TYPES, the package types 'deb', 'rpm', 'apk' of OS package managers)
DISTRIBUTION_ECOSYSTEMS = frozenset(DISTRIBUTION_SCHEME)

# Package.ecosystem (any spelling) -> OSV base ecosystem, for application packages
APP_ECOSYSTEM = {spelling: e.osv for e in registry.ECOSYSTEMS if e.osv for spelling in (e.name, *e.aliases)}
# OS package type -> its version scheme
OS_PACKAGE_TYPES = {e.name: e.scheme for e in registry.ECOSYSTEMS if e.os}
_BY_OSV = {e.osv: e for e in registry.ECOSYSTEMS if e.osv}
_GO_RELEASE = re.compile(r"^go(\d+)\.(\d+)(?:\.(\d+))?(?:(rc|beta)(\d+))?$")

# images.os_family -> OSV base ecosystem of the vendor data that is authoritative for it
DISTRO_ECOSYSTEM = {
    "debian": "Debian", "ubuntu": "Ubuntu", "alpine": "Alpine", "wolfi": "Wolfi", "chainguard": "Chainguard",
    "rhel": "Red Hat", "centos": "Red Hat", "rocky": "Rocky Linux", "almalinux": "AlmaLinux",
    "sles": "SUSE", "opensuse": "openSUSE", "openeuler": "openEuler", "mageia": "Mageia", "photon": "Photon OS",
    "mariner": "Mariner", "azurelinux": "Azure Linux",
    # Huawei's: keyed so that records in OSV form match, and so coverage names them (feeds/status.py)
    "euleros": "EulerOS", "hce": "HCE",
}

# vendors whose advisories give versions from source rpm file names, which carry no epoch (openEuler's
# CVRF and its OSV export alike): the installed epoch is left out, or every package with an epoch
# (openssl 1:, perl 4:, bind 32:) would compare newer than every fix and never match
EPOCHLESS_ADVISORIES = frozenset({"openEuler"})

DEBIAN_CODENAMES = {
    "buzz": "1.1", "rex": "1.2", "bo": "1.3", "hamm": "2.0", "slink": "2.1", "potato": "2.2", "woody": "3.0",
    "sarge": "3.1", "etch": "4", "lenny": "5", "squeeze": "6", "wheezy": "7", "jessie": "8", "stretch": "9",
    "buster": "10", "bullseye": "11", "bookworm": "12", "trixie": "13", "forky": "14", "duke": "15",
    "sid": "sid",
}


def normalize_name(ecosystem: str, name: str) -> str:
    """A package name as the OSV ecosystem's registry compares names (PEP 503 for PyPI, case-insensitive
    Maven, NuGet and Packagist); distributions' names are exact."""
    entry = _BY_OSV.get(ecosystem)
    return entry.normalize(name) if entry else name


def _major(text: str) -> str:
    m = re.search(r"\d+", text)
    return m.group(0) if m else text


@functools.lru_cache(maxsize=4096)
def split_ecosystem(ecosystem: str) -> tuple[str, str]:
    """'Ubuntu:22.04:LTS' -> ('Ubuntu', '22.04'). Ubuntu Pro and FIPS streams keep a prefix so that a
    plain image never matches them: their fixes are not in the archive that image installs from."""
    base, _, rest = ecosystem.partition(":")
    base = base.strip()
    rest = rest.strip()
    if not rest:
        return base, ""
    if base == "Debian":
        return base, DEBIAN_CODENAMES.get(rest.lower(), rest.split(".")[0])
    if base == "Ubuntu":
        parts = [p for p in rest.split(":") if p]
        tags = [p.lower() for p in parts if not re.match(r"^\d", p) and p.upper() != "LTS"]
        number = next((p for p in parts if re.match(r"^\d", p)), "")
        return base, ":".join(tags + [number]) if tags else number
    if base in ("Alpine", "Mageia", "Photon OS", "Mariner", "Azure Linux"):
        return base, rest.lstrip("vV")
    if base in ("Red Hat", "Rocky Linux", "AlmaLinux"):
        # 'enterprise_linux:8::appstream', 'rhel_aus:8.4::appstream', '8': the major release
        for part in rest.split(":"):
            if re.search(r"\d", part):
                return base, _major(part)
        return base, rest
    if base == "SUSE":
        m = re.search(r"(\d+)(?:[ -]SP(\d+))?(?:\.(\d+))?", rest)
        if m:
            minor = m.group(2) or m.group(3)
            return base, f"{m.group(1)}.{minor}" if minor else m.group(1)
        return base, rest
    if base == "openSUSE":
        m = re.search(r"\d+(?:\.\d+)?", rest)
        return base, m.group(0) if m else rest.lower()
    return base, rest


def image_release(family: str, version: str) -> tuple[str, str] | None:
    """The (ecosystem, release) whose advisories cover this distribution's packages, or None."""
    eco = DISTRO_ECOSYSTEM.get((family or "").lower())
    if not eco:
        return None
    version = (version or "").strip()
    if eco == "Debian":
        release = DEBIAN_CODENAMES.get(version.lower(), version.split(".")[0])
    elif eco == "Alpine":
        release = ".".join(version.lstrip("v").split(".")[:2])
    elif eco in ("Red Hat", "Rocky Linux", "AlmaLinux"):
        release = _major(version)
    elif eco == "SUSE":
        release = version.replace("-SP", ".").replace(" SP", ".")
    elif eco in ("Wolfi", "Chainguard"):
        release = ""  # rolling: one advisory stream
    else:
        release = version
    if not release and eco not in ("Wolfi", "Chainguard"):
        return None
    return eco, release


@functools.lru_cache(maxsize=1 << 16)
def package_target(pkg_ecosystem: str, name: str, version: str, source_name: str, source_version: str,
                   os_key: tuple[str, str] | None) -> tuple[str, str, str, str] | None:
    """(ecosystem, release, name, version) a package is matched as, or None when nothing covers it.

    OS packages are matched on their source package, as vendors publish advisories per source.
    A source rpm's file name carries no epoch, so a missing one is taken from the binary package.
    """
    eco = (pkg_ecosystem or "").lower()
    if eco in OS_PACKAGE_TYPES:
        if os_key is None or SCHEME_OF.get(os_key[0]) != OS_PACKAGE_TYPES[eco]:
            return None
        src = source_name or name
        ver = source_version or version
        if eco == "rpm" and source_version and ":" not in source_version and ":" in version:
            ver = version.split(":", 1)[0] + ":" + source_version
        if eco == "rpm" and os_key[0] in EPOCHLESS_ADVISORIES and re.match(r"^\d+:", ver):
            ver = ver.split(":", 1)[1]
        return os_key[0], os_key[1], normalize_name(os_key[0], src), ver
    osv = APP_ECOSYSTEM.get(eco)
    if not osv:
        return None
    if osv == "Go":
        m = _GO_RELEASE.match(version) if name == "stdlib" else None
        if m:  # 'go1.21rc2' as the Go vulnerability database writes it: '1.21.0-rc.2'
            version = f"{m.group(1)}.{m.group(2)}.{m.group(3) or 0}" + (f"-{m.group(4)}.{m.group(5)}" if m.group(4) else "")
        version = version[1:] if version.startswith("v") else version
    return osv, "", normalize_name(osv, name), version
