import json
import shutil
import subprocess

import pytest
from imagebuilder import File, ImageBuilder
from settings_fixtures import build_env, own_verdict_cache, results  # noqa: F401 (an autouse fixture)

from stowaway.analyzers.settings.crypt import libcrypt, scheme_of
from stowaway.analyzers.settings.passwords import WeakPasswords, builtin_list, derived
from stowaway.analyzers.settings.verdict_cache import forget_memory
from stowaway.ingest.model import FileInfo, LayerFile, ScanError


def tool_hash(scheme: str, password: str) -> str:
    """A hash made by the system's own tools: openssl for the SHA and MD5 crypts, mkpasswd (Debian's whois) else."""
    if scheme in ("sha512crypt", "sha256crypt", "md5crypt"):
        flag = {"sha512crypt": "-6", "sha256crypt": "-5", "md5crypt": "-1"}[scheme]
        if not shutil.which("openssl"):
            pytest.skip("openssl not installed")
        return subprocess.run(["openssl", "passwd", flag, "-stdin"], input=password, capture_output=True, text=True,
                              check=True).stdout.strip()
    if not shutil.which("mkpasswd"):
        pytest.skip("mkpasswd not installed (apt-get install whois)")
    method = {"bcrypt": "bcrypt", "descrypt": "descrypt", "yescrypt": "yescrypt", "gost-yescrypt": "gost-yescrypt",
              "scrypt": "scrypt", "bsdicrypt": "bsdicrypt"}[scheme]
    return subprocess.run(["mkpasswd", "-m", method, "--stdin"], input=password, capture_output=True, text=True,
                          check=True).stdout.strip()


SCHEMES = ["yescrypt", "sha512crypt", "sha256crypt", "md5crypt", "bcrypt", "descrypt", "gost-yescrypt", "scrypt",
           "bsdicrypt"]


@pytest.mark.parametrize("scheme", SCHEMES)
def test_tool_made_hashes_of_every_scheme_verify(scheme):
    stored = tool_hash(scheme, "letmein")
    assert scheme_of(stored) == scheme
    lib = libcrypt()
    assert lib.verify(b"letmein", stored)
    assert not lib.verify(b"letmein!", stored)


@pytest.mark.parametrize("prefix,scheme", [("$y$", "yescrypt"), ("$6$", "sha512crypt"), ("$5$", "sha256crypt"),
                                           ("$1$", "md5crypt"), ("$2b$", "bcrypt"), ("", "descrypt")])
def test_generated_salts_of_every_scheme_verify(prefix, scheme):
    lib = libcrypt()
    stored = lib.crypt(b"qwerty", lib.gensalt(prefix))
    assert scheme_of(stored) == scheme
    assert lib.verify(b"qwerty", stored) and not lib.verify(b"Qwerty", stored)


def test_scheme_of_special_fields():
    assert scheme_of("") == "empty"
    assert scheme_of("!") == scheme_of("*") == scheme_of("!!") == scheme_of("!$6$abc$def") == "locked"
    assert scheme_of("$9$x") == "unknown"


def shadow(lines):
    return "".join(f"{name}:{field}:19000:0:99999:7:::\n" for name, field in lines)


def analyze(text, path="/etc/shadow", policy=None, analyzer=None):
    """The record of one password file, once its guessing is settled (as the pipeline does per image)."""
    analyzer = analyzer or WeakPasswords(policy or {})
    data = text.encode()
    record = analyzer.analyze(LayerFile(FileInfo(path, "file", len(data), 0o640), data, 0))[0]
    analyzer.settle([[record]])
    assert "_job" not in record
    return analyzer, record


def test_weak_derived_policy_and_strong_accounts():
    lib = libcrypt()
    text = shadow([
        ("root", "*"),
        ("admin", tool_hash("sha512crypt", "admin123")),  # a user-name guess
        ("test", tool_hash("yescrypt", "123456")),  # the built-in list
        ("shop", lib.crypt(b"Sh0p-Summer", lib.gensalt("$5$"))),  # only the policy's list has it
        ("deploy", tool_hash("md5crypt", "k7#Vq9!zR2mW")),  # strong
        ("guest", ""),
    ])
    _, record = analyze(text, policy={"passwords": {"extra": ["Sh0p-Summer"]}})
    status = {a["name"]: a["status"] for a in record["accounts"]}
    assert status == {"root": "locked", "admin": "weak", "test": "weak", "shop": "weak", "deploy": "not_found",
                      "guest": "empty"}
    # the record says which accounts are weak, never the password nor how far down the list it was
    text_of_record = json.dumps(record)
    for secret in ("admin123", "123456", "Sh0p-Summer", "$6$", "$y$"):
        assert secret not in text_of_record
    assert all("tried" not in a for a in record["accounts"] if a["status"] == "weak")
    deploy = next(a for a in record["accounts"] if a["name"] == "deploy")
    assert deploy["tried"] == len(set(derived("deploy") + ["Sh0p-Summer"] + builtin_list()))
    assert record["tried"] == deploy["tried"] and record["weak"] == 3 and not record["exhausted"]


