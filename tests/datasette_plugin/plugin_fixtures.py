"""Databases for the plugin's tests: images built in code, scanned by the real pipeline, plus findings
of every kind written through pipeline.write_results (the path every analyzer's output takes), so
the pages have something of each kind to show whichever analyzers are installed."""
from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass

import pytest
from imagebuilder import ImageBuilder

from stowaway.analyzers.base import ImageContext
from stowaway.ingest.findings import write_results
from stowaway.ingest.model import Finding, Package


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serving(path, log_path, *flags: str, cwd=None, wait_for: str | None = None):
    """`stowaway serve PATH --port P FLAGS...` as a user starts it, waited for until its image list answers
    (and, with WAIT_FOR, until its output matches that pattern). Yields (base URL, the output so far); the
    server is stopped on the way out. A server that exits or never answers fails with its output."""
    port = free_port()
    with open(log_path, "w") as log:
        proc = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "stowaway"), "serve", str(path),
                                 "--port", str(port), *flags], stdout=log, stderr=subprocess.STDOUT, cwd=cwd)
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while True:
                output = open(log_path).read()
                try:
                    urllib.request.urlopen(base + "/-/stowaway/images", timeout=5).close()
                    if wait_for is None or re.search(wait_for, output):
                        break
                except OSError:
                    pass
                assert proc.poll() is None and time.monotonic() < deadline, output
                time.sleep(0.3)
            yield base, output
        finally:
            proc.terminate()
            proc.wait(timeout=60)


DPKG_STATUS = """Package: openssl
Status: install ok installed
Version: 1.1.1n-0+deb11u4
Architecture: amd64
Source: openssl

Package: bash
Status: install ok installed
Version: 5.1-2+deb11u1
Architecture: amd64
"""
OS_RELEASE = 'PRETTY_NAME="Debian GNU/Linux 11 (bullseye)"\nNAME="Debian GNU/Linux"\nID=debian\nVERSION_ID="11"\n'
RAW_ENV_SECRET = "hunter2-Xq9v7Lr"  # set in ENV: must never reach a page
MASKED_SECRET = "ghp_Y5…uXov"
LOG4J = Package("maven", "org.apache.logging.log4j:log4j-core", "2.14.1", "/opt/app/lib/log4j-core-2.14.1.jar",
                layer_index=1, purl="pkg:maven/org.apache.logging.log4j/log4j-core@2.14.1")
OPENSSL = Package("deb", "libssl-demo", "1.1.1n-0+deb11u4", "/var/lib/dpkg/status", layer_index=0,
                  purl="pkg:deb/debian/libssl-demo@1.1.1n-0%2Bdeb11u4")

# (id, severity, cvss, fixed, package): inserted low-first, and with more lows than anything else,
# so neither insertion order nor counts can pass for severity order
VULNS_V1 = [
    ("CVE-2023-0003", "low", 3.1, "", OPENSSL),
    ("CVE-2023-0004", "low", 2.0, "1.1.1w", OPENSSL),
    ("CVE-2023-0005", "low", 1.5, "", OPENSSL),
    ("CVE-2024-0006", "negligible", None, "", OPENSSL),
    ("CVE-2024-0007", "unknown", None, "", OPENSSL),
    ("CVE-2023-0002", "medium", 5.3, "1.1.1t", OPENSSL),
    ("CVE-2022-0001", "high", 7.5, "", OPENSSL),
    ("CVE-2021-44228", "critical", 10.0, "2.15.0", LOG4J),
]


@dataclass
class DatedBuilder(ImageBuilder):
    created: str = "2024-01-01T00:00:00Z"

    def config(self, diff_ids=None):
        config = super().config(diff_ids)
        config["created"] = self.created
        return config


def demo_images(path, version: str, created: str, extra_layer: dict | None = None) -> DatedBuilder:
    img = DatedBuilder(created=created)
    img.env = img.env + [f"DB_PASSWORD={RAW_ENV_SECRET}", "APP_HOME=/opt/app"]
    img.layer({"etc/os-release": OS_RELEASE, "var/lib/dpkg/status": DPKG_STATUS, "bin/sh": "#!"},
              created_by="/bin/sh -c #(nop) ADD file:base in / ")
    img.layer({"opt/app/README": "demo " + version, "opt/app/data.bin": b"x" * (2048 if version == "1.0" else 64)},
              created_by="/bin/sh -c #(nop) COPY dir:app in /opt/app/ ")
    img.layer(extra_layer or {"etc/motd": "hello"}, created_by=f"/bin/sh -c export API_TOKEN={RAW_ENV_SECRET} && true")
    return img


