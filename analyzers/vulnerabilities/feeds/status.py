"""Which vendor feed covers an image's distribution, and what to say when none is in the store.

`feed_status(family, version)` answers for the seed distributions: whether a machine-readable vendor
feed exists (and which) and, given the store, whether its advisories for that release are there. The
sentence is what the report and the CLI show instead of a count of 0: "not checked: no EulerOS
2.0-SP10 advisories (Huawei publishes no machine-readable feed for EulerOS)".
"""
from __future__ import annotations

from ..ecosystems import image_release

# family -> (display name, the vendor feed and where it is, or None when none is published)
FEEDS: dict[str, tuple[str, str | None]] = {
    "debian": ("Debian", "the Debian security tracker JSON (security-tracker.debian.org/tracker/data/json)"
                         " or osv.dev's Debian export"),
    "ubuntu": ("Ubuntu", "osv.dev's Ubuntu export (UBUNTU-CVE-*, USN-*)"),
    "alpine": ("Alpine", "Alpine's secdb (secdb.alpinelinux.org/v<release>/main.json)"),
    "rhel": ("Red Hat Enterprise Linux", "Red Hat's CSAF VEX / advisories (security.access.redhat.com/data/csaf/v2/)"),
    "centos": ("CentOS", "Red Hat's CSAF VEX / advisories for the same RHEL release"
                         " (security.access.redhat.com/data/csaf/v2/)"),
    "sles": ("SUSE Linux Enterprise", "SUSE's CVRF (ftp.suse.com/pub/projects/security/cvrf/)"),
    "opensuse": ("openSUSE Leap", "SUSE's CVRF (ftp.suse.com/pub/projects/security/cvrf/)"),
    "openeuler": ("openEuler", "openEuler's CVRF (repo.openeuler.org/security/data/cvrf/)"),
    "euleros": ("EulerOS", None),
    "hce": ("Huawei Cloud EulerOS", None),
    "kylin": ("Kylin", None),
    "uos": ("UnionTech OS", None),
}

NO_FEED = {
    "euleros": "Huawei publishes EulerOS security advisories (EulerOS-SA-…) as web pages only, with no"
               " machine-readable feed (no OVAL, CVRF, CSAF or OSV)",
    "hce": "Huawei publishes Huawei Cloud EulerOS advisories as web pages only, with no machine-readable feed"
           " (no OVAL, CVRF, CSAF or OSV)",
    "kylin": "KylinSoft publishes Kylin advisories as web pages only, with no public machine-readable feed",
    "uos": "UnionTech publishes UOS advisories as web pages only, with no public machine-readable feed",
}


def _covered(conn, ecosystem: str, release: str) -> bool:
    try:
        return conn.execute("SELECT 1 FROM advisory_affected WHERE ecosystem = ? AND release = ? LIMIT 1",
                            [ecosystem, release]).fetchone() is not None
    except Exception:  # no store yet
        return False


def feed_status(family: str, version: str, conn=None) -> tuple[bool, str]:
    """(checked, sentence). Without `conn`: whether a vendor feed exists for this distribution. With it:
    whether the store holds that release's advisories."""
    family = (family or "").lower()
    if not family:
        return False, "not checked: the distribution could not be identified"
    name, feed = FEEDS.get(family, (family, None))
    what = f"{name} {version}".strip()
    key = image_release(family, version)
    if feed is None:
        reason = NO_FEED.get(family, "no vendor advisory feed is known for this distribution")
        if key and conn is not None and _covered(conn, *key):
            return True, f"{what}: advisories in the store ({key[0]}:{key[1]})"
        return False, f"not checked: no {what} advisories ({reason})"
    if key is None:
        return False, f"not checked: no {what} advisories (the release could not be identified)"
    if conn is None:
        return True, f"{what}: vendor feed {feed}"
    if _covered(conn, *key):
        return True, f"{what}: advisories in the store ({key[0]}:{key[1]})"
    return False, f"not checked: no {what} advisories in the store; import {feed}"
