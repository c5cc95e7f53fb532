"""Weak-password guessing within bounds (issues 14 and 16): the hash's own cost is read before any
guess and a hash above the policy's cap is refused; the per-image time budget stops the guessing,
even inside a guess that would take hours, and every account says how far it was checked."""
import hashlib
import json
import os

import pytest
from bounded import run_bounded
from imagebuilder import File
from settings_fixtures import build_env, own_verdict_cache, results  # noqa: F401 (an autouse fixture)

from stowaway.analyzers.settings.crypt import DEFAULT_MAX_COST, cost_of, libcrypt, too_costly
from stowaway.analyzers.settings.passwords import WeakPasswords, builtin_list, candidates, derived
from stowaway.analyzers.settings.verdict_cache import forget_memory
from stowaway.ingest.model import FileInfo, LayerFile


def shadow(lines):
    return "".join(f"{name}:{field}:19000:0:99999:7:::\n" for name, field in lines)


def settled(text, policy):
    analyzer = WeakPasswords(policy)
    data = text.encode()
    record = analyzer.analyze(LayerFile(FileInfo("/etc/shadow", "file", len(data), 0o640), data, 0))[0]
    analyzer.settle([[record]])
    return analyzer, record


def test_partial_coverage_is_reported_honestly_when_the_budget_ends():
    lib = libcrypt()
    # far more md5crypt guesses than 3 seconds allow; the password is the very last candidate
    words = [f"filler-{i:06d}" for i in range(200_000)]
    alice = lib.crypt(words[-1].encode(), lib.gensalt("$1$"))
    bob = lib.crypt(b"bob-not-in-any-list-7Hq!", lib.gensalt("$1$"))
    text = shadow([("root", "*"), ("alice", alice), ("bob", bob)])
    policy = {"passwords": {"extra": words, "budget_seconds": 3, "workers": 1}}
    _, record = settled(text, policy)
    accounts = {a["name"]: a for a in record["accounts"]}
    for name in ("alice", "bob"):
        acc = accounts[name]
        total = len(candidates(name, words, builtin_list()))
        assert acc["status"] == "unverified" and acc["candidates"] == total
        assert 0 <= acc["tried"] < total
        assert acc["reason"] == (f"checked {acc['tried']} of {total} candidates before the time budget of 3 s"
                                 " ([passwords] budget_seconds) ran out; md5crypt")
    # never 'not found' (a pass) for an account the budget cut short, never a false 'weak'
    assert record["exhausted"] and record["weak"] == 0
    assert record["tried"] == accounts["alice"]["tried"] + accounts["bob"]["tried"]
    env = build_env({"/etc/shadow": File(text, mode=0o640)})
    env.password_files = {"/etc/shadow": (record, 0)}
    found = {f.detail["target"]: f for f in results(env, "weak_password.account")}
    assert {t: f.status for t, f in found.items()} == {"alice": "not_applicable", "bob": "not_applicable"}
    assert found["alice"].detail["evidence"] == f"/etc/shadow:2: alice (md5crypt) not verified: {accounts['alice']['reason']}"
    # what was checked is remembered (by a keyed fingerprint) and the next scan goes on from there
    analyzer = WeakPasswords(policy)
    for name, stored in (("alice", alice), ("bob", bob)):
        listed = candidates(name, words, builtin_list())
        key = analyzer.cache.key_of(hashlib.sha256("\n".join(listed).encode()).hexdigest(), stored)
        tried = accounts[name]["tried"]
        assert analyzer.cache.get([key]) == ({key: ("partial", tried)} if tried else {})
    forget_memory()
    _, again = settled(text, policy)
    for acc in again["accounts"][1:]:
        assert acc["status"] == "unverified" and acc["tried"] >= accounts[acc["name"]]["tried"]


def test_candidates_come_most_likely_first():
    got = candidates("alice", ["Corp!2024", "alice"], builtin_list())
    assert got[:2] == ["Corp!2024", "alice"]  # the policy's list first
    assert got[2:2 + 19] == derived("alice")[1:]  # then the user-name guesses (alice itself already tried)
    assert got[21:23] == ["123456", "password"]  # then the built-in list, by frequency


