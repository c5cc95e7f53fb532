"""`stowaway` as a CI job runs it: the installed command, an image built in code, OSV records written
here. Table output, SARIF 2.1.0 (validated against the OASIS schema), CSV, the filters, the --fail-on
gate and its suppression by an ignore file, the CSV/XLSX exports."""
from __future__ import annotations

import csv
import io
import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import time

import pytest
from conftest import CORPUS, SHARED, corpus
from imagebuilder import ImageBuilder

STOWAWAY = str(pathlib.Path(sys.executable).parent / "stowaway")
SCHEMA = pathlib.Path(__file__).resolve().parent.parent / "data" / "sarif-schema-2.1.0.json"
REF = "ci/app:1"

# Two PyPI records for the image's Jinja2 2.10: one high with a fix, one medium without any.
OSV_RECORDS = [
    {"id": "GHSA-test-high", "modified": "2024-01-01T00:00:00Z", "published": "2024-01-01T00:00:00Z",
     "aliases": ["CVE-2099-0001"], "summary": "template sandbox escape",
     "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:N"}],
     "affected": [{"package": {"ecosystem": "PyPI", "name": "jinja2"},
                   "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "2.10.1"}]}]}]},
    {"id": "GHSA-test-unfixed", "modified": "2024-01-01T00:00:00Z", "published": "2024-01-01T00:00:00Z",
     "aliases": ["CVE-2099-0002"], "summary": "attribute leak",
     "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:U/C:L/I:L/A:N"}],
     "affected": [{"package": {"ecosystem": "PyPI", "name": "jinja2"},
                   "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}]}]}]},
]

TABLE = """\
ci/app:1  (alpine 3.19, 2 layers, DIGEST)
scan N finished TIME

                      CRITICAL    HIGH  MEDIUM    LOW  OTHER  TOTAL  FIXABLE  SUPPRESSED
Vulnerabilities              0       1       1      0      0      2        1           0
Unsafe settings              0       0       1      2      0      3        -           0

coverage gaps:
  secrets: 1 file not searched, under 11 excluded path patterns (built-in ones included); see
    the policy's [secrets] exclude_paths, default_excludes and include_paths

Vulnerabilities (2)
-----------------------
SEVERITY ID            PACKAGE INSTALLED    FIXED
HIGH     CVE-2099-0001 jinja2  2.10      -> 2.10.1
         /usr/lib/python3.11/site-packages/Jinja2-2.10.dist-info/METADATA  layer 1 (RUN pip install…
MEDIUM   CVE-2099-0002 jinja2  2.10      -> no fix
         /usr/lib/python3.11/site-packages/Jinja2-2.10.dist-info/METADATA  layer 1 (RUN pip install…

Unsafe settings (3)
-----------------------
MEDIUM   container.non-root-user        Image runs as a non-root user
         target: image config   evidence: USER is not set in the image config: the container runs a…
LOW      container.healthcheck          Image defines a HEALTHCHECK
         target: image config   evidence: no HEALTHCHECK instruction in the image config
LOW      container.umask                Default umask is 027 or stricter
         target: umask   evidence: no default umask is set (login.defs UMASK, /etc/profile, bashrc)…
"""


def run(*args, cwd=None, check_one_line=True):
    r = subprocess.run([STOWAWAY, *args], capture_output=True, text=True, cwd=cwd, timeout=300,
                       env={k: v for k, v in os.environ.items() if k != "NO_COLOR"})
    assert "Traceback" not in r.stderr, r.stderr
    return r


@pytest.fixture(scope="module")
def ci(tmp_path_factory):
    """An image with a high (fixable) and a medium (unfixed) vulnerability, scanned once."""
    d = tmp_path_factory.mktemp("ci")
    img = ImageBuilder()
    img.layer({"etc/os-release": "ID=alpine\nVERSION_ID=3.19.1\n"}, created_by="ADD rootfs")
    img.layer({"usr/lib/python3.11/site-packages/Jinja2-2.10.dist-info/METADATA":
               "Metadata-Version: 2.1\nName: Jinja2\nVersion: 2.10\n"}, created_by="RUN pip install Jinja2==2.10")
    archive = img.write_docker_archive(d / "app.tar", ref=REF)
    feed = d / "osv"
    feed.mkdir()
    for record in OSV_RECORDS:
        (feed / f"{record['id']}.json").write_text(json.dumps(record))
    db = str(d / "ci.db")
    r = run("db", "import", str(feed), "--db", db)
    assert r.returncode == 0, r.stderr
    work = d / "work"
    work.mkdir()
    r = run("scan", f"docker-archive:{archive}", "--db", db, "--no-progress", "--format", f"json={d / 'report.json'}",
            "--format", f"sarif={d / 'out.sarif'}", "--format", f"csv={d / 'out.csv'}", "--format", "table",
            cwd=work)
    assert r.returncode == 0, r.stderr
    return {"dir": d, "db": db, "archive": archive, "work": work, "scan_stdout": r.stdout,
            "report": json.loads((d / "report.json").read_text())}


def normalise(table: str) -> str:
    table = re.sub(r"sha256:[0-9a-f]{12}", "DIGEST", table)
    return re.sub(r"scan \d+ finished \S+", "scan N finished TIME", table)


def test_table_snapshot(ci):
    assert normalise(ci["scan_stdout"]) == TABLE
    r = run("report", REF, "--db", ci["db"], "--format", "table")
    assert r.returncode == 0 and normalise(r.stdout) == TABLE
    assert max(len(line) for line in r.stdout.splitlines()) <= 100
    assert "\033[" not in r.stdout  # no colour when stdout is not a terminal


def test_json_is_the_report_contract(ci):
    r = run("report", REF, "--db", ci["db"])  # not a terminal: JSON by default, as before
    assert json.loads(r.stdout) == ci["report"]
    ids = {v["id"] for v in ci["report"]["vulnerabilities"]}
    assert ids == {"CVE-2099-0001", "CVE-2099-0002"}


def failing_unsuppressed(report: dict) -> int:
    n = sum(1 for v in report["vulnerabilities"] if not (v.get("suppressed") or v.get("ignored")))
    n += sum(1 for u in report["unsafe_settings"] if u["result"] == "fail" and not u.get("suppressed"))
    n += sum(len(report[k]) for k in ("malicious_files", "sensitive_information", "software_compliance"))
    return n


def test_sarif_validates_and_holds_exactly_the_failing_findings(ci):
    import jsonschema

    sarif = json.loads((ci["dir"] / "out.sarif").read_text())
    jsonschema.validate(sarif, json.loads(SCHEMA.read_text()))
    results = sarif["runs"][0]["results"]
    assert len(results) == failing_unsuppressed(ci["report"]) == 5
    rules = {r["id"]: r for r in sarif["runs"][0]["tool"]["driver"]["rules"]}
    high = next(r for r in results if r["ruleId"] == "CVE-2099-0001")
    assert high["level"] == "error" and rules["CVE-2099-0001"]["properties"]["security-severity"] == "7.5"
    assert rules["CVE-2099-0002"]["properties"]["security-severity"] == "5.4"
    assert rules["CVE-2099-0001"]["helpUri"] == "https://nvd.nist.gov/vuln/detail/CVE-2099-0001"
    location = high["locations"][0]
    assert location["physicalLocation"]["artifactLocation"]["uri"] == \
        "usr/lib/python3.11/site-packages/Jinja2-2.10.dist-info/METADATA"
    assert location["logicalLocations"][0]["name"] == "layer 1"
    assert all(results[i]["ruleIndex"] == list(rules).index(results[i]["ruleId"]) for i in range(len(results)))
    assert len({r["partialFingerprints"]["stowaway/v1"] for r in results}) == len(results)


def test_filters_and_the_gate(ci):
    rows = list(csv.DictReader(io.StringIO((ci["dir"] / "out.csv").read_text())))
    assert len(rows) == 5 and {r["kind"] for r in rows} == {"vulnerability", "unsafe_setting"}
    r = run("report", REF, "--db", ci["db"], "--format", "csv", "--ignore-unfixed")
    assert len(list(csv.DictReader(io.StringIO(r.stdout)))) == 4
    r = run("report", REF, "--db", ci["db"], "--format", "csv", "--severity", "HIGH,medium", "--risk",
            "vulnerabilities")
    assert sorted(x["id"] for x in csv.DictReader(io.StringIO(r.stdout))) == ["CVE-2099-0001", "CVE-2099-0002"]

    r = run("report", REF, "--db", ci["db"], "--format", "sarif", "--fail-on", "high")
    assert r.returncode == 3
    assert r.stderr.strip() == (f"stowaway: --fail-on high: 1 unsuppressed finding(s) at or above high (1 high)"
                                f" in {REF}")
    assert run("report", REF, "--db", ci["db"], "--format", "csv", "--fail-on", "high", "--exit-code", "9",
               "-q").returncode == 9
    # the filters apply before the gate: only medium and lower left, nothing at or above high
    r = run("report", REF, "--db", ci["db"], "--format", "csv", "--fail-on", "high", "--severity", "medium,low")
    assert r.returncode == 0, r.stderr
    r = run("report", REF, "--db", ci["db"], "--format", "csv", "--fail-on", "critical")
    assert r.returncode == 0
    r = run("report", REF, "--db", ci["db"], "--format", "csv", "--fail-on", "medium", "--ignore-unfixed",
            "--risk", "vulnerabilities")
    assert r.returncode == 3 and "(1 high)" in r.stderr
    r = run("report", REF, "--db", ci["db"], "--format", "cyclonedx")
    bom = json.loads(r.stdout)
    assert bom["bomFormat"] == "CycloneDX" and any(c["name"] == "jinja2" for c in bom["components"])
    r = run("report", REF, "--db", ci["db"], "--format", "spdx")
    assert json.loads(r.stdout)["spdxVersion"] == "SPDX-2.3"
    r = run("report", REF, "--db", ci["db"], "--format", "bogus")
    assert r.returncode == 2 and "choose from" in r.stderr
    r = run("report", REF, "--db", ci["db"], "--format", "table", "--format", "json")
    assert r.returncode == 2 and "only one format can go to stdout" in r.stderr


def test_scan_gate_then_suppressed_by_the_ignore_file_in_the_working_directory(ci, tmp_path):
    r = run("scan", f"docker-archive:{ci['archive']}", "--db", ci["db"], "--no-progress", "--fail-on", "high",
            cwd=ci["work"])
    assert r.returncode == 3 and r.stdout == ""
    assert "stowaway: --fail-on high: 1 unsuppressed finding(s)" in r.stderr
    work = tmp_path / "repo"
    work.mkdir()
    (work / ".trivyignore").write_text("# accepted until the upgrade\nCVE-2099-0001\n")
    out = tmp_path / "after.sarif"
    r = run("scan", f"docker-archive:{ci['archive']}", "--db", ci["db"], "--no-progress", "--fail-on", "high",
            "--format", f"sarif={out}", "--format", f"json={tmp_path / 'after.json'}", cwd=work)
    assert r.returncode == 0, r.stderr
    assert "using the ignore rules of ./.trivyignore" in r.stderr
    report = json.loads((tmp_path / "after.json").read_text())
    high = next(v for v in report["vulnerabilities"] if v["id"] == "CVE-2099-0001")
    assert high.get("suppressed") or high.get("ignored")  # kept, marked
    sarif = json.loads(out.read_text())
    assert "CVE-2099-0001" not in {x["ruleId"] for x in sarif["runs"][0]["results"]}
    assert len(sarif["runs"][0]["results"]) == failing_unsuppressed(report) == 4
    r = run("report", REF, "--db", ci["db"], "--format", "table")
    summary = next(line for line in r.stdout.splitlines() if line.startswith("Vulnerabilities "))
    assert summary.split()[1:] == ["0", "0", "1", "0", "0", "1", "0", "1"]
    assert "[suppressed" in r.stdout
    # an explicit --ignore-file that does not exist is a usage error, before anything is scanned
    r = run("scan", f"docker-archive:{ci['archive']}", "--db", ci["db"], "--ignore-file", str(tmp_path / "nope"))
    assert r.returncode == 2 and "no such file" in r.stderr


def test_structured_stowawayignore_with_a_reason(ci, tmp_path):
    db = str(tmp_path / "s.db")
    assert run("db", "import", str(ci["dir"] / "osv"), "--db", db).returncode == 0
    gate = ["--db", db, "--no-progress", "--fail-on", "medium", "--risk", "vulnerabilities", "--severity", "medium"]
    r = run("scan", f"docker-archive:{ci['archive']}", *gate, cwd=tmp_path)
    assert r.returncode == 3, r.stderr
    (tmp_path / ".stowawayignore").write_text(
        "vulnerabilities:\n  - id: CVE-2099-0002\n    packages: [jinja2]\n    reason: no untrusted templates\n")
    r = run("scan", f"docker-archive:{ci['archive']}", *gate, "--format", f"json={tmp_path / 'r.json'}", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "using the ignore rules of ./.stowawayignore" in r.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    unfixed = next(v for v in report["vulnerabilities"] if v["id"] == "CVE-2099-0002")
    assert unfixed["suppressed"] is True and unfixed["suppressed_reason"] == "no untrusted templates"
    # the suppression lives in the store: a report elsewhere, without the file, still has it
    r = run("report", REF, "--db", db, "--format", "csv", "--fail-on", "medium", "--severity", "medium", "--risk",
            "vulnerabilities")
    assert r.returncode == 0 and "no untrusted templates" in r.stdout
    # report --ignore-file adds rules to the store too, then reads: the gate on the high one opens
    gate_high = ["--format", "csv", "--fail-on", "high", "--risk", "vulnerabilities"]
    assert run("report", REF, "--db", db, *gate_high).returncode == 3
    (tmp_path / "vex.trivyignore").write_text("CVE-2099-0001 # fixed by the base image next week\n")
    r = run("report", REF, "--db", db, *gate_high, "--ignore-file", str(tmp_path / "vex.trivyignore"))
    assert r.returncode == 0 and "1 suppression(s) from" in r.stderr, r.stderr
    assert run("report", REF, "--db", db, *gate_high).returncode == 0


def test_exports_open_and_match_the_report(ci, tmp_path):
    from openpyxl import load_workbook

    r = run("report", REF, "--db", ci["db"], "--format", "json")
    report = json.loads(r.stdout)
    r = run("export", "vulnerabilities", "--db", ci["db"], "--format", "xlsx", "--image", REF, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    path = tmp_path / "stowaway-vulnerabilities-ci_app_1.xlsx"
    sheet = load_workbook(path)["Vulnerabilities"]
    header = [c.value for c in sheet[1]]
    rows = [dict(zip(header, [c.value for c in row])) for row in sheet.iter_rows(min_row=2)]
    assert len(rows) == len(report["vulnerabilities"]) == 2
    assert sheet.freeze_panes == "A2" and sheet.auto_filter.ref.startswith("A1:")
    assert {r["vulnerability_id"]: r["aliases"] for r in rows} == {"CVE-2099-0001": "GHSA-test-high",
                                                                    "CVE-2099-0002": "GHSA-test-unfixed"}
    assert sheet.column_dimensions["A"].width >= 20
    r = run("export", "baseline", "--db", ci["db"], "--format", "csv", "--latest-only")
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    assert len(rows) == len(report["unsafe_settings"])
    assert sum(1 for x in rows if x["result"] == "fail") == sum(1 for u in report["unsafe_settings"]
                                                                if u["result"] == "fail")


def test_sensitive_path_exclusions_can_be_changed_and_are_reported(tmp_path):
    token = "ghp_" + "R8x2Kq7Lm4Np9Vb3Tz6Wc1Yd5Hf0Js8GaQe"
    img = ImageBuilder()
    img.layer({"etc/os-release": "ID=alpine\nVERSION_ID=3.19.1\n",
               "usr/src/app/.env": f"GITHUB_TOKEN={token}\n"}, created_by="COPY . /usr/src/app")
    archive = img.write_docker_archive(tmp_path / "s.tar", ref="ci/secret:1")
    db = str(tmp_path / "s.db")

    def secrets(*extra):
        out = tmp_path / "r.json"
        r = run("scan", f"docker-archive:{archive}", "--db", db, "--no-progress", "--risk", "secrets",
                "--format", f"json={out}", "--format", "table", *extra)
        assert r.returncode == 0, r.stderr
        report = json.loads(out.read_text())
        assert token not in out.read_text() and token not in r.stdout
        return report, r.stdout

    report, table = secrets()
    assert report["sensitive_information"] == []  # /usr/* is excluded by default
    assert report["scan"]["secrets_exclusions"]["files_excluded"] == 1
    assert "/usr/*" in report["scan"]["secrets_exclusions"]["exclude_paths"]
    assert "secrets: 1 file not searched" in table
    for extra in (["--set", 'secrets.include_paths=["/usr/src/app/*"]'], ["--set", "secrets.default_excludes=false"]):
        report, table = secrets(*extra)
        [found] = report["sensitive_information"]
        assert found["path"] == "/usr/src/app/.env"
        head, tail = found["masked"].split("…")
        assert token.startswith(head) and token.endswith(tail) and len(head) <= 4 and len(tail) <= 4
        assert found["masked"] in table and "/usr/src/app/.env" in table
        assert report["scan"]["secrets_exclusions"]["files_excluded"] == 0
    assert report["scan"]["secrets_exclusions"]["default_excludes"] is False
    assert "/usr/*" not in report["scan"]["secrets_exclusions"]["exclude_paths"]


def test_colour_only_on_a_terminal_and_never_with_no_color(ci):
    import pty

    def on_a_terminal(env):
        pid, fd = pty.fork()
        if pid == 0:
            os.execve(STOWAWAY, [STOWAWAY, "report", REF, "--db", ci["db"]], env)
        chunks = []
        while True:
            try:
                data = os.read(fd, 65536)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
        os.waitpid(pid, 0)
        return b"".join(chunks).decode()

    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    coloured = on_a_terminal(env)
    assert "\033[31mHIGH" in coloured and "Vulnerabilities (2)" in coloured  # the table is the terminal's default
    plain = on_a_terminal({**env, "NO_COLOR": "1"})
    assert "\033[" not in plain and "Vulnerabilities (2)" in plain


def test_sigterm_during_a_scan_exits_130(tmp_path):
    import socket

    # a registry that takes the connection and never answers: the scan blocks reading it (its read timeout
    # is 30 s), as on a slow network
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(4)
    p = subprocess.Popen([STOWAWAY, "scan", f"registry:127.0.0.1:{silent.getsockname()[1]}/slow:1", "--db",
                          str(tmp_path / "t.db"), "--no-progress"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    state = ""
    while time.monotonic() < deadline and state != "running":  # the scan has started and blocks on the registry
        time.sleep(0.2)
        if (tmp_path / "t.db").exists():
            listed = run("tasks", "--db", str(tmp_path / "t.db"), "--format", "json").stdout.splitlines()
            state = json.loads(listed[0])["state"] if listed else ""
    time.sleep(0.5)
    p.send_signal(signal.SIGTERM)
    try:
        out, err = p.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        p.kill()
        raise
    finally:
        silent.close()
    assert p.returncode == 130, err
    assert err.strip().endswith("stowaway: interrupted") and "Traceback" not in err
    tasks = [json.loads(line) for line in run("tasks", "--db", str(tmp_path / "t.db"), "--format", "json").stdout.splitlines()]
    scans = [json.loads(line) for line in run("scans", "--db", str(tmp_path / "t.db"), "--format", "json").stdout.splitlines()]
    assert [t["state"] for t in tasks] == ["interrupted"] and [s["status"] for s in scans] == ["interrupted"]


@corpus
@pytest.mark.corpus
def test_corpus_gate_and_table(tmp_path):
    db = str(tmp_path / "x.db")
    assert run("db", "import", str(SHARED / "feeds" / "osv"), "--db", db).returncode == 0
    r = run("scan", f"docker-archive:{CORPUS / 'shop-1.0.docker.tar.gz'}", "--db", db, "--fail-on", "critical",
            "--no-progress")
    assert r.returncode == 3, r.stderr
    r = run("report", "corpus/shop:1.0", "--db", db, "--format", "table")
    assert r.returncode == 0
    lines = r.stdout.splitlines()
    i = next(n for n, line in enumerate(lines) if " CVE-2021-44228 " in line)
    assert "log4j-core" in lines[i] and "-> 2.15.0" in lines[i]
    assert "layer 2 (COPY" in lines[i + 1] and "/opt/shop/lib/log4j-core-2.14.1.jar" in lines[i + 1]
    assert max(len(line) for line in lines) <= 100
    report = json.loads(run("report", "corpus/shop:1.0", "--db", db, "--format", "json").stdout)
    sarif = json.loads(run("report", "corpus/shop:1.0", "--db", db, "--format", "sarif").stdout)
    assert len(sarif["runs"][0]["results"]) == failing_unsuppressed(report) > 100  # every one, no page limit


def test_table_counts_are_the_read_models(ci):
    from stowaway.ingest import render
    from stowaway.ingest.cli import _read_model_counts, open_db
    from stowaway.ingest.report import build

    database = open_db(ci["db"], write=False)
    report = build(database, REF)
    counts = _read_model_counts(database, report)
    assert counts is not None and counts["failing"]["vulnerability"]
    found = render.items(report)
    assert render.summary_rows(found, counts) == render.summary_rows(found)