def vuln_finding(vid, severity, cvss, fixed, pkg, layer=1):
    return Finding("vulnerability", f"{vid} in {pkg.name}", severity, path=pkg.path, layer_index=layer,
                   rule=vid, package=pkg.key, detail={
                       "vulnerability_id": vid, "aliases": ["GHSA-jfh8-c2jp-5v3q"] if vid == "CVE-2021-44228" else [],
                       "package_name": pkg.name, "ecosystem": pkg.ecosystem, "installed_version": pkg.version,
                       "fixed_version": fixed, "cvss_score": cvss,
                       "cvss_vector": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H" if cvss == 10.0 else None,
                       "published": "2021-12-10T00:00:00Z", "description": f"Description of {vid}.",
                       "solution": f"Upgrade {pkg.name} to {fixed}." if fixed else None})


def other_findings():
    return [
        Finding("malware", "EICAR test file", "high", path="/tmp/eicar.com", layer_index=2, rule="EICAR_Test_File",
                detail={"rule": "EICAR_Test_File", "namespace": "test", "sha256": "ab" * 32, "size": 68}),
        Finding("secret", "GitHub personal access token", "high", path="/opt/app/.env", layer_index=1,
                rule="github-pat", detail={"rule_id": "github-pat", "line": 3, "masked": MASKED_SECRET,
                                           "fingerprint": "f" * 16, "source": "file"}),
        Finding("unsafe_setting", "SSH permits root login", "high", path="/etc/ssh/sshd_config", layer_index=2,
                rule="ssh.permit_root_login", detail={
                    "category": "ssh", "check_id": "ssh.permit_root_login", "result": "fail",
                    "target": "/etc/ssh/sshd_config", "evidence": "PermitRootLogin yes",
                    "description": "Root can log in over SSH.", "suggestion": "Set PermitRootLogin no."}),
        Finding("unsafe_setting", "Password maximum age", "medium", path="/etc/login.defs", layer_index=0,
                rule="password_policy.max_days", status="pass", detail={
                    "category": "password_policy", "check_id": "password_policy.max_days", "result": "pass",
                    "target": "/etc/login.defs", "evidence": "PASS_MAX_DAYS 90",
                    "description": "Passwords expire.", "suggestion": "Keep PASS_MAX_DAYS at 90 or less."}),
        Finding("compliance", "Forbidden software: nmap", "medium", path="/usr/bin/nmap", layer_index=2,
                rule="forbid:nmap", detail={"name": "nmap", "version": "7.80", "rule": "forbid:nmap",
                                           "reason": "network scanner"}),
        Finding("base_image", "Base image not approved", "medium", detail={
            "approved": 0, "matched": None, "own_layers": 3, "closest": "corpus/debian:bullseye-base"}),
    ]


def add_findings(database, reference: str, packages, findings):
    """Writes packages and findings into REFERENCE's current scan through write_results."""
    image_id, scan_id = database.execute("SELECT id, last_scan_id FROM images WHERE reference = ?",
                                         [reference]).fetchone()
    ctx = ImageContext(spec=None, fs=None, policy={}, db=database)
    ctx.packages.extend(packages)
    ctx.findings.extend(findings)
    with database.conn:
        write_results(database.conn, scan_id, image_id, ctx)
    return image_id, scan_id


def populate(database):
    add_findings(database, "demo/app:1.0", [LOG4J, OPENSSL], [vuln_finding(*v) for v in VULNS_V1] + other_findings())
    add_findings(database, "demo/app:2.0", [LOG4J], [vuln_finding(*VULNS_V1[-1])])


@pytest.fixture
def demo_db(scan, tmp_path):
    """demo/app:2.0 (newer created, scanned first), demo/app:1.0 (older, scanned second), other/tool:1."""
    layout = tmp_path / "oci"
    demo_images(layout, "2.0", "2024-06-01T00:00:00Z").write_oci_layout(layout, ref="demo/app:2.0")
    demo_images(layout, "1.0", "2024-01-01T00:00:00Z").write_oci_layout(layout, ref="demo/app:1.0", append=True)
    tool = ImageBuilder().layer({"etc/os-release": "ID=alpine\nVERSION_ID=3.19.0\n", "bin/busybox": "x"})
    tool.write_oci_layout(layout, ref="other/tool:1", append=True)
    database, outcomes = scan(f"oci:{layout}")
    assert [o.status for o in outcomes] == ["done"] * 3, [o.error for o in outcomes]
    populate(database)
    path = str(tmp_path / "scan.db")
    database.conn.close()
    return path