@pytest.mark.parametrize("field,scheme,cost", [
    ("$2b$05$abcdefghijklmnopqrstuu", "bcrypt", 5),
    ("$2b$31$abcdefghijklmnopqrstuu", "bcrypt", 31),
    ("$6$saltsalt$x", "sha512crypt", 5000),
    ("$6$rounds=999999999$saltsalt$x", "sha512crypt", 999_999_999),
    ("$5$rounds=20000$saltsalt$x", "sha256crypt", 20_000),
    ("$6$rounds=" + "9" * 5000 + "$s$x", "sha512crypt", 10**12),  # 5,000 digits: never converted whole
    ("$y$j9T$abcdefghijklmnopqrstuv$x", "yescrypt", 16),  # the Debian/Fedora default: N=2^12, r=32
    ("$y$jCT$abcdefghijklmnopqrstuv$x", "yescrypt", 128),  # cost factor 8: N=2^15
    ("$gy$j9T$abcdefghijklmnopqrstuv$x", "gost-yescrypt", 16),
    ("$7$CU..../....abcdefgh$x", "scrypt", 64),  # libxcrypt's default: N=2^14, r=32, p=1
    ("_J9..salt", "bsdicrypt", 725),
    ("_zzzzsalt", "bsdicrypt", 16_777_215),
    ("$sha1$480000$abcdefgh$x", "sha1crypt", 480_000),
    ("$md5,rounds=1000$abcdefgh$", "sunmd5", 5096),
])
def test_the_cost_of_a_guess_is_read_from_the_hash(field, scheme, cost):
    got = cost_of(field)
    assert got is not None and (got.scheme, got.cost) == (scheme, cost)


def test_settings_made_by_libcrypt_parse_to_the_cost_libcrypt_spends():
    lib = libcrypt()
    # yescrypt's cost factor c sets N = 2^(c+7), r = 32 (libxcrypt crypt-gensalt): memory 128 N r
    for factor, mib in ((5, 16), (8, 128), (11, 1024)):
        assert cost_of(lib.gensalt("$y$", factor)).cost == mib
    for rounds in (1000, 65536, 999_999_999):
        assert cost_of(lib.gensalt("$6$", rounds)).cost == rounds
    assert cost_of(lib.gensalt("$2b$", 12)).cost == 12
    assert cost_of("$1$abc$def") is None and cost_of("abJnggxhB/yWI") is None  # fixed, cheap schemes


def test_a_hash_too_costly_to_check_is_refused_without_a_guess():
    text = shadow([("big", "$2b$31$abcdefghijklmnopqrstuu1234567890123456789012345678901"),
                   ("slow", "$6$rounds=999999999$saltsalt$abcdefghijklmnopqrstuvwxyz0123456789"),
                   ("huge", "$y$jZ/T$abcdefghijklmnopqrstuv$abcdefghijklmnopqrstuvwxyz0123456789ABC")])
    analyzer, record = settled(text, {})
    assert analyzer.service._proc is None  # nothing was worth starting a guesser for
    reasons = {a["name"]: (a["status"], a["reason"]) for a in record["accounts"]}
    assert reasons["big"] == ("too_costly", "hash cost too high to check: bcrypt cost 31 (2^31 rounds), above"
                              " [passwords] max_cost.bcrypt = 13 log2 rounds")
    assert reasons["slow"][0] == "too_costly" and "999,999,999 rounds" in reasons["slow"][1]
    assert reasons["huge"][0] == "too_costly" and "N=2^38" in reasons["huge"][1]
    assert record["too_costly"] == 3 and not record["exhausted"]
    env = build_env({"/etc/shadow": File(text, mode=0o640)})
    env.password_files = {"/etc/shadow": (record, 0)}
    found = results(env, "weak_password.account")
    assert [f.status for f in found] == ["not_applicable"] * 3
    assert found[0].detail["evidence"].startswith("/etc/shadow:1: big (bcrypt) not checked: hash cost too high to check")
    # the cap is the policy's: raised, the same hash is guessed (within the budget)
    assert too_costly(cost_of("$2b$31$x"), {**DEFAULT_MAX_COST, "bcrypt": 31}) == ""