def test_without_the_policy_list_the_policy_password_is_not_found():
    lib = libcrypt()
    _, record = analyze(shadow([("shop", lib.crypt(b"Sh0p-Summer", lib.gensalt("$1$")))]))
    assert record["accounts"][0]["status"] == "not_found"


def test_candidates_libcrypt_cannot_take_are_dropped_not_fatal():
    lib = libcrypt()
    _, record = analyze(shadow([("ops", lib.crypt(b"pw", lib.gensalt("$1$")))]),
                        policy={"passwords": {"extra": ["a\0b", "x" * 600, "pw"]}})
    assert record["accounts"][0]["status"] == "weak"


def test_extra_file_and_bad_policy(tmp_path):
    words = tmp_path / "words.txt"
    words.write_text("# ours\nCorp!2024\n")
    lib = libcrypt()
    _, record = analyze(shadow([("ops", lib.crypt(b"Corp!2024", lib.gensalt("$6$")))]),
                        policy={"passwords": {"extra_file": str(words)}})
    assert record["accounts"][0]["status"] == "weak"
    with pytest.raises(ScanError, match="extra_file"):
        WeakPasswords({"passwords": {"extra_file": str(tmp_path / "missing.txt")}})
    with pytest.raises(ScanError, match="budget_seconds"):
        WeakPasswords({"passwords": {"budget_seconds": "soon"}})
    with pytest.raises(ScanError, match="positive"):
        WeakPasswords({"passwords": {"budget_seconds": 0}})


def test_policy_lists_change_the_cache_fingerprint():
    assert WeakPasswords({}).fingerprint() == WeakPasswords({}).fingerprint()
    assert WeakPasswords({}).fingerprint() != WeakPasswords({"passwords": {"extra": ["x"]}}).fingerprint()
    assert WeakPasswords({}).fingerprint() != WeakPasswords({"passwords": {"budget_seconds": 5}}).fingerprint()


def test_the_same_hash_in_another_layer_image_or_scan_is_not_guessed_twice(tmp_path):
    lib = libcrypt()
    stored = lib.crypt(b"k7#Vq9!zR2mW", lib.gensalt("$6$"))
    text = shadow([("deploy", stored)])
    analyzer, first = analyze(text)
    assert first["accounts"][0]["status"] == "not_found" and first["cached"] == 0
    again = analyzer.analyze(LayerFile(FileInfo("/etc/shadow", "file", len(text), 0o640), text.encode(), 1))[0]
    assert "_job" not in again and again["cached"] == 1  # decided in analyze: nothing to guess
    assert again["accounts"] == first["accounts"]
    # another process (its memory empty) on the same machine: the verdict comes from the cache file
    forget_memory()
    _, other_scan = analyze(text)
    assert other_scan["cached"] == 1 and other_scan["accounts"] == first["accounts"]
    # another candidate list may judge the same hash otherwise: it is guessed again
    _, other_list = analyze(text, policy={"passwords": {"extra": ["k7#Vq9!zR2mW"]}})
    assert other_list["accounts"][0]["status"] == "weak" and other_list["cached"] == 0
    # the cache holds keyed fingerprints only: neither the hash nor its salt, nor a password
    stored_bytes = b"".join(p.read_bytes() for p in (tmp_path / "cache").iterdir())
    for secret in (stored, stored.split("$")[2], "k7#Vq9!zR2mW"):
        assert secret.encode() not in stored_bytes
    # without the verdict cache nothing is written
    forget_memory()
    for p in (tmp_path / "cache").iterdir():
        p.unlink()
    (tmp_path / "data" / "password-verdicts.key").unlink()
    _, uncached = analyze(text, policy={"passwords": {"verdict_cache": False}})
    assert uncached["cached"] == 0 and not list((tmp_path / "cache").iterdir())
    assert not list((tmp_path / "data").iterdir())


def test_unknown_or_bad_cost_caps_are_refused():
    with pytest.raises(ScanError, match="unknown scheme"):
        WeakPasswords({"passwords": {"max_cost": {"bcrpyt": 12}}})
    with pytest.raises(ScanError, match="max_cost.bcrypt must be a positive number"):
        WeakPasswords({"passwords": {"max_cost": {"bcrypt": "high"}}})
    with pytest.raises(ScanError, match="max_accounts"):
        WeakPasswords({"passwords": {"max_accounts": 0}})


def test_accounts_past_the_account_cap_are_reported_unverified():
    lib = libcrypt()
    text = shadow([(f"u{i}", lib.crypt(b"x9!long-unguessable", lib.gensalt("$1$"))) for i in range(3)])
    _, record = analyze(text, policy={"passwords": {"max_accounts": 2}})
    assert [a["status"] for a in record["accounts"]] == ["not_found", "not_found", "unverified"]
    assert "more than 2 accounts" in record["accounts"][2]["reason"] and record["exhausted"]


