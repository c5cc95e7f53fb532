"""The CLI contract of REPORT.md: exit codes, one-line errors, the report's shape."""
import json
import subprocess
import sys

from imagebuilder import File, ImageBuilder


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "stowaway.ingest.cli", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=120)


def test_scan_report_images_roundtrip(tmp_path):
    img = ImageBuilder().layer({"etc/os-release": "ID=ubuntu\nVERSION_ID=\"22.04\"\n",
                                "srv/data.bin": File(b"x" * 1234)})
    path = img.write_docker_archive(tmp_path / "u.tar.gz", ref="cli/app:2", compress_with="gzip")
    db = str(tmp_path / "c.db")
    r = run("scan", f"docker-archive:{path}", "--db", db, "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "scanned cli/app:2" in r.stderr
    out = tmp_path / "r.json"
    r = run("report", "cli/app:2", "--db", db, "--format", "json", "-o", str(out))
    assert r.returncode == 0, r.stderr
    rep = json.loads(out.read_text())
    for key in ("image", "vulnerabilities", "malicious_files", "software", "files", "unsafe_settings",
                "sensitive_information", "software_compliance", "base_image"):
        assert key in rep
    assert rep["image"]["reference"] == "cli/app:2"
    assert rep["image"]["os"]["family"] == "ubuntu" and rep["image"]["os"]["version"] == "22.04"
    assert rep["files"]["largest"][0] == {"path": "/srv/data.bin", "size": 1234, "layer_index": 0}
    assert rep["base_image"]["approved"] is None
    # the report by digest is the same image
    r = run("report", rep["image"]["manifest_digest"], "--db", db)
    assert json.loads(r.stdout)["image"]["reference"] == "cli/app:2"
    r = run("images", "--db", db)
    assert r.returncode == 0 and "cli/app:2" in r.stdout and "ubuntu 22.04" in r.stdout


def test_failures_exit_non_zero_with_one_line(tmp_path):
    db = str(tmp_path / "f.db")
    r = run("scan", "docker-archive:/nonexistent.tar", "--db", db, "--no-progress")
    assert r.returncode == 1
    assert r.stderr.strip().count("\n") == 0 and "no such file" in r.stderr
    r = run("scan", "ftp:whatever", "--db", db)
    assert r.returncode == 1 and "unknown source" in r.stderr
    r = run("report", "nothing:1", "--db", db)
    assert r.returncode == 2 and r.stderr.startswith("stowaway: nothing:1: no such image")
    r = run("report", "x", "--db", str(tmp_path / "absent.db"))
    assert r.returncode == 2 and "no such database" in r.stderr
    r = run("scan", "--db", db)
    assert r.returncode == 2 and "usage" in r.stderr
    r = run("scan", "oci:/tmp", "--db", db, "--set", "novalue")
    assert r.returncode == 2 and "KEY=VALUE" in r.stderr
    r = run("scan", "oci:/tmp", "--db", db, "--set", "limits.max_ratio=lots")
    assert r.returncode == 2 and r.stderr.startswith("stowaway: policy: ") and "max_ratio" in r.stderr
    assert r.stderr.strip().count("\n") == 0


def test_help_lists_commands_and_sources():
    r = run("--help")
    assert r.returncode == 0
    for word in ("scan", "report", "images", "docker-archive:PATH", "oci:DIR[:REF]"):
        assert word in r.stdout
