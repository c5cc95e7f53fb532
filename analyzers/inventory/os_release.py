"""OS identification from os-release, with the older release files as fallbacks.

The family and version are normalized to what vulnerability feeds key on (Debian '11', Ubuntu
'22.04', openEuler '22.03-LTS-SP1', EulerOS '2.0-SP10', ...); the raw fields are kept beside them.
The final image's file wins: a file in a lower layer that a later layer replaced or deleted does not.
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
    "/etc/redhat-release",
    "/etc/system-release",
    "/etc/lsb-release",
    "/etc/alpine-release",
    "/etc/debian_version",
    "/etc/SuSE-release",
)
MAX_SIZE = 64 << 10

FAMILY_OF_ID = {
    "debian": "debian", "ubuntu": "ubuntu", "centos": "centos", "rhel": "rhel", "redhat": "rhel",
    "euleros": "euleros", "hce": "hce", "kylin": "kylin", "openeuler": "openeuler", "sles": "sles",
    "sled": "sles", "opensuse-leap": "opensuse", "opensuse": "opensuse", "opensuse-tumbleweed": "opensuse",
    "uos": "uos", "uniontech": "uos", "deepin": "uos", "alpine": "alpine", "rocky": "rocky",
    "almalinux": "almalinux", "ol": "oracle", "oracle": "oracle", "amzn": "amazon", "fedora": "fedora",
    "photon": "photon", "mariner": "mariner", "azurelinux": "azurelinux", "wolfi": "wolfi", "chainguard": "chainguard",
    "anolis": "anolis", "opencloudos": "opencloudos", "tencentos": "tencentos",
}


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


def normalize(fields: dict[str, str]) -> OSInfo:
    ident = fields.get("ID", "").lower()
    family = FAMILY_OF_ID.get(ident, ident)
    version = fields.get("VERSION_ID", "")
    full = fields.get("VERSION", "")
    if family in ("euleros", "openeuler", "hce"):
        # 'VERSION="2.0 (SP10)"', '22.03 (LTS-SP1)': the service pack is part of the release
        m = re.search(r"\(([^)]*)\)", full)
        extra = m.group(1) if m else ""
        sp = re.match(r"(?i)(LTS(?:-SP\d+)?|SP\d+)", extra)
        if sp:
            version = f"{version}-{sp.group(1).upper()}"
    elif family == "kylin":
        m = re.search(r"\(([^)]*)\)", full)
        if m:
            version = f"{version or 'V10'} ({m.group(1)})"
    elif family == "alpine":
        version = ".".join(version.split(".")[:2])
    id_like = tuple(fields.get("ID_LIKE", "").split())
    return OSInfo(family=family, version=version, name=fields.get("PRETTY_NAME") or fields.get("NAME", ""),
                  id_like=id_like, raw=fields)


def from_release_line(path: str, text: str) -> OSInfo | None:
    """The pre-os-release files: '/etc/redhat-release' says 'CentOS Linux release 7.9.2009 (Core)'."""
    text = text.strip()
    if not text:
        return None
    first = text.splitlines()[0]
    if path.endswith("lsb-release"):
        f = parse_os_release(text)
        ident = f.get("DISTRIB_ID", "").lower()
        if ident:
            return OSInfo(FAMILY_OF_ID.get(ident, ident), f.get("DISTRIB_RELEASE", ""), f.get("DISTRIB_DESCRIPTION", ""),
                          raw=f)
        return None
    if path.endswith("alpine-release"):
        return OSInfo("alpine", ".".join(first.split(".")[:2]), f"Alpine Linux {first}", raw={"release": first})
    if path.endswith("debian_version"):
        m = re.match(r"(\d+)", first)
        return OSInfo("debian", m.group(1) if m else first, f"Debian {first}", raw={"release": first})
    m = re.match(r"(.+?)\s+release\s+([\w.]+)(?:\s*\(([^)]*)\))?", first)
    if not m:
        return None
    name, number, extra = m.group(1), m.group(2), m.group(3) or ""
    low = name.lower()
    for needle, family in (("huawei cloud euleros", "hce"), ("euleros", "euleros"), ("openeuler", "openeuler"),
                           ("kylin", "kylin"), ("centos", "centos"), ("red hat", "rhel"), ("rocky", "rocky"),
                           ("alma", "almalinux"), ("oracle", "oracle"), ("amazon", "amazon"), ("fedora", "fedora"),
                           ("suse", "sles")):
        if needle in low:
            version = number
            if family == "centos":
                version = number.split(".")[0]
            if family in ("euleros", "openeuler") and extra:
                sp = re.match(r"(?i)(LTS(?:-SP\d+)?|SP\d+)", extra)
                if sp:
                    version = f"{number}-{sp.group(1).upper()}"
            return OSInfo(family, version, first, raw={"release": first})
    return None


@register
class OSRelease(Analyzer):
    name = "os-release"
    version = 1
    risk = ""  # every scan needs it
    order = 10

    def required(self, path, info):
        return path in FILES and info.size <= MAX_SIZE

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
        for path in FILES:
            real = ctx.fs.read_target(path)
            if real is None or real not in visible:
                continue
            text = visible[real]
            if path.endswith("os-release"):
                fields = parse_os_release(text)
                if fields.get("ID"):
                    info = normalize(fields)
                    yield OSInfo(info.family, info.version, info.name, info.id_like, path, info.raw)
                    return
            else:
                info = from_release_line(path, text)
                if info:
                    yield OSInfo(info.family, info.version, info.name, info.id_like, path, info.raw)
                    return
