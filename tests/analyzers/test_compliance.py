"""Forbidden software: packages (name, ecosystem, version range), executables, paths and file hashes."""
import hashlib
import json
import subprocess
import sys

import pytest
from conftest import CORPUS, corpus, report_of
from imagebuilder import WHITEOUT, File, ImageBuilder, Symlink

from stowaway.analyzers.base import ImageContext
from stowaway.analyzers.compliance import (
    DEFAULT_RULES,
    PolicyError,
    SoftwareCompliance,
    VersionSpec,
    load_rules,
    make_rule,
)
from stowaway.ingest.model import DIR, HARDLINK, REG, SYMLINK, ImageSpec, Package
from stowaway.ingest.squash import Filesystem

OS_RELEASE = "ID=debian\nVERSION_ID=11\nPRETTY_NAME=\"Debian GNU/Linux 11 (bullseye)\"\n"


def status(*packages):
    return "\n".join(f"Package: {n}\nStatus: install ok installed\nArchitecture: amd64\nVersion: {v}\n"
                     f"Description: x\n" for n, v in packages)


def ctx_of(layers, packages=(), policy=None):
    """A hand-made ImageContext: `layers` are lists of (path, type, mode[, linkname])."""
    entries = [[(p, t, 10, m, 0, 0, link[0] if link else "") for p, t, m, *link in layer] for layer in layers]
    spec = ImageSpec("t:1", "test", "sha256:m", "sha256:c", {}, [])
    ctx = ImageContext(spec=spec, fs=Filesystem.build(entries), policy=policy or {})
    ctx.packages = list(packages)
    return ctx


def run(ctx, layers=None):
    analyzer = SoftwareCompliance(ctx.policy)
    return list(analyzer.collect(ctx, layers or [])), analyzer


def deb(name, version, layer=1):
    return Package("deb", name, version, "/var/lib/dpkg/status", layer)


# --- rules and version ranges -------------------------------------------------------------------

def test_default_policy_covers_the_offensive_tools():
    rules, _, problems = load_rules({})
    assert not problems
    for name in ("nmap", "masscan", "zmap", "netcat-openbsd", "netcat-traditional", "ncat", "socat", "hydra", "john",
                 "hashcat", "sqlmap", "nikto", "metasploit-framework", "tcpdump", "wireshark", "tshark"):
        assert any(r.matches_package("deb", name) for r in rules), name
    for exe in ("/usr/bin/nc", "/usr/bin/ncat", "/usr/bin/msfconsole", "/usr/sbin/tcpdump", "/usr/bin/tshark"):
        assert any(r.matches_executable(exe) for r in rules), exe
    assert not any(r.matches_package("deb", "libc6") or r.matches_executable("/bin/ls") for r in rules)
    # the tools' own ecosystems only: npm 'hydra' and 'john' are unrelated libraries
    assert any(r.matches_package("pypi", "sqlmap") for r in rules)
    assert any(r.matches_package("gem", "metasploit-framework") for r in rules)
    assert not any(r.matches_package("npm", "hydra") or r.matches_package("npm", "john") for r in rules)
    assert len({r["id"] for r in DEFAULT_RULES}) == len(DEFAULT_RULES)


@pytest.mark.parametrize("spec,ecosystem,version,inside", [
    ("<7.92", "deb", "7.91+dfsg1+really7.80+dfsg1-2", True),
    ("<7.91", "deb", "7.91+dfsg1+really7.80+dfsg1-2", False),
    (">=1:0", "deb", "7.91", False),  # an epoch outranks any upstream version
    (">=1.0, <2.0", "pypi", "1.10", True),
    (">=1.0, <2.0", "pypi", "2.0", False),
    ("<1.0 || ==3.0.0", "npm", "3.0.0", True),
    ("1.2.3-r0", "apk", "1.2.3-r0", True),
    ("<1.2.10-r1", "apk", "1.2.3-r0", True),
    ("<2.15.0", "maven", "2.14.1", True),
    ("<1.10", "rpm", "1.9-3.el8", True),
    ("vers:deb/>=7.0|<8", "deb", "7.91+dfsg1-2", True),
    ("<1.10", "unknown-ecosystem", "1.9", True),  # natural order, not string order
])
def test_version_ranges_compare_in_the_ecosystem_scheme(spec, ecosystem, version, inside):
    assert VersionSpec(spec).contains(ecosystem, version) is inside


