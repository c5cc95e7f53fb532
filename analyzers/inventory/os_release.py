"""OS identification from os-release, with the older release files as fallbacks.

The family and version are normalized to what vulnerability feeds key on (Debian '11', Ubuntu
'22.04', openEuler '22.03-LTS-SP1', EulerOS '2.0-SP10', CentOS '7', Kylin 'V10-SP2', ...); the raw
fields are kept beside them. The final image's file wins: a file in a lower layer that a later layer
replaced or deleted does not.

Version rules, per family:
- RHEL and its rebuilds (CentOS, Rocky, AlmaLinux, Oracle): the major release, as their advisories
  are per major release ('7.9.2009' -> '7'); the full VERSION_ID stays in `raw`.
- EulerOS, HCE, openEuler: the service pack or LTS stream is part of the release ('2.0 (SP9x86_64)'
  -> '2.0-SP9', '22.03 (LTS-SP1)' -> '22.03-LTS-SP1').
- Kylin Advanced Server V10 names its service packs by codename only: Tercel SP1, Sword SP2, Lance
  SP3, Halberd SP3 2403 (kernels v2101 for Tercel/Sword, v2207 for Lance, v2401 for Halberd).
- Alpine: major.minor ('3.18.4' -> '3.18'), 'edge' for snapshots; openSUSE Leap: major.minor.
- Distroless images are Debian with PRETTY_NAME="Distroless": family debian, version VERSION_ID.
"""
from __future__ import annotations

import re
import shlex

from stowaway.ingest.model import OSInfo

from ..base import Analyzer, register

# in order of preference
FILES = (
    "/etc/os-release",
    "/usr/lib/os-release",
    "/etc/hce-release",
    "/etc/openEuler-release",
    "/etc/euleros-release",
    "/etc/kylin-release",
    "/etc/centos-release",
    "/etc/rocky-release",
    "/etc/almalinux-release",
    "/etc/oracle-release",
    "/etc/redhat-release",
    "/etc/system-release",
    "/etc/lsb-release",
    "/etc/alpine-release",
    "/etc/debian_version",
    "/etc/SuSE-release",
)
MAX_SIZE = 64 << 10
_WANTED = frozenset(FILES)

FAMILY_OF_ID = {
    "debian": "debian", "ubuntu": "ubuntu", "centos": "centos", "rhel": "rhel", "redhat": "rhel",
    "euleros": "euleros", "hce": "hce", "kylin": "kylin", "openeuler": "openeuler", "sles": "sles",
    "sled": "sles", "sles_sap": "sles", "opensuse-leap": "opensuse", "opensuse": "opensuse",
    "opensuse-tumbleweed": "opensuse-tumbleweed", "uos": "uos", "uniontech": "uos", "deepin": "uos",
    "alpine": "alpine", "rocky": "rocky", "almalinux": "almalinux", "ol": "oracle", "oracle": "oracle",
    "amzn": "amazon", "fedora": "fedora", "photon": "photon", "mariner": "mariner", "azurelinux": "azurelinux",
    "wolfi": "wolfi", "chainguard": "chainguard", "anolis": "anolis", "opencloudos": "opencloudos",
    "tencentos": "tencentos",
}
MAJOR_ONLY = {"centos", "rhel", "rocky", "almalinux", "oracle"}
KYLIN_SERVICE_PACKS = {"tercel": "SP1", "sword": "SP2", "lance": "SP3", "halberd": "SP3-2403"}
# the first match in a release line's product name decides the family
NAME_FAMILIES = (("huawei cloud euleros", "hce"), ("euleros", "euleros"), ("openeuler", "openeuler"),
                 ("kylin", "kylin"), ("uniontech", "uos"), ("centos", "centos"), ("red hat", "rhel"),
                 ("rocky", "rocky"), ("alma", "almalinux"), ("oracle", "oracle"), ("amazon", "amazon"),
                 ("fedora", "fedora"), ("opensuse", "opensuse"), ("suse", "sles"))


