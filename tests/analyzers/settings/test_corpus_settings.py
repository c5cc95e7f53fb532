"""Acceptance on the shared corpus: check_report.py --only weak_passwords,ssh,password_policy,baseline."""
import json
import re
import subprocess
import sys

from conftest import CORPUS, corpus

from stowaway.ingest.report import build

AREAS = "weak_passwords,ssh,password_policy,baseline"


def check(report: dict, tmp_path, areas: str, image: str) -> subprocess.CompletedProcess:
    path = tmp_path / f"{image.replace('/', '_')}.json"
    path.write_text(json.dumps(report))
    return subprocess.run([sys.executable, str(CORPUS / "check_report.py"), str(path), "--only", areas, "--image", image],
                          capture_output=True, text=True)


@corpus
def test_shop_passes_every_unsafe_settings_area(scan, tmp_path):
    database, outcomes = scan(f"docker-archive:{CORPUS / 'shop-1.0.docker.tar.gz'}", risks=["unsafe_settings"])
    assert outcomes[0].status == "done", outcomes[0].error
    report = build(database, "corpus/shop:1.0")
    result = check(report, tmp_path, AREAS, "corpus/shop:1.0")
    assert result.returncode == 0, result.stdout
    assert "areas: 4/4 complete" in result.stdout
    # neither the matched passwords, the hashes nor the ENV secret reach the unsafe-settings results
    text = json.dumps(report["unsafe_settings"])
    for account in json.load(open(CORPUS / "expected.json"))["images"]["corpus/shop:1.0"]["accounts"]:
        if account.get("password"):
            assert f'"{account["password"]}"' not in text and f" {account['password']} " not in text
    assert "$y$" not in text and "$6$" not in text and "S3cr3tP4ss" not in text
    facts = dict(database.execute("SELECT name, value FROM scan_facts").fetchall())
    stats = json.loads(facts["weak_passwords"])["/etc/shadow"]
    assert stats["weak"] == 2 and stats["tried"] > 0
    # deploy's strong yescrypt hash: checked through, or (on a loaded machine) said to be partly checked
    deploy = next(u for u in report["unsafe_settings"] if u["category"] == "weak_password" and u["target"] == "deploy")
    if stats["exhausted"]:
        assert deploy["result"] == "not_applicable" and re.search(r"checked \d+ of \d+ candidates before the time"
                                                                  r" budget of 10 s", deploy["evidence"])
    else:
        assert deploy["result"] == "pass"
    # the Dockerfile set the hashes with 'chpasswd -e', so the image history holds them
    history = [u for u in report["unsafe_settings"] if u["check_id"] == "container.secrets-in-history"]
    assert [u["result"] for u in history] == ["fail"] and "layer 7" in history[0]["evidence"]


@corpus
def test_tools_busybox_root_without_password(scan, tmp_path):
    database, outcomes = scan(f"docker-archive:{CORPUS / 'tools-1.0.docker.tar'}", risks=["unsafe_settings"])
    assert outcomes[0].status == "done", outcomes[0].error
    result = check(build(database, "corpus/tools:1.0"), tmp_path, "weak_passwords", "corpus/tools:1.0")
    assert result.returncode == 0, result.stdout