def datasette_for(path, **kw):
    from datasette.app import Datasette

    return Datasette(files=[path], **kw)


def db_name(path) -> str:
    import pathlib

    return pathlib.Path(path).stem


CSRF_FIELD = re.compile(r'name="csrftoken" value="([^"]+)"')


ROOT = {"id": "root"}


CROSS_SITE = {"origin": "https://evil.example", "sec-fetch-site": "cross-site"}


async def post_form(ds, page: str, action: str, data: dict, actor: dict | None = None, with_token: bool = True):
    """POSTs a form as a browser would: the csrftoken field and cookie of PAGE, and ACTOR's cookie.

    The token is fetched as root (forms render only for writers); it is not bound to an actor, so an
    anonymous POST with it passes the CSRF check and meets the permission check alone. Without the
    token the POST also says it comes from another site: Datasette 0.65 refuses it for the missing
    token (asgi-csrf), 1.0 for its Origin and Sec-Fetch-Site headers."""
    cookies = {}
    headers = {}
    if actor is not None:
        cookies["ds_actor"] = ds.sign({"a": actor}, "actor")
    if with_token:
        got = await ds.client.get(page, cookies={"ds_actor": ds.sign({"a": ROOT}, "actor")})
        assert got.status_code == 200, got.text[:500]
        match = CSRF_FIELD.search(got.text)
        assert match, "the page has no form with a csrftoken"
        if got.cookies.get("ds_csrftoken"):  # 0.65; 1.0 checks headers instead of a cookie
            cookies["ds_csrftoken"] = got.cookies.get("ds_csrftoken")
        data = {**data, "csrftoken": match.group(1)}
    else:
        headers = CROSS_SITE
    return await ds.client.post(action, data=data, cookies=cookies, headers=headers)


def task_of(response) -> int:
    """The task a console POST started: it answers at once with a redirect to the task's page."""
    assert response.status_code == 302, response.text[:500]
    location = response.headers["location"]
    assert location.startswith("/-/stowaway/task/"), location
    return int(location.split("?")[0].rsplit("/", 1)[1])


def wait_for_task(path, task_id: int, timeout: float = 240) -> str:
    """Waits for a background task to finish; returns its state."""
    import sqlite3
    import time

    deadline = time.monotonic() + timeout
    state = None
    while time.monotonic() < deadline:
        with sqlite3.connect(path) as conn:
            state = conn.execute("SELECT state FROM tasks WHERE id = ?", [task_id]).fetchone()[0]
        if state in ("done", "failed", "interrupted", "cancelled"):
            return state
        time.sleep(0.2)
    raise AssertionError(f"task {task_id} still {state} after {timeout} s")


_CORPUS_DB: dict[str, str] = {}


def corpus_db_path(tmp_path_factory) -> str:
    """The public corpus scanned once per test session by every installed analyzer, after importing
    ../shared/feeds/osv with `stowaway db import` (so vulnerabilities come from the real matcher).
    CVE-2021-44228 on log4j is written by hand only if the matcher did not find it. Read-only for
    its users: tests that write copy it."""
    if "path" not in _CORPUS_DB:
        import os
        import subprocess
        import sys

        from conftest import CORPUS, SHARED

        from stowaway.ingest.db import connect
        from stowaway.ingest.pipeline import Scanner

        path = str(tmp_path_factory.mktemp("corpus") / "corpus.db")
        feed = SHARED / "feeds" / "osv"
        if feed.exists():
            subprocess.run([os.path.join(os.path.dirname(sys.executable), "stowaway"), "db", "import", str(feed),
                            "--db", path], check=True, capture_output=True, timeout=300)
        database = connect(path)
        outcomes = Scanner(database, {}, progress=False).run([f"oci:{CORPUS / 'oci'}"])
        assert all(o.status == "done" for o in outcomes), [o.error for o in outcomes]
        found = database.execute("SELECT 1 FROM vulnerability_details d JOIN findings f ON f.id = d.finding_id"
                                 " JOIN images i ON i.last_scan_id = f.scan_id WHERE i.reference = 'corpus/shop:1.0'"
                                 " AND d.vulnerability_id = 'CVE-2021-44228'").fetchone()
        if not found:
            add_findings(database, "corpus/shop:1.0", [LOG4J], [vuln_finding(*VULNS_V1[-1])])
        database.conn.close()
        _CORPUS_DB["path"] = path
    return _CORPUS_DB["path"]