def parse_os_release(text: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        try:
            parts = shlex.split(value, posix=True)
            value = parts[0] if parts else ""
        except ValueError:
            value = value.strip().strip("\"'")
        fields[key.strip()] = value
    return fields


def normalize_version(family: str, version: str, extra: str = "") -> str:
    """The matcher's version from a release number and the parenthesized part ('SP10', 'LTS-SP1', 'Sword')."""
    version = version.strip()
    if family in MAJOR_ONLY:
        return version.split(".")[0]
    if family in ("euleros", "openeuler", "hce"):
        sp = re.match(r"(?i)(LTS(?:-SP\d+)?|SP\d+)", extra.strip())
        return f"{version}-{sp.group(1).upper()}" if sp else version
    if family == "kylin":
        pack = KYLIN_SERVICE_PACKS.get(extra.strip().lower())
        sp = re.search(r"(?i)\bSP(\d+)\b", extra)
        if pack:
            return f"{version or 'V10'}-{pack}"
        if sp:
            return f"{version or 'V10'}-SP{sp.group(1)}"
        return version
    if family == "alpine":
        if "_alpha" in version or "_beta" in version or version in ("edge", ""):
            return "edge" if version else ""
        return ".".join(version.split(".")[:2])
    if family == "opensuse":
        return ".".join(version.split(".")[:2])
    if family == "debian":
        m = re.match(r"(\d+)", version)
        return m.group(1) if m else version
    return version


def normalize(fields: dict[str, str]) -> OSInfo:
    ident = fields.get("ID", "").lower()
    family = FAMILY_OF_ID.get(ident, ident)
    version = fields.get("VERSION_ID", "")
    m = re.search(r"\(([^)]*)\)", fields.get("VERSION", ""))
    extra = m.group(1) if m else ""
    if family == "debian" and not version:
        version = fields.get("VERSION_CODENAME", "")  # testing and sid have no number
    version = normalize_version(family, version, extra)
    id_like = tuple(fields.get("ID_LIKE", "").split())
    return OSInfo(family=family, version=version, name=fields.get("PRETTY_NAME") or fields.get("NAME", ""),
                  id_like=id_like, raw=fields)


def from_release_line(path: str, text: str) -> OSInfo | None:
    """The pre-os-release files: '/etc/redhat-release' says 'CentOS Linux release 7.9.2009 (Core)'."""
    text = text.strip()
    if not text:
        return None
    first = text.splitlines()[0].strip()
    if path.endswith("lsb-release"):
        f = parse_os_release(text)
        ident = f.get("DISTRIB_ID", "").lower()
        if not ident:
            return None
        family = FAMILY_OF_ID.get(ident, ident)
        m = re.search(r"\(([^)]*)\)", f.get("DISTRIB_DESCRIPTION", ""))
        return OSInfo(family, normalize_version(family, f.get("DISTRIB_RELEASE", ""), m.group(1) if m else ""),
                      f.get("DISTRIB_DESCRIPTION", ""), raw=f)
    if path.endswith("alpine-release"):
        return OSInfo("alpine", normalize_version("alpine", first), f"Alpine Linux {first}", raw={"release": first})
    if path.endswith("debian_version"):
        return OSInfo("debian", normalize_version("debian", first), f"Debian {first}", raw={"release": first})
    if path.endswith("SuSE-release"):
        f = {k.strip(): v.strip() for k, _, v in (line.partition("=") for line in text.splitlines()[1:]) if v}
        family = "opensuse" if "opensuse" in first.lower() else "sles"
        version = f.get("VERSION", "")
        if f.get("PATCHLEVEL") and f["PATCHLEVEL"] != "0":
            version = f"{version}.{f['PATCHLEVEL']}"
        return OSInfo(family, normalize_version(family, version), first, raw={"release": first, **f}) if version else None
    m = re.match(r"(.+?)\s+release\s+([\w.]+)(?:\s*\(([^)]*)\))?", first)
    if not m:
        return None
    name, number, extra = m.group(1), m.group(2), m.group(3) or ""
    low = name.lower()
    for needle, family in NAME_FAMILIES:
        if needle in low:
            return OSInfo(family, normalize_version(family, number, extra), first, raw={"release": first})
    return None


@register
class OSRelease(Analyzer):
    name = "os-release"
    version = 2
    risk = ""  # every scan needs it
    produces = ("os",)

    def required(self, path, info):
        return path in FILES and info.size <= MAX_SIZE

    forkable = True

    def wanted_paths(self):
        return _WANTED

    def analyze(self, file):
        return [{"path": file.path, "text": file.text()}]

    def collect(self, ctx, layers):
        # the content the final image shows for each candidate file, following symlinks
        # (/etc/os-release -> ../usr/lib/os-release) without leaving the image
        visible: dict[str, str] = {}
        for index, records in enumerate(layers):
            for r in records:
                if ctx.fs.visible(r["path"], index):
                    visible[r["path"]] = r["text"]
        info = identify(lambda path: visible.get(ctx.fs.read_target(path) or ""))
        if info:
            yield info


def identify(read) -> OSInfo | None:
    """The OS from the first release file that names one; `read(path)` gives a file's text or None."""
    for path in FILES:
        text = read(path)
        if text is None:
            continue
        if path.endswith("/os-release"):  # not 'centos-release'
            fields = parse_os_release(text)
            info = normalize(fields) if fields.get("ID") else None
        else:
            info = from_release_line(path, text)
        if info:
            return OSInfo(info.family, info.version, info.name, info.id_like, path, info.raw)
    return None