def test_unsupported_scheme_and_legacy_passwd_hashes():
    _, record = analyze(shadow([("old", "$9$abc$def")]))
    assert record["accounts"][0]["status"] == "unsupported"
    lib = libcrypt()
    passwd = f"root:x:0:0:root:/root:/bin/sh\nlegacy:{lib.crypt(b'legacy', lib.gensalt(''))}:1000:1000::/home/l:/bin/sh\n" \
             "nopw::1001:1001::/home/n:/bin/sh\n"
    _, record = analyze(passwd, path="/etc/passwd")
    assert {a["name"]: a["status"] for a in record["accounts"]} == {"legacy": "weak", "nopw": "empty"}


def test_results_per_account_and_empty_password_baseline():
    lib = libcrypt()
    text = shadow([("admin", lib.crypt(b"admin", lib.gensalt("$6$"))), ("deploy", lib.crypt(b"k7#Vq9!zR2mW", lib.gensalt("$6$"))),
                   ("guest", ""), ("root", "!")])
    _, record = analyze(text)
    env = build_env({"/etc/shadow": File(text, mode=0o640)})
    env.password_files = {"/etc/shadow": (record, 0)}
    found = {f.detail["target"]: f for f in results(env, "weak_password.account")}
    assert {t: f.status for t, f in found.items()} == {"admin": "fail", "deploy": "pass", "guest": "fail"}
    assert found["admin"].detail["evidence"] == "/etc/shadow:1: the sha512crypt hash of admin matches a weak password"
    assert "candidates tried" in found["deploy"].detail["evidence"]
    empty = results(env, "baseline.empty-passwords")
    assert [f.status for f in empty] == ["fail"] and "guest" in empty[0].detail["evidence"]
    env.password_files = {}
    assert [f.status for f in results(env, "weak_password.account")] == ["not_applicable"]


def test_scan_end_to_end_with_a_visible_and_a_replaced_shadow(scan, tmp_path):
    lib = libcrypt()
    weak = lib.crypt(b"password", lib.gensalt("$6$"))
    img = ImageBuilder()
    img.layer({"etc/os-release": "ID=debian\nVERSION_ID=12\n",
               "etc/passwd": "root:x:0:0:root:/root:/bin/bash\nold:x:1000:1000::/home/old:/bin/sh\n",
               "etc/shadow": File(shadow([("root", "*"), ("old", weak)]), mode=0o640)})
    img.layer({"etc/passwd": "root:x:0:0:root:/root:/bin/bash\nnew:x:1000:1000::/home/new:/bin/sh\n",
               "etc/shadow": File(shadow([("root", "*"), ("new", lib.crypt(b"new", lib.gensalt("$y$")))]), mode=0o640)})
    img.write_oci_layout(tmp_path / "oci", ref="pw:1")
    database, outcomes = scan(f"oci:{tmp_path / 'oci'}", analyzer_names=["os-release", "weak-passwords"])
    assert outcomes[0].status == "done", outcomes[0].error
    from stowaway.ingest.report import build

    report = build(database, "pw:1")
    weak_rows = [u for u in report["unsafe_settings"] if u["category"] == "weak_password"]
    # only the final /etc/shadow counts: 'old' was replaced by layer 1, whose 'new' uses its user name
    assert [(u["target"], u["result"], u["layer_index"]) for u in weak_rows] == [("new", "fail", 1)]
    empty = [u for u in report["unsafe_settings"] if u["check_id"] == "baseline.empty-passwords"]
    assert [(u["result"], u["layer_index"]) for u in empty] == [("pass", 1)]
    # no hash anywhere: not in the report, not in the cached per-layer records
    from stowaway.ingest.pipeline import unpack

    cached = [json.dumps(unpack(r[0])) for r in database.execute("SELECT records FROM layer_analyses")]
    for text in [json.dumps(report)] + cached:
        assert "$6$" not in text and "$y$" not in text
    facts = dict(database.execute("SELECT name, value FROM scan_facts").fetchall())
    stats = json.loads(facts["weak_passwords"])["/etc/shadow"]
    assert stats["layer_index"] == 1 and stats["budget_seconds"] == 10.0


def test_a_missing_libcrypt_is_one_clear_error():
    from stowaway.analyzers.settings.crypt import CryptUnavailable, LibCrypt

    with pytest.raises(CryptUnavailable, match="cannot load libcrypt"):
        LibCrypt("/nonexistent/libcrypt.so.1")


def test_garbage_shadow_lines_are_skipped_not_fatal():
    lib = libcrypt()
    text = "\x00\xff garbage\n::::\nnocolon\n" + shadow([("ok", lib.crypt(b"ok", lib.gensalt("$5$"))), ("odd", "$9$x"), ("cut", "$6$x")])
    _, record = analyze(text)
    assert {a["name"]: a["status"] for a in record["accounts"]} == {"ok": "weak", "odd": "unsupported", "cut": "not_found"}
