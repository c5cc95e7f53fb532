"""The policy file: the example loads and validates, the schema catches bad values, the doc lists what exists."""
import re

import pytest
from conftest import ROOT, report_of
from imagebuilder import File, ImageBuilder

from stowaway.ingest.model import ScanError
from stowaway.ingest.policy import load
from stowaway.ingest.policy_schema import SCHEMA, enforce, validate

EXAMPLE = ROOT / "examples" / "policy.toml"
DOC = ROOT / "docs" / "policy.md"


def test_example_loads_and_has_no_problems():
    policy = load(str(EXAMPLE), approved_bases=["corp/base:1"])
    assert validate(policy) == []
    assert policy["base_images"]["approved"] == ["corp/base:1"]
    assert len(policy["secrets"]["exclude_paths"]) <= 20
    assert {r["id"] for r in policy["compliance"]["forbid"]} == {"eol-openssl", "no-debuggers", "vendored-log4j"}


def test_example_drives_a_scan(tmp_path, scan):
    img = ImageBuilder()
    img.layer({"etc/os-release": "ID=debian\nVERSION_ID=11\n", "usr/bin/gdb": File(b"\x7fELF gdb", mode=0o755),
               "usr/sbin/tcpdump": File(b"\x7fELF tcpdump", mode=0o755),
               "usr/bin/socat": File(b"\x7fELF socat", mode=0o755)})
    img.write_oci_layout(tmp_path / "oci", ref="demo/app:1")
    policy = load(str(EXAMPLE))
    database, outcomes = scan(f"oci:{tmp_path / 'oci'}", policy=policy, risks=["compliance"])
    assert [o.status for o in outcomes] == ["done"], outcomes
    rules = {(c["path"], c["rule"]) for c in report_of(database, "demo/app:1")["software_compliance"]}
    # its own rule, a default rule, and tcpdump allowed
    assert rules == {("/usr/bin/gdb", "no-debuggers"), ("/usr/bin/socat", "default/socat")}


def test_the_defaults_are_valid_so_a_scan_without_a_policy_skips_the_check():
    """load() checks a policy that differs from the defaults only (a scan without a file, --set or base,
    such as most rescans, does not load the schema and the archive reader it names): that holds while
    the defaults themselves pass the check."""
    from stowaway.ingest.policy import DEFAULTS

    assert validate(DEFAULTS) == [] and load() == DEFAULTS
    with pytest.raises(ScanError, match="base_images.approved"):
        load(approved_bases=[" "])  # anything added is still checked


def test_limits_are_the_stream_limits():
    from dataclasses import fields

    from stowaway.ingest.streams import Limits

    assert set(SCHEMA["limits"]) == {f.name for f in fields(Limits)}
    assert validate({"limits": {f.name: f.default for f in fields(Limits)}}) == []


def test_unknown_sections_and_keys_are_warnings():
    problems = validate({"limits": {"max_ratio": 10, "max_raito": 5}, "secretz": {}})
    assert problems == [
        "warning: limits.max_raito: unknown setting ignored (known: " + ", ".join(sorted(SCHEMA["limits"])) + ")",
        "warning: unknown section [secretz] ignored (known: " + ", ".join(sorted(SCHEMA)) + ")",
    ]


@pytest.mark.parametrize("policy,where", [
    ({"limits": {"max_layer_bytes": "16G"}}, "limits.max_layer_bytes: expected an integer"),
    ({"limits": {"max_layer_bytes": True}}, "limits.max_layer_bytes: expected an integer, got a boolean"),
    ({"limits": {"max_ratio": -1}}, "limits.max_ratio: expected a number >= 0"),
    ({"secrets": {"exclude_paths": [f"/p{i}/*" for i in range(21)]}}, "at most 20 are allowed"),
    ({"secrets": {"exclude_paths": "/opt/*"}}, "secrets.exclude_paths: expected a list of strings"),
    ({"secrets": {"builtin": "yes"}}, "secrets.builtin: expected true or false"),
    ({"secrets": []}, "[secrets] must be a table"),
    ({"compliance": {"forbid": [{"package": "x", "versions": ">>1"}]}}, "compliance.forbid: rule 1: bad version"),
    ({"compliance": {"forbid": [{"reason": "nothing"}]}}, "names nothing to forbid"),
    ({"compliance": {"use_defaults": "no"}}, "compliance.use_defaults: expected true or false"),
    ({"base_images": {"approved": [""]}}, "base_images.approved: item 1 is an empty string"),
    ({"vulnerabilities": {"ignore_file": 3}}, "vulnerabilities.ignore_file: expected a non-empty string"),
    ({"scan": {"jobs": 0}}, "scan.jobs: expected an integer >= 1"),
])
def test_wrong_types_are_errors_with_the_dotted_key(policy, where):
    problems = validate(policy)
    assert len(problems) == 1 and problems[0].startswith("error: ") and where in problems[0], problems