@pytest.mark.parametrize("bad", [{"package": "x", "versions": ">>1"}, {"package": "x", "versions": 3},
                                 {"reason": "nothing named"}, {"package": "x", "severity": "dire"},
                                 {"sha256": "abc"}, {"path": "relative/path"}, {"package": "x", "colour": "red"},
                                 {"executable": "nc", "versions": "<1"}, 42,
                                 {"package": "flask", "ecosystem": "pypi", "versions": "<two"}])
def test_bad_rules_are_refused_with_their_reason(bad):
    with pytest.raises(PolicyError):
        make_rule(bad, 1)


def test_a_bad_rule_is_skipped_and_named_the_others_apply():
    policy = {"compliance": {"use_defaults": False, "forbid": [{"package": "x", "colour": "red"}, "curl"]}}
    ctx = ctx_of([[("/usr", DIR, 0o755)]], [deb("curl", "7.74.0-1.3")], policy)
    found, _ = run(ctx)
    assert [f.detail["name"] for f in found] == ["curl"]
    assert any("rule 1" in w and "colour" in w for w in ctx.warnings)


# --- packages ------------------------------------------------------------------------------------

def test_packages_by_name_ecosystem_and_version_range():
    policy = {"compliance": {"use_defaults": False, "forbid": [
        {"id": "old-openssl", "package": "openssl", "ecosystem": "deb", "versions": "<1.1.1n", "reason": "EOL"},
        {"id": "no-requests", "package": "Requests", "ecosystem": "pypi", "severity": "low"},
        {"id": "no-flask-login", "package": "Flask_Login", "ecosystem": "pypi"},
    ]}}
    packages = [deb("openssl", "1.1.1k-1+deb11u1", 1), deb("openssl", "1.1.1w-0+deb11u1", 3),
                Package("rpm", "openssl", "1.1.1k-5.el8", "/var/lib/rpm/rpmdb.sqlite", 0),
                Package("pypi", "requests", "2.25.1", "/usr/lib/python3/dist-packages/requests-2.25.1.dist-info", 4),
                Package("pypi", "flask-login", "0.5.0", "/app/flask_login-0.5.0.dist-info", 4)]
    found, _ = run(ctx_of([[("/usr", DIR, 0o755)]], packages, policy))
    got = sorted((f.rule, f.detail["name"], f.detail["version"], f.layer_index, f.severity, f.package) for f in found)
    assert got == [
        ("no-flask-login", "flask-login", "0.5.0", 4, "high", packages[4].key),
        ("no-requests", "requests", "2.25.1", 4, "low", packages[3].key),
        ("old-openssl", "openssl", "1.1.1k-1+deb11u1", 1, "high", packages[0].key),
    ]
    assert all(f.kind == "compliance" and f.detail["reason"] for f in found)


def test_use_defaults_false_replaces_and_allow_exempts():
    packages = [deb("nmap", "7.80"), deb("tcpdump", "4.99"), deb("socat", "1.7")]
    found, _ = run(ctx_of([[("/usr", DIR, 0o755)]], packages))
    assert {f.detail["name"] for f in found} == {"nmap", "tcpdump", "socat"}
    found, _ = run(ctx_of([[("/usr", DIR, 0o755)]], packages,
                          {"compliance": {"allow": ["tcpdump", "default/socat"]}}))
    assert {f.detail["name"] for f in found} == {"nmap"}
    found, _ = run(ctx_of([[("/usr", DIR, 0o755)]], packages,
                          {"compliance": {"use_defaults": False, "forbid": ["socat"]}}))
    assert [(f.detail["name"], f.rule) for f in found] == [("socat", "policy/socat")]


def test_a_large_inventory_is_matched_by_index_not_rule_by_rule():
    packages = [deb(f"lib{i}-dev", "1.0-1") for i in range(20000)]
    packages += [deb("nmap", "7.80"), deb("metasploit-framework", "6.0"), deb("ettercap-graphical", "0.8"),
                 Package("pypi", "sqlmap", "1.5", "/usr/lib/python3/dist-packages/sqlmap.dist-info", 2)]
    ctx = ctx_of([[("/usr", DIR, 0o755)]], packages)
    found, _ = run(ctx)
    assert sorted(f.detail["name"] for f in found) == ["ettercap-graphical", "metasploit-framework", "nmap", "sqlmap"]


