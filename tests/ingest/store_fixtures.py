"""A scanned image for the findings-store tests, built in code once per session: Debian with an sshd
config that fails checks, a log4j-core 2.14.1 jar, a planted GitHub token, and two OSV records for
log4j-core (GHSA ids whose aliases are CVE-2021-44228 and CVE-2021-45046). Tests copy the database."""
from __future__ import annotations

import io
import json
import shutil
import zipfile

import pytest
from imagebuilder import ImageBuilder

CRITICAL = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H"
HIGH = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:N"
REF = "corpus/shop:1.0"
LOG4J = "org.apache.logging.log4j:log4j-core"


def jar(version: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("META-INF/maven/org.apache.logging.log4j/log4j-core/pom.properties",
                   f"version={version}\ngroupId=org.apache.logging.log4j\nartifactId=log4j-core\n")
    return buf.getvalue()


def shop(log4j_version: str = "2.14.1") -> ImageBuilder:
    img = ImageBuilder()
    img.layer({"etc/os-release": 'PRETTY_NAME="Debian GNU/Linux 11 (bullseye)"\nID=debian\nVERSION_ID="11"\n',
               "var/lib/dpkg/status": "Package: bash\nStatus: install ok installed\nVersion: 5.1-2\nArchitecture: amd64\n",
               "etc/ssh/sshd_config": "PermitRootLogin yes\nPasswordAuthentication yes\n"})
    img.layer({f"opt/shop/lib/log4j-core-{log4j_version}.jar": jar(log4j_version),
               "opt/shop/.env": "GITHUB_TOKEN=ghp_Y5abcdefghijklmnopqrstuvwxyz0123uXov\n"})
    return img


def osv(rid, cve, fixed, severity):
    return {"id": rid, "modified": "2024-01-01T00:00:00Z", "published": "2021-12-10T00:00:00Z", "aliases": [cve],
            "summary": f"{cve} in log4j-core", "severity": [{"type": "CVSS_V3", "score": severity}],
            "affected": [{"package": {"ecosystem": "Maven", "name": LOG4J},
                          "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "2.0"}, {"fixed": fixed}]}]}]}


RECORDS = [osv("GHSA-jfh8-c2jp-5v3q", "CVE-2021-44228", "2.15.0", CRITICAL),
           osv("GHSA-7rjr-3q55-vv33", "CVE-2021-45046", "2.16.0", HIGH)]

_BUILT: dict[str, str] = {}


@pytest.fixture(scope="session")
def shop_template(tmp_path_factory) -> str:
    """The directory holding `oci/` (the layout), `feed/` (the OSV records) and `scan.db` (imported
    and scanned through the CLI). Read-only: tests copy it with `shop_db`."""
    if "dir" not in _BUILT:
        from stowaway.ingest import cli

        root = tmp_path_factory.mktemp("shop")
        shop().write_oci_layout(root / "oci", ref=REF)
        (root / "feed").mkdir()
        for r in RECORDS:
            (root / "feed" / f"{r['id']}.json").write_text(json.dumps(r))
        db = str(root / "scan.db")
        assert cli.main(["db", "import", str(root / "feed"), "--db", db, "--no-progress"]) == 0
        assert cli.main(["scan", f"oci:{root / 'oci'}", "--db", db, "--no-progress"]) == 0
        _BUILT["dir"] = str(root)
    return _BUILT["dir"]


@pytest.fixture
def shop_db(shop_template, tmp_path) -> str:
    """A private copy of the scanned shop: the layout it was scanned from stays where it was (rescan reads it)."""
    import sqlite3

    src = sqlite3.connect(f"{shop_template}/scan.db")
    dst = sqlite3.connect(str(tmp_path / "scan.db"))
    src.backup(dst)
    src.close()
    dst.close()
    shutil.copytree(f"{shop_template}/feed", tmp_path / "feed")
    return str(tmp_path / "scan.db")