def test_registries_are_tables_per_host():
    assert validate({"registries": {"ghcr.io": {"images_per_hour": 100, "insecure": False, "scheme": "https"}}}) == []
    assert validate({"registries": {"ghcr.io": {"insecure": "yes", "colour": 1}, "quay.io": 3}}) == [
        "error: registries.ghcr.io.insecure: expected true or false, got a string",
        "warning: registries.ghcr.io.colour: unknown setting ignored (known: backoff, ca, images_per_hour, insecure,"
        " max_manifest, password, retries, scheme, timeout, username)",
        "error: registries.quay.io: expected a table, got an integer"]


def test_free_form_sections_and_valid_values_pass():
    assert validate({"source_options": {"registry": {"insecure": True}}, "credentials": {"x": 1},
                     "limits": {"max_ratio": 500}, "compliance": {"forbid": "telnet", "allow": "tcpdump"},
                     "base_images": {"approved": "corp/base:1"}}) == []
    assert validate([]) == ["error: the policy must be a table, got a list"]


def test_enforce_raises_once_with_every_error_and_reports_warnings():
    seen = []
    with pytest.raises(ScanError) as info:
        enforce({"limits": {"max_json": "big"}, "scan": {"jobs": "two"}, "extra": {}}, warn=seen.append)
    assert str(info.value).startswith("policy: limits.max_json: expected an integer")
    assert "scan.jobs: expected an integer" in str(info.value)
    assert enforce({"extra": {}}, warn=seen.append) == [seen[-1]] and "unknown section [extra]" in seen[-1]


def test_cli_overrides_are_validated_like_the_file(tmp_path):
    cfg = tmp_path / "p.toml"
    cfg.write_text("[secrets]\nmax_file_size = 1000\n")
    assert validate(load(str(cfg), overrides=["secrets.max_file_size=2000"], check=False)) == []
    problems = validate(load(str(cfg), overrides=["secrets.max_file_size=lots"], check=False))
    assert problems == ["error: secrets.max_file_size: expected an integer, got a string"]


def _documented() -> dict[str, set[str]]:
    """section -> keys, from the doc's `| key | type | default | meaning |` tables."""
    sections: dict[str, set[str]] = {}
    current = None
    in_table = False
    for line in DOC.read_text().splitlines():
        if line.startswith("## "):
            names = re.findall(r"`\[(\w+)\]`", line)
            for name in names:
                sections.setdefault(name, set())
            current, in_table = (names[0] if len(names) == 1 else None), False
            continue
        if line.startswith("| key | type | default |"):
            in_table = True
            continue
        if not line.startswith("|"):
            in_table = False
            continue
        m = re.match(r"^\| `(\w+)` \|", line)
        if in_table and current and m:
            sections[current].add(m.group(1))
    return sections


def test_the_doc_describes_exactly_the_settings_that_exist():
    documented = _documented()
    assert set(documented) == set(SCHEMA)
    for section, keys in SCHEMA.items():
        keys = getattr(keys, "keys", keys) if callable(keys) else keys  # per-host tables document their keys
        assert documented[section] == set(keys or ()), section