def test_unreadable_version_is_a_warning_not_a_match():
    policy = {"compliance": {"use_defaults": False, "forbid": [{"package": "flask", "versions": "<2.0"}]}}
    ctx = ctx_of([[("/usr", DIR, 0o755)]], [Package("pypi", "flask", "not a version!", "/x", 2)], policy)
    found, _ = run(ctx)
    assert found == [] and any("cannot compare" in w for w in ctx.warnings)


# --- executables -----------------------------------------------------------------------------------

def test_executables_by_name_path_and_busybox_applets():
    layers = [
        [("/bin", DIR, 0o755), ("/bin/busybox", REG, 0o755), ("/bin/nc", SYMLINK, 0o777, "busybox"),
         ("/bin/ls", SYMLINK, 0o777, "busybox")],
        [("/opt/tools", DIR, 0o755), ("/opt/tools/socat", REG, 0o755),  # execute bit, outside a bin dir
         ("/opt/tools/nmap", REG, 0o644),  # not executable, not in a bin dir: a data file
         ("/usr/local/bin", DIR, 0o755), ("/usr/local/bin/masscan", REG, 0o755),
         ("/srv/payloads", DIR, 0o755), ("/srv/payloads/agent.bin", REG, 0o644)],
    ]
    policy = {"compliance": {"forbid": [{"id": "payloads", "path": "/srv/payloads/*", "reason": "implants"}]}}
    found, _ = run(ctx_of(layers, policy=policy))
    got = {f.path: (f.rule, f.layer_index, f.detail["matched_by"]) for f in found}
    assert got == {"/bin/nc": ("default/netcat", 0, "executable"),
                   "/opt/tools/socat": ("default/socat", 1, "executable"),
                   "/usr/local/bin/masscan": ("default/masscan", 1, "executable"),
                   "/srv/payloads/agent.bin": ("payloads", 1, "path")}
    nc = next(f for f in found if f.path == "/bin/nc")
    assert nc.detail["applet"] == "busybox" and nc.detail["target"] == "/bin/busybox"


def test_busybox_hard_link_applets():
    # the official busybox image stores the binary once (as /bin/[) and every applet as a hard link to it
    layers = [[("/bin", DIR, 0o755), ("/bin/[", REG, 0o755), ("/bin/busybox", HARDLINK, 0o755, "/bin/["),
               ("/bin/nc", HARDLINK, 0o755, "/bin/["), ("/bin/ls", HARDLINK, 0o755, "/bin/[")],
              [("/usr/bin", DIR, 0o755), ("/usr/bin/socat", HARDLINK, 0o755, "/usr/bin/socat-1.7")]]
    found, _ = run(ctx_of(layers))
    got = {f.path: f.detail.get("applet") for f in found}
    assert got == {"/bin/nc": "busybox", "/usr/bin/socat": None}


def test_files_of_a_flagged_package_are_not_reported_again_but_a_stray_copy_is():
    layers = [[("/usr/bin", DIR, 0o755), ("/usr/bin/nmap", REG, 0o755), ("/bin", DIR, 0o755),
               ("/bin/nc.openbsd", REG, 0o755), ("/etc/alternatives", DIR, 0o755),
               ("/etc/alternatives/nc", SYMLINK, 0o777, "/bin/nc.openbsd"), ("/bin/nc", SYMLINK, 0o777, "/etc/alternatives/nc")],
              [("/home/x/bin", DIR, 0o755), ("/home/x/bin/nmap", REG, 0o755)]]
    ctx = ctx_of(layers, [deb("nmap", "7.80", 0), deb("netcat-openbsd", "1.217-3", 0)])
    found, _ = run(ctx)
    assert sorted((f.detail["name"], f.path) for f in found) == [
        ("netcat-openbsd", "/var/lib/dpkg/status"), ("nmap", "/home/x/bin/nmap"), ("nmap", "/var/lib/dpkg/status")]
    # a file the package's file list names is the package's, wherever it lies
    ctx = ctx_of(layers, [deb("nmap", "7.80", 0)])
    ctx.owned_files = {"/usr/bin/nmap", "/home/x/bin/nmap"}
    found, _ = run(ctx)
    assert sorted(f.path for f in found) == ["/bin/nc", "/var/lib/dpkg/status"]


