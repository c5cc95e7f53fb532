"""The secrets analyzer through the real pipeline: exclusions, the 20-pattern limit, size and binary
skipping, deleted files, the image config, fingerprints, and no raw value anywhere in the database."""
import json
import pathlib
import random

import pytest
import zstandard
from conftest import report_of
from imagebuilder import WHITEOUT, File, ImageBuilder, tar_of, zip_of

from stowaway.analyzers.secrets.analyzer import DEFAULT_EXCLUDES, Secrets, exclusions
from stowaway.ingest.model import ScanError

ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


def tok(n, seed):
    rnd = random.Random(seed)
    return "".join(rnd.choice(ALNUM) for _ in range(n))


GHP = "ghp_" + tok(36, 1)
GHP2 = "ghp_" + tok(36, 2)
STRIPE = "sk_live_" + tok(24, 3)
AWS_ID = "AKIA" + tok(16, 4).upper()
DB_PASS = "Tr0ub4dor"  # a weak value: only its ENV name makes it a secret
LABEL_TOKEN = "glpat-" + tok(20, 5)
HISTORY_PASS = "Pq9xL2mZ7k"
KEY_BODY = "\n".join(tok(64, 10 + i) for i in range(6))
PRIVATE_KEY = f"-----BEGIN OPENSSH PRIVATE KEY-----\n{KEY_BODY}\n-----END OPENSSH PRIVATE KEY-----\n"
RAW = [GHP, GHP2, STRIPE, AWS_ID, DB_PASS, LABEL_TOKEN, HISTORY_PASS] + KEY_BODY.splitlines()