def test_every_analyzer_accepts_the_example(tmp_path, scan, monkeypatch):
    monkeypatch.setenv("STOWAWAY_SECRET_KEY_FILE", str(tmp_path / "key"))
    img = ImageBuilder()
    img.layer({"etc/os-release": "ID=debian\nVERSION_ID=11\n", "etc/passwd": "root:x:0:0:root:/root:/bin/sh\n",
               "etc/shadow": "root:*:19000:0:99999:7:::\n", "opt/app/readme.txt": "hello"})
    img.write_oci_layout(tmp_path / "oci", ref="demo/all:1")
    database, outcomes = scan(f"oci:{tmp_path / 'oci'}", policy=load(str(EXAMPLE)))
    assert [o.status for o in outcomes] == ["done"], outcomes
    errors = database.execute("SELECT value FROM scan_facts WHERE name = 'analyzer_errors'").fetchall()
    assert errors == []


def test_policy_check_command(tmp_path):
    import json
    import subprocess
    import sys

    def run(*args):
        return subprocess.run([sys.executable, "-m", "stowaway.ingest.cli", "policy", "check", *args],
                              capture_output=True, text=True, timeout=120)

    r = run("--config", str(EXAMPLE), "--show", "--approved-base", "corp/base:1")
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert json.loads(r.stdout)["base_images"]["approved"] == ["corp/base:1"]
    r = run("--config", str(EXAMPLE), "--set", "limits.max_json=big", "--set", "limitz.x=1")
    assert r.returncode == 2
    assert r.stderr.splitlines() == [
        "stowaway: policy: error: limits.max_json: expected an integer, got a string",
        "stowaway: policy: warning: unknown section [limitz] ignored (known: " + ", ".join(sorted(SCHEMA)) + ")"]
    bad = tmp_path / "bad.toml"
    bad.write_text("[secrets\n")
    r = run("--config", str(bad))
    assert r.returncode == 2 and r.stderr.startswith(f"stowaway: {bad}: invalid TOML")


def test_settings_edited_in_datasette_reach_every_scan_of_that_database(tmp_path):
    """Exclusions and weak passwords stored in the database are added to the file's lists; 21 is refused."""
    import subprocess
    import sys

    from imagebuilder import ImageBuilder

    from stowaway.ingest.db import connect
    from stowaway.ingest.model import ScanError
    from stowaway.ingest.policy import SETTINGS_TABLE, with_database_settings

    db = str(tmp_path / "s.db")
    database = connect(db)
    database.conn.execute(f"CREATE TABLE IF NOT EXISTS {SETTINGS_TABLE} (id INTEGER PRIMARY KEY, kind TEXT, value TEXT,"
                          " created_at TEXT, actor TEXT, UNIQUE (kind, value))")
    database.conn.execute(f"INSERT INTO {SETTINGS_TABLE} (kind, value) VALUES ('sensitive_path_exclusion', '/opt/app/*')")
    database.conn.execute(f"INSERT INTO {SETTINGS_TABLE} (kind, value) VALUES ('weak_password', 'Sh0p2024!')")
    database.conn.commit()
    merged = with_database_settings({"secrets": {"exclude_paths": ["/srv/*"]}}, database)
    assert merged["secrets"]["exclude_paths"] == ["/srv/*", "/opt/app/*"]
    assert merged["passwords"]["extra"] == ["Sh0p2024!"]
    with pytest.raises(ScanError, match="exclude_paths"):
        with_database_settings({"secrets": {"exclude_paths": [f"/x{i}/*" for i in range(20)]}}, database)
    # and the CLI scan honours them: the planted token under /opt/app is not reported
    img = ImageBuilder().layer({"opt/app/.env": "GITHUB_TOKEN=ghp_" + "Ab1Cd2Ef3G" * 3 + "h4I5j6\n",
                                "srv/.env": "GITHUB_TOKEN=ghp_" + "Zy9Xw8Vu7T" * 3 + "s6R5q4\n"})
    path = img.write_docker_archive(tmp_path / "x.tar", ref="settings:1")
    r = subprocess.run([sys.executable, "-m", "stowaway.ingest.cli", "scan", f"docker-archive:{path}", "--db", db,
                        "--risk", "secrets", "--no-progress"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    paths = {row[0] for row in database.conn.execute("SELECT path FROM findings WHERE kind = 'secret'")}
    assert paths == {"/srv/.env"}