# --- the real pipeline ---------------------------------------------------------------------------------

def debian_image():
    img = ImageBuilder()
    img.layer({"etc/os-release": OS_RELEASE, "var/lib/dpkg/status": status(("base-files", "11.1"), ("bash", "5.1-2"))},
              created_by="ADD rootfs")
    img.layer({"var/lib/dpkg/status": status(("base-files", "11.1"), ("bash", "5.1-2"), ("nmap", "7.80+dfsg1-2"),
                                             ("netcat-traditional", "1.10-46")),
               "var/lib/dpkg/info/nmap.list": "/usr/bin/nmap\n",
               "var/lib/dpkg/info/netcat-traditional.list": "/bin/nc.traditional\n", "usr/bin/nmap": File(b"\x7fELF nmap", mode=0o755),
               "bin/nc.traditional": File(b"\x7fELF nc", mode=0o755), "bin/nc": Symlink("/bin/nc.traditional")},
              created_by="RUN apt-get install nmap netcat-traditional")
    img.layer({"opt/x/tool": File(b"payload-v1", mode=0o755), "tmp/drop.bin": b"dropped"}, created_by="COPY")
    img.layer({"tmp/.wh.drop.bin": WHITEOUT}, created_by="RUN rm /tmp/drop.bin")
    return img


def test_dpkg_packages_reported_through_the_pipeline(tmp_path, scan):
    debian_image().write_oci_layout(tmp_path / "oci", ref="demo/tools:1")
    database, outcomes = scan(f"oci:{tmp_path / 'oci'}", risks=["compliance"])
    assert [o.status for o in outcomes] == ["done"], outcomes
    rep = report_of(database, "demo/tools:1")
    software = {p["name"] for p in rep["software"]}
    if "nmap" not in software:
        pytest.skip("no dpkg inventory analyzer installed")
    got = sorted((c["name"], c["version"], c["layer_index"], c["rule"]) for c in rep["software_compliance"])
    assert got == [("netcat-traditional", "1.10-46", 1, "default/netcat"), ("nmap", "7.80+dfsg1-2", 1, "default/nmap")]
    # the finding points at the package row
    row = database.execute("SELECT p.name FROM findings f JOIN packages p ON p.id = f.package_id"
                           " WHERE f.scan_id = ? AND f.kind = 'compliance' ORDER BY p.name", [rep["scan"]["id"]]).fetchall()
    assert [r[0] for r in row] == ["netcat-traditional", "nmap"]


def test_hash_rules_find_files_in_every_layer_and_cache_only_the_selection(tmp_path, scan):
    debian_image().write_oci_layout(tmp_path / "oci", ref="demo/tools:1")
    digest = hashlib.sha256(b"payload-v1").hexdigest()
    dropped = hashlib.sha256(b"dropped").hexdigest()
    policy = {"compliance": {"use_defaults": False, "forbid": [
        {"id": "known-bad", "sha256": [digest, "sha256:" + dropped], "reason": "known implant"}]}}
    database, outcomes = scan(f"oci:{tmp_path / 'oci'}", policy=policy, risks=["compliance"])
    rep = report_of(database, "demo/tools:1")
    got = {c["path"]: c["layer_index"] for c in rep["software_compliance"]}
    # /opt/x/tool is executable; /tmp/drop.bin is neither executable nor in a bin dir, so not hashed
    assert got == {"/opt/x/tool": 2}
    # a scoped rule hashes files by path too, and a file a later layer deleted is reported as not visible
    policy["compliance"]["forbid"].append({"id": "drops", "sha256": dropped, "path": "/tmp/*"})
    database, outcomes = scan(f"oci:{tmp_path / 'oci'}", policy=policy, risks=["compliance"])
    rows = database.execute("SELECT path, layer_index, visible, rule FROM findings WHERE scan_id = ? AND"
                            " kind = 'compliance' ORDER BY path, rule", [outcomes[0].scan_id]).fetchall()
    # once hashed, the file answers the unscoped rule too
    assert [tuple(r) for r in rows] == [("/opt/x/tool", 2, 1, "known-bad"), ("/tmp/drop.bin", 2, 0, "drops"),
                                        ("/tmp/drop.bin", 2, 0, "known-bad")]
    # a new hash with the same selection re-reads no layer: the cache keys on what is hashed
    policy["compliance"]["forbid"][0]["sha256"] = ["0" * 64]
    _, outcomes = scan(f"oci:{tmp_path / 'oci'}", policy=policy, risks=["compliance"])
    assert outcomes[0].layers_read == 0 and outcomes[0].layers_cached == 4