@pytest.fixture(autouse=True)
def private_dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("STOWAWAY_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("STOWAWAY_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("STOWAWAY_SECRET_KEY_FILE", raising=False)


def run(scan, tmp_path, img, policy=None, ref="t:1", name="oci"):
    img.write_oci_layout(tmp_path / name, ref=ref, layer_compression="zstd")
    database, out = scan(f"oci:{tmp_path / name}", policy=policy, risks=["secrets"])
    assert [o.status for o in out] == ["done"], out
    return database, report_of(database, ref)


def fact(database, rep, name):
    row = database.execute("SELECT value FROM scan_facts WHERE scan_id=? AND name=?", [rep["scan"]["id"], name]).fetchone()
    return json.loads(row[0])


@pytest.mark.parametrize("path, excluded", [
    ("/usr/lib/shop/embedded.conf", True), ("/usr/local/lib/python3.9/x.py", True), ("/lib/x", True),
    ("/lib32/x", True), ("/bin/tool", True), ("/sbin/x", True), ("/var/lib/dpkg/status", True),
    ("/var/log/app.log", True), ("/opt/w/node_modules/jquery/README.md", True),
    ("/node_modules/a/b/CHANGELOG.md", True), ("/opt/w/node_modules/jquery/test/fixture.js", True),
    ("/opt/w/node_modules/a/b/test/unit/x.js", True), ("/src/aws/service/iam/examples_test.go", True),
    ("/srv/grafana/public/build/app.js", True),
    ("/opt/w/node_modules/jquery/dist/jquery.js", False), ("/opt/w/node_modules/a/README.txt", False),
    ("/opt/shop/.env", False), ("/etc/ssh/ssh_host_rsa_key", False), ("/var/tmp/x", False), ("/usrx/a", False),
    ("/srv/grafana/public/build/sub/app.js", False), ("/root/.docker/config.json", False),
])
def test_default_exclusions(path, excluded):
    patterns, rx = exclusions([])
    assert patterns == list(DEFAULT_EXCLUDES)
    assert (rx.fullmatch(path) is not None) is excluded


def test_user_exclusions_up_to_twenty():
    user = [f"/srv/data{i}/*" for i in range(19)] + ["AnyPath/testdata/AnyName.json"]
    a = Secrets({"secrets": {"exclude_paths": user}})
    assert a.excluded.fullmatch("/srv/data7/deep/x.env") and a.excluded.fullmatch("/a/b/testdata/c.json")
    assert not a.excluded.fullmatch("/srv/data20/x") and not a.excluded.fullmatch("/a/testdata/sub/c.json")
    assert a.fingerprint() != Secrets({}).fingerprint()  # a new exclusion re-reads the layers


def test_twenty_first_exclusion_refused():
    with pytest.raises(ScanError, match=r"secrets.exclude_paths: 21 patterns given; at most 20"):
        Secrets({"secrets": {"exclude_paths": [f"/p{i}/*" for i in range(21)]}})
    with pytest.raises(ScanError, match="expected a list"):
        Secrets({"secrets": {"exclude_paths": "/one/*"}})


def test_twenty_first_exclusion_stops_the_cli_with_one_line(tmp_path, capsys):
    from stowaway.ingest.cli import main

    ImageBuilder().layer({"etc/x": "x"}).write_oci_layout(tmp_path / "oci", ref="t:1")
    policy = tmp_path / "policy.toml"
    policy.write_text("[secrets]\nexclude_paths = [" + ", ".join(f'"/p{i}/*"' for i in range(21)) + "]\n")
    code = main(["scan", f"oci:{tmp_path / 'oci'}", "--db", str(tmp_path / "x.db"), "--config", str(policy),
                 "--risk", "secrets", "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "exclude_paths" in err[0] and "20" in err[0]


def test_files_in_excluded_paths_are_not_reported_elsewhere_they_are(scan, tmp_path):
    img = ImageBuilder().layer({
        "usr/lib/app/embedded.conf": f"token={GHP}\n",
        "opt/w/node_modules/x/test/fixture.js": f"var t = '{GHP}';\n",
        "opt/w/node_modules/x/README.md": f"example: {GHP}\n",
        "opt/w/node_modules/x/index.js": f"var t = '{GHP}';\n",
        "etc/app/token": f"{GHP}\n",
    })
    database, rep = run(scan, tmp_path, img, policy={"secrets": {"exclude_paths": ["/etc/app/*"]}})
    assert [s["path"] for s in rep["sensitive_information"]] == ["/opt/w/node_modules/x/index.js"]
    assert fact(database, rep, "secrets_skipped")["excluded"] == 4


def test_a_name_with_a_newline_under_an_excluded_directory_is_searched_and_not_counted_excluded(scan, tmp_path):
    # '/usr/*' does not cross a newline (a pattern's '*' never does): that file is searched like any other
    files = {f"usr/share/doc/f{i}": f"token={GHP}\n" for i in range(5)}
    img = ImageBuilder().layer({**files, "usr/share/doc/evil\nname": f"token={GHP}\n", "srv/a": "plain\n"})
    database, rep = run(scan, tmp_path, img)
    assert [s["path"] for s in rep["sensitive_information"]] == ["/usr/share/doc/evil\nname"]
    assert fact(database, rep, "secrets_skipped")["excluded"] == 5


def test_large_and_binary_files_skipped_and_counted(scan, tmp_path):
    line = b"2024-01-01 GET /item 200\n"
    big = line * ((20 << 20) // len(line)) + f"token={GHP}\n".encode()
    assert len(big) > 20 << 20
    img = ImageBuilder().layer({
        "opt/data/access.log": File(big),
        "opt/bin/tool": File(b"\x7fELF\x02\x01\x01\x00\x00\x00" + f"GH={GHP}\0".encode() * 3, mode=0o755),
        "opt/app/.env": f"STRIPE_KEY={STRIPE}\n",
    })
    database, rep = run(scan, tmp_path, img)
    assert [(s["path"], s["rule"]) for s in rep["sensitive_information"]] == [("/opt/app/.env", "stripe-secret-key")]
    skipped = fact(database, rep, "secrets_skipped")
    assert skipped["too_large"] == 1 and skipped["binary"] == 1 and skipped["max_file_size"] == 20 << 20


def test_deleted_files_reported_not_visible(scan, tmp_path):
    img = ImageBuilder()
    img.layer({"opt/app/old.env": f"TOKEN={GHP}\n", "opt/cache/c.env": f"AWS={AWS_ID}\n", "opt/app/kept.env": f"T={GHP2}\n"})
    img.layer({"opt/app/.wh.old.env": WHITEOUT, "opt/cache/.wh..wh..opq": WHITEOUT, "opt/cache/new": "fresh"})
    database, rep = run(scan, tmp_path, img)
    got = {(s["path"], s["rule"], s["layer_index"], s["visible"]) for s in rep["sensitive_information"]}
    assert got == {("/opt/app/old.env", "github-pat", 0, False), ("/opt/cache/c.env", "aws-access-key-id", 0, False),
                   ("/opt/app/kept.env", "github-pat", 0, True)}


def config_image():
    img = ImageBuilder()
    img.env = ["PATH=/usr/bin:/bin", "SHOP_HOME=/opt/shop", f"DB_PASSWORD={DB_PASS}", f"GITHUB_TOKEN={GHP2}",
               "API_KEY=${API_KEY}", "SESSION_SECRET="]
    img.labels = {"ci.token": LABEL_TOKEN, "maintainer": "team@example.com"}
    img.layer({"etc/hostname": "x"}, created_by=f"/bin/sh -c curl -fsS https://admin:{HISTORY_PASS}@repo.example/setup.sh | sh")
    img.extra_history = [{"created_by": f"/bin/sh -c #(nop)  ENV DB_PASSWORD={DB_PASS}", "empty_layer": True}]
    return img


def test_config_env_labels_history(scan, tmp_path):
    database, rep = run(scan, tmp_path, config_image())
    got = sorted((s["source"], s["rule"], s["path"], s["title"]) for s in rep["sensitive_information"])
    assert got == [
        ("config:env", "github-pat", "", "GitHub personal access token in ENV GITHUB_TOKEN"),
        ("config:env", "secret-in-env", "", "Credential in ENV DB_PASSWORD"),
        ("config:history", "password-in-url", "", "Password in URL in image history"),
        ("config:label", "gitlab-pat", "", "GitLab personal access token in label ci.token"),
    ]
    history = next(s for s in rep["sensitive_information"] if s["source"] == "config:history")
    assert history["layer_index"] == 0
    # the stored config shows the masked values only, and still names the variables
    assert f"DB_PASSWORD={DB_PASS}" not in rep["image"]["env"]
    assert any(e.startswith("DB_PASSWORD=") and "…" in e for e in rep["image"]["env"])
    assert "API_KEY=${API_KEY}" in rep["image"]["env"]
    assert HISTORY_PASS not in json.dumps(rep["image"]["layers"])


def test_config_redacted_even_without_the_secrets_risk(scan, tmp_path):
    img = config_image()
    img.write_oci_layout(tmp_path / "oci", ref="t:1")
    database, out = scan(f"oci:{tmp_path / 'oci'}", risks=["files"])
    rep = report_of(database, "t:1")
    text = json.dumps(rep)
    assert DB_PASS not in text and HISTORY_PASS not in text and LABEL_TOKEN not in text
    assert not list((tmp_path / "data").glob("*"))  # no fingerprint key made when nothing is fingerprinted


def database_bytes(database, path: pathlib.Path) -> bytes:
    blobs = b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
    # per-layer records are zstd-compressed in the database: look inside them too
    d = zstandard.ZstdDecompressor()
    for (records,) in database.execute("SELECT records FROM layer_analyses"):
        if records:
            blobs += d.decompress(records)
    return blobs


def test_no_raw_secret_anywhere_in_the_database(scan, tmp_path):
    img = config_image()
    img.layer({"opt/app/.env": f"GITHUB_TOKEN={GHP}\nSTRIPE_KEY={STRIPE}\nAWS={AWS_ID}\n",
               "root/.ssh/id_ed25519": PRIVATE_KEY, "opt/app/gone.env": f"T={GHP2}\n"})
    img.layer({"opt/app/.wh.gone.env": WHITEOUT})
    database, rep = run(scan, tmp_path, img)
    assert len(rep["sensitive_information"]) == 9
    database.conn.commit()
    blob = database_bytes(database, tmp_path / "scan.db")
    report = json.dumps(rep).encode()
    assert any(p.name.endswith("-wal") for p in tmp_path.glob("scan.db*"))
    for raw in RAW:
        assert raw.encode() not in blob, raw[:6]
        assert raw.encode() not in report, raw[:6]
    assert b"PRIVATE KEY-----" not in blob
    key = next(s for s in rep["sensitive_information"] if s["rule"] == "private-key")
    assert key["masked"] == "[OPENSSH private key: body masked]"


def fingerprints(database):
    return {(r[0], r[1]): r[2] for r in database.execute(
        "SELECT f.path, d.rule_id, d.fingerprint FROM findings f JOIN secret_details d ON d.finding_id = f.id")}


def test_fingerprints_recognise_the_same_secret(scan, tmp_path, monkeypatch):
    img = ImageBuilder().layer({"a/.env": f"T={GHP}\n", "b/.env": f"X={GHP}\n", "c/.env": f"Y={GHP2}\n"})
    database, rep = run(scan, tmp_path, img)
    fp = fingerprints(database)
    assert fp[("/a/.env", "github-pat")] == fp[("/b/.env", "github-pat")] != fp[("/c/.env", "github-pat")]
    assert all(v.startswith("hmac-sha256:") and GHP[4:] not in v for v in fp.values())
    # a fresh database on the same machine: the same fingerprints
    from stowaway.ingest.db import connect
    from stowaway.ingest.pipeline import Scanner

    other = connect(str(tmp_path / "other.db"))
    Scanner(other, {}, risks=["secrets"], progress=False).run([f"oci:{tmp_path / 'oci'}"])
    assert fingerprints(other) == fp
    # another key: other fingerprints, and the per-layer cache is not reused across keys
    key = tmp_path / "k"
    key.write_bytes(b"k" * 32)
    third = connect(str(tmp_path / "third.db"))
    Scanner(third, {"secrets": {"fingerprint_key_file": str(key)}}, risks=["secrets"], progress=False).run(
        [f"oci:{tmp_path / 'oci'}"])
    assert set(fingerprints(third).values()).isdisjoint(fp.values())
    assert Secrets({"secrets": {"fingerprint_key_file": str(key)}}).fingerprint() != Secrets({}).fingerprint()


def test_cached_layers_give_the_same_findings(scan, tmp_path):
    img = ImageBuilder().layer({"opt/.env": f"T={GHP}\n"})
    database, first = run(scan, tmp_path, img)
    _, out = scan(f"oci:{tmp_path / 'oci'}", risks=["secrets"])
    assert out[0].layers_cached == 1
    again = report_of(database, "t:1")
    assert again["sensitive_information"] == first["sensitive_information"]


def test_gitleaks_rules_in_a_scan(scan, tmp_path):
    rules = tmp_path / "rules.toml"
    rules.write_text("[[rules]]\nid = 'acme-token'\nregex = '''acme_[a-z0-9]{16}'''\nkeywords = ['acme_']\n"
                     "[[rules]]\nid = 'broken'\nregex = '''\\p{L}+'''\n")
    img = ImageBuilder().layer({"opt/conf": "t = acme_" + tok(16, 9).lower() + "\n"})
    database, rep = run(scan, tmp_path, img, policy={"secrets": {"gitleaks": [str(rules)], "builtin": False}})
    assert [(s["path"], s["rule"]) for s in rep["sensitive_information"]] == [("/opt/conf", "acme-token")]
    assert any("1 rule(s) skipped: broken:" in w for w in rep["scan"]["warnings"])


def test_exclusions_apply_inside_archives(scan, tmp_path):
    """The default and the user's excluded paths hold for archive members too (OUTER!/INNER!/MEMBER): a
    relative pattern matches the member's path across the archive boundaries, an absolute one the whole
    path, `!/` included; an included path still wins."""
    env = f"GITHUB_TOKEN={GHP}\n".encode()
    bundle = tar_of({"node_modules/pkg/README.md": env, "testdata/keys/.env": env, "conf/.env": env,
                     "fixtures/.env": env, "lib/inner.jar": zip_of({"testdata/.env": env, "app/.env": env})}, "w:gz")
    img = ImageBuilder().layer({"etc/os-release": "ID=debian\nVERSION_ID=12\n", "opt/app/bundle.tgz": File(bundle)})
    policy = {"secrets": {"exclude_paths": ["AnyPath/testdata/AnyPath", "/opt/app/bundle.tgz!/fixtures/*"]}}
    database, rep = run(scan, tmp_path, img, policy)
    assert {s["path"] for s in rep["sensitive_information"]} == {
        "/opt/app/bundle.tgz!/conf/.env", "/opt/app/bundle.tgz!/lib/inner.jar!/app/.env"}
    assert fact(database, rep, "secrets_skipped")["excluded_archive_members"] == 4
    # an included path wins over an exclusion, inside archives as outside
    policy["secrets"]["include_paths"] = ["AnyPath/testdata/keys/AnyName"]
    database, rep = run(scan, tmp_path, img, policy, name="oci2")
    assert "/opt/app/bundle.tgz!/testdata/keys/.env" in {s["path"] for s in rep["sensitive_information"]}
