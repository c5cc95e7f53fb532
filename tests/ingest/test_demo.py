"""`stowaway demo --no-serve` is the README's first command: it must build, scan and report on a bare machine."""
import json
import re
import subprocess
import sys


def test_demo_builds_scans_and_reports(tmp_path):
    r = subprocess.run([sys.executable, "-m", "stowaway.ingest.cli", "demo", "--dir", str(tmp_path), "--no-serve"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    for ref in ("demo/base:1", "demo/shop:1.0", "demo/tools:1"):
        assert ref in r.stdout
    rep = json.loads((tmp_path / "demo-shop-report.json").read_text())
    assert rep["image"]["os"]["family"] == "debian"
    assert len(rep["image"]["layers"]) == 8
    vulns = {(v["package"]["name"], v["id"]) for v in rep["vulnerabilities"]}
    assert ("org.apache.logging.log4j:log4j-core", "CVE-2021-44228") in vulns
    assert {m["path"] for m in rep["malicious_files"]} >= {"/tmp/eicar.com", "/opt/app/web/uploads/shell.php"}
    deleted = [s for s in rep["sensitive_information"] if s["path"] == "/opt/app/config/old-credentials.json"]
    assert deleted and not any(s["visible"] for s in deleted)
    assert rep["base_image"]["approved"] is True
    assert {c["name"] for c in rep["software_compliance"]} >= {"nmap", "netcat-openbsd"}
    # the tokens the demo planted never reach the database, in any table or in the WAL
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("stowaway.db*"))
    assert not re.search(rb"ghp_[A-Za-z0-9]{36}", raw) and not re.search(rb"sk_live_[A-Za-z0-9]{24}", raw)