def test_without_hash_rules_the_evaluator_reads_no_layer(tmp_path, scan):
    debian_image().write_oci_layout(tmp_path / "oci", ref="demo/tools:1")
    assert not SoftwareCompliance({}).reads_layers
    assert SoftwareCompliance({"compliance": {"forbid": [{"sha256": "a" * 64}]}}).reads_layers
    scan(f"oci:{tmp_path / 'oci'}", risks=["compliance"])
    _, outcomes = scan(f"oci:{tmp_path / 'oci'}", risks=["compliance"],
                       policy={"compliance": {"use_defaults": False, "forbid": ["tool"]}})
    assert outcomes[0].layers_read == 0


def test_cli_set_forbids_and_the_policy_is_recorded(tmp_path):
    debian_image().write_oci_layout(tmp_path / "oci", ref="demo/tools:1")
    db = tmp_path / "s.db"
    rules = json.dumps([{"id": "no-tool", "executable": "tool", "severity": "critical"}])
    r = subprocess.run([sys.executable, "-m", "stowaway.ingest.cli", "scan", f"oci:{tmp_path / 'oci'}", "--db", str(db),
                        "--no-progress", "--risk", "compliance", "--set", f"compliance.forbid={rules}",
                        "--set", "compliance.use_defaults=false"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    from stowaway.ingest.db import connect

    database = connect(str(db))
    rep = report_of(database, "demo/tools:1")
    assert [(c["path"], c["rule"], c["severity"]) for c in rep["software_compliance"]] == [
        ("/opt/x/tool", "no-tool", "critical")]
    recorded = json.loads(database.execute("SELECT policy FROM scans").fetchone()[0])
    assert recorded["compliance"]["forbid"][0]["id"] == "no-tool"


# --- acceptance on the public corpus ----------------------------------------------------------------

@corpus
def test_corpus_shop_forbidden_software(tmp_path, scan):
    database, outcomes = scan(f"oci:{CORPUS / 'oci'}", risks=["compliance"])
    assert all(o.status == "done" for o in outcomes)
    rep = report_of(database, "corpus/shop:1.0")
    if not any(p["name"] == "nmap" for p in rep["software"]):
        pytest.skip("no dpkg inventory analyzer installed")
    out = tmp_path / "shop.json"
    out.write_text(json.dumps(rep))
    r = subprocess.run([sys.executable, str(CORPUS / "check_report.py"), str(out), "--only", "compliance"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout
    hits = {c["name"]: c for c in rep["software_compliance"]}
    assert hits["nmap"]["version"] == "7.91+dfsg1+really7.80+dfsg1-2" and hits["nmap"]["layer_index"] == 1
    assert hits["netcat-openbsd"]["version"] == "1.217-3" and hits["netcat-openbsd"]["layer_index"] == 1
    # /bin/nc is netcat-openbsd's own alternatives link: not a second finding
    assert "nc" not in hits
    tools = report_of(database, "corpus/tools:1.0")
    assert [(c["path"], c["rule"]) for c in tools["software_compliance"]] == [("/bin/nc", "default/netcat")]


def test_a_version_known_only_as_a_range_is_not_compared_as_a_version():
    """A library found by its classes has a range for a version ('>=1.2.5'): Maven's order would read it
    as some version; it is a warning naming the range, never a guessed match."""
    policy = {"compliance": {"use_defaults": False,
                             "forbid": [{"package": "org.apache.shiro:shiro-core", "versions": "<1.3"}]}}
    ctx = ctx_of([[("/usr", DIR, 0o755)]], [Package("maven", "org.apache.shiro:shiro-core", ">=1.2.5", "/x.jar", 2)],
                 policy)
    found, _ = run(ctx)
    assert found == [] and any("cannot compare" in w and ">=1.2.5" in w for w in ctx.warnings)
    with pytest.raises(ValueError, match="known only as a range"):
        VersionSpec("<1.3").contains("maven", ">=1.2.5")