def test_the_budget_stops_a_guess_in_progress():
    got = run_bounded("""
        import os
        from stowaway.analyzers.settings.passwords import WeakPasswords
        from stowaway.ingest.model import FileInfo, LayerFile
        text = ("big:$2b$31$abcdefghijklmnopqrstuu1234567890123456789012345678901:19000::::::\\n"
                "slow:$6$rounds=999999999$saltsalt$abcdefghijklmnopqrstuvwxyz0123456789:19000::::::\\n")
        a = WeakPasswords({"passwords": {"budget_seconds": 2, "max_cost": {"bcrypt": 31, "sha512crypt": 1e9}}})
        record = a.analyze(LayerFile(FileInfo("/etc/shadow", "file", len(text), 0o640), text.encode(), 0))[0]
        a.settle([[record]])
        def parent_of(pid):
            try:  # a process may end between listing /proc and reading its stat
                return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1]
            except (FileNotFoundError, ProcessLookupError, IndexError):
                return None
        children = [p for p in os.listdir("/proc") if p.isdigit() and parent_of(p) == str(os.getpid())]
        done({"accounts": record["accounts"], "children": children})
    """, timeout=120, env={"STOWAWAY_CACHE_DIR": os.environ["STOWAWAY_CACHE_DIR"],
                           "STOWAWAY_DATA_DIR": os.environ["STOWAWAY_DATA_DIR"]})
    value = got["value"]
    assert value["children"] == []  # the guesser was killed (and reaped), in the middle of its first guesses
    for acc in value["accounts"]:
        assert acc["status"] == "unverified" and acc["tried"] == 0
        assert acc["reason"].startswith(f"checked 0 of {acc['candidates']} candidates before the time budget of 2 s")


def test_a_scan_of_an_image_with_hostile_hashes_ends(tmp_path):
    """Issue 14: `$2b$31$…` and `$6$rounds=999999999$…` in /etc/shadow hung the scan (one guess takes hours)."""
    got = run_bounded(f"""
        from imagebuilder import File, ImageBuilder
        from stowaway.ingest.db import connect
        from stowaway.ingest.pipeline import Scanner
        from stowaway.ingest.report import build
        img = ImageBuilder()
        img.layer({{"etc/os-release": "ID=debian\\nVERSION_ID=12\\n",
                   "etc/passwd": "root:x:0:0:root:/root:/bin/sh\\nbig:x:1000:1000::/home/big:/bin/sh\\n",
                   "etc/shadow": File("root:*:19000:0:99999:7:::\\n"
                                      "big:$2b$31$abcdefghijklmnopqrstuu1234567890123456789012345678901:19000::::::\\n"
                                      "slow:$6$rounds=999999999$saltsalt$abcdefghijklmnopqrstuvwxyz0123456789:19000::::::\\n",
                                      mode=0o640)}})
        img.write_oci_layout({str(tmp_path / 'oci')!r}, ref="hostile/shadow:1")
        db = connect({str(tmp_path / 'scan.db')!r})
        outcomes = Scanner(db, {{}}, analyzer_names=["os-release", "weak-passwords"], progress=False).run(
            ["oci:{tmp_path / 'oci'}"])
        rows = [(u["target"], u["result"], u["evidence"]) for u in build(db, "hostile/shadow:1")["unsafe_settings"]
                if u["category"] == "weak_password"]
        done({{"status": outcomes[0].status, "warnings": outcomes[0].warnings, "rows": rows}})
    """, timeout=120, env={"STOWAWAY_CACHE_DIR": str(tmp_path / "cache"), "STOWAWAY_DATA_DIR": str(tmp_path / "data")})
    value = got["value"]
    assert value["status"] == "done"
    rows = {t: (r, e) for t, r, e in value["rows"]}
    assert set(rows) == {"big", "slow"} and all(r == "not_applicable" for r, _ in rows.values())
    assert "hash cost too high to check: bcrypt cost 31" in rows["big"][1]
    assert "hash cost too high to check: sha512crypt with 999,999,999 rounds" in rows["slow"][1]
    assert any("2 account(s) not checked" in w for w in value["warnings"])
    assert json.dumps(value).count("$2b$31$") == 0  # no hash in results or warnings


def test_an_idle_guesser_ends_and_the_next_job_starts_another():
    """A guesser left waiting forever would be a process per scan for the life of a long process."""
    import time

    lib = libcrypt()
    analyzer = WeakPasswords({})
    analyzer.service.idle = 0.3
    text = shadow([("ops", lib.crypt(b"ops123", lib.gensalt("$1$")))])
    data = text.encode()
    first = analyzer.analyze(LayerFile(FileInfo("/etc/shadow", "file", len(data), 0o640), data, 0))[0]
    analyzer.settle([[first]])
    proc = analyzer.service._proc
    assert first["accounts"][0]["status"] == "weak" and proc is not None
    for _ in range(200):  # bounded wait, no timed assertion
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    assert proc.poll() == 0
    forget_memory()
    analyzer.cache = type(analyzer.cache)(persistent=False)
    second = analyzer.analyze(LayerFile(FileInfo("/etc/shadow", "file", len(data), 0o640), data, 1))[0]
    analyzer.settle([[second]])
    assert second["accounts"][0]["status"] == "weak" and analyzer.service._proc is not proc
