"""Weak passwords of Linux accounts: /etc/shadow (and legacy hashes in /etc/passwd) verified against a
built-in weak-password list, guesses made from each user name, and the policy's own list.

Hashes are credentials, so they never leave `analyze`: verification happens there, per layer, and
the cached records keep only account names, schemes and verdicts (the per-layer cache is keyed by a
fingerprint of the candidate lists and the budget). A matched password is never stored, nor where
in the list it sat. yescrypt is slow on purpose (~40 ms a try), so every copy of /etc/shadow gets
a time budget (policy `[passwords] budget_seconds`); accounts not finished within it are reported
as unverified, with the number of candidates tried recorded.

Policy:
    [passwords]
    extra = ["Sh0p2024!", ...]     # candidates tried after the user-name guesses
    extra_file = "/path/list.txt"  # one per line
    budget_seconds = 30
    workers = 2                    # threads; libcrypt runs without the GIL
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from typing import Iterable

from stowaway.ingest.model import ScanError

from ..base import Analyzer, Fact, register
from .crypt import MAX_PASSPHRASE, CryptUnavailable, libcrypt, scheme_of
from .env import Env, visible_records
from .model import Check, Result, baseline_of, catalog, evaluator, run_checks

FILES = ("/etc/shadow", "/etc/passwd")
MAX_SIZE = 4 << 20
# 30 s covers a full pass of the default candidates (~215) over three yescrypt accounts at the
# default cost (~40 ms a try) on one core; container images rarely have more human accounts
DEFAULT_BUDGET = 30.0
DERIVATION_VERSION = 1
VERDICTS = ("weak", "empty", "not_found", "unverified", "unsupported", "locked")


def builtin_list() -> list[str]:
    text = resources.files(__package__).joinpath("weak_passwords.txt").read_text(encoding="utf-8")
    return read_list(text)


def read_list(text: str) -> list[str]:
    return [line.rstrip("\r") for line in text.split("\n") if line.strip() and not line.startswith("#")]


def derived(name: str) -> list[str]:
    """Guesses made from a user name, the first thing anyone tries."""
    cap = name[:1].upper() + name[1:]
    return [name, name + "123", name + "1234", name + "12345", name + "123456", name + "1", name + "12", name + "!",
            name + "@123", name + "#123", name + name, name[::-1], cap, cap + "123", cap + "@123", cap + "!",
            name + "pass", name + "password", name + "2024", name + "2025"]


def dedupe(items: Iterable[str]) -> list[str]:
    seen, out = set(), []
    for item in items:
        if item not in seen:
            seen.add(item)
            out.append(item)
    return out


# Final verdicts of this process, by a digest of (candidate lists, account, hash): the same account
# in another layer, image or scan of one process (a batch, a worker, a test run) is not verified
# again. Memory only, bounded, and it holds no hash.
_VERDICTS: OrderedDict[str, tuple[str, int]] = OrderedDict()
_VERDICTS_MAX = 4096
_VERDICTS_LOCK = threading.Lock()


class Verifier:
    """Verifies accounts' hashes against candidates within a deadline, round-robin across accounts."""

    def __init__(self, words: list[str], budget: float, workers: int):
        self.words = words
        self.budget = budget
        self.workers = max(1, workers)
        self.scope = hashlib.sha256("\n".join(words).encode()).hexdigest()
        self.lock = threading.Lock()

    def _key(self, name: str, stored: str) -> str:
        return hashlib.sha256(f"{self.scope}\0{name}\0{stored}".encode()).hexdigest()

    def candidates(self, name: str) -> list[str]:
        # what libcrypt cannot take as a passphrase would read as an unsupported hash
        return [w for w in dedupe(derived(name) + self.words)
                if "\0" not in w and len(w.encode("utf-8")) < MAX_PASSPHRASE]

    def run(self, accounts: list[dict], hashes: dict[str, str]) -> dict:
        """Fills each account's status and tried count; returns the statistics of this run."""
        t0 = time.monotonic()
        deadline = t0 + self.budget
        todo = []
        for acc in accounts:
            stored = hashes.get(acc["name"])
            if stored is None:
                continue
            key = self._key(acc["name"], stored)
            with _VERDICTS_LOCK:
                known = _VERDICTS.get(key)
            if known:
                acc["status"], acc["tried"] = known
                continue
            todo.append((acc, stored, key))
        try:
            lib = libcrypt()
        except CryptUnavailable as exc:
            for acc, _, _ in todo:
                acc["status"], acc["tried"], acc["reason"] = "unverified", 0, str(exc)
            return {"tried": 0, "seconds": 0.0, "exhausted": False, "error": str(exc)}
        if todo:
            tasks = self._interleave(todo)
            with ThreadPoolExecutor(self.workers) as pool:
                list(pool.map(lambda _: self._work(lib, tasks, deadline), range(self.workers)))
        for acc, _, _ in todo:
            if acc["status"] == "pending":
                acc["status"] = "not_found" if acc["tried"] == acc["candidates"] else "unverified"
            del acc["candidates"]
        exhausted = any(acc["status"] == "unverified" for acc, _, _ in todo)
        tried = sum(acc["tried"] for acc, _, _ in todo)
        with _VERDICTS_LOCK:
            for acc, _, key in todo:
                if acc["status"] in ("weak", "not_found", "unsupported"):
                    _VERDICTS[key] = (acc["status"], acc["tried"])
            while len(_VERDICTS) > _VERDICTS_MAX:
                _VERDICTS.popitem(last=False)
        return {"tried": tried, "seconds": round(time.monotonic() - t0, 3), "exhausted": exhausted}

    def _interleave(self, todo):
        """One shared queue, round-robin across accounts, so the likeliest candidates reach every account
        first and all workers help with the slowest account."""
        lists = []
        for acc, stored, _ in todo:
            words = self.candidates(acc["name"])
            acc["tried"], acc["candidates"] = 0, len(words)
            lists.append((acc, stored, words))
        longest = max((len(w) for _, _, w in lists), default=0)
        order = ((acc, stored, words[i]) for i in range(longest) for acc, stored, words in lists if i < len(words))
        lock = threading.Lock()

        def next_task():
            with lock:
                return next(order, None)
        return next_task

    def _work(self, lib, next_task, deadline) -> None:
        while time.monotonic() < deadline:
            task = next_task()
            if task is None:
                return
            acc, stored, word = task
            if acc["status"] != "pending":
                continue
            got = lib.crypt(word.encode("utf-8"), stored)
            with self.lock:
                if got is None:
                    # libcrypt refuses the setting itself: every candidate would be refused alike
                    acc["status"] = "unsupported"
                    continue
                acc["tried"] += 1
                if hmac.compare_digest(got.encode("utf-8", "surrogateescape"), stored.encode("utf-8", "surrogateescape")):
                    acc["status"] = "weak"


def parse_accounts(path: str, text: str) -> tuple[list[dict], dict[str, str]]:
    """Accounts with a password field that matters, and their hashes (kept out of the records)."""
    accounts, hashes = [], {}
    for n, line in enumerate(text.splitlines(), 1):
        parts = line.split(":")
        if len(parts) < 2 or not parts[0] or line.startswith(("#", "+", "-")):
            continue
        name, field = parts[0], parts[1].strip()
        if path == "/etc/passwd" and field in ("x", "##" + name):
            continue  # the password is in /etc/shadow
        scheme = scheme_of(field)
        acc = {"name": name, "line": n, "scheme": scheme}
        if scheme == "empty":
            acc["status"] = "empty"
        elif scheme == "locked":
            acc["status"] = "locked"
        else:
            acc["status"] = "pending"
            hashes[name] = field
        accounts.append(acc)
    return accounts, hashes


@register
class WeakPasswords(Analyzer):
    name = "weak-passwords"
    version = 1
    risk = "unsafe_settings"
    consumes = ("os",)
    produces = ("findings",)

    def __init__(self, policy=None):
        super().__init__(policy)
        conf = self.policy.get("passwords") or {}
        extra = [str(w) for w in conf.get("extra") or []]
        if conf.get("extra_file"):
            try:
                with open(conf["extra_file"], encoding="utf-8", errors="replace") as fh:
                    extra += read_list(fh.read())
            except OSError as exc:
                raise ScanError(f"[passwords] extra_file {conf['extra_file']}: cannot read ({exc.strerror})") from None
        try:
            budget = float(conf.get("budget_seconds", DEFAULT_BUDGET))
            workers = int(conf.get("workers", min(2, os.cpu_count() or 1)))
        except (TypeError, ValueError):
            raise ScanError("[passwords] budget_seconds and workers must be numbers") from None
        if budget <= 0 or workers <= 0:
            raise ScanError("[passwords] budget_seconds and workers must be positive")
        self.words = dedupe(extra + builtin_list())
        self.verifier = Verifier(self.words, budget, workers)
        self._fingerprint = hashlib.sha256(json.dumps(
            {"words": self.words, "budget": budget, "derived": DERIVATION_VERSION}).encode()).hexdigest()[:16]

    def fingerprint(self):
        return self._fingerprint

    def required(self, path, info):
        return path in FILES and info.size <= MAX_SIZE

    def analyze(self, file):
        accounts, hashes = parse_accounts(file.path, file.text())
        stats = self.verifier.run(accounts, hashes)
        weak = sum(a["status"] == "weak" for a in accounts)
        for a in accounts:
            if a["status"] == "weak":
                a.pop("tried", None)  # how far down the list it matched would say which password it was
        tried = sum(a.get("tried", 0) for a in accounts)
        return [{"path": file.path, "accounts": accounts, "tried": tried, "weak": weak,
                 "seconds": stats["seconds"], "exhausted": stats["exhausted"], "error": stats.get("error", ""),
                 "budget_seconds": self.verifier.budget, "candidates": len(self.words)}]

    def collect(self, ctx, layers):
        visible = visible_records(ctx, layers)
        env = Env(ctx, {}, baseline_of(ctx.os))
        env.password_files = visible
        if visible:
            yield Fact("weak_passwords", {
                path: {k: r[k] for k in ("tried", "weak", "seconds", "exhausted", "budget_seconds", "candidates", "error")}
                | {"layer_index": layer, "accounts": len(r["accounts"])} for path, (r, layer) in visible.items()})
        wanted = [c for c in catalog().values() if c.id in PASSWORD_CHECKS]
        yield from run_checks(env, wanted, env.baseline)


def effective_accounts(env: Env) -> list[tuple[dict, str, int]]:
    """(account, file, layer): /etc/passwd's own password field overrides /etc/shadow, as pam_unix reads them."""
    files = env.password_files
    out: dict[str, tuple[dict, str, int]] = {}
    for path in ("/etc/shadow", "/etc/passwd"):
        if path in files:
            record, layer = files[path]
            for acc in record["accounts"]:
                out[acc["name"]] = (acc, path, layer)
    return list(out.values())


@evaluator("weak_password.account")
def weak_account(env: Env, check: Check) -> Iterable[Result]:
    accounts = effective_accounts(env)
    if not accounts:
        yield Result(check.id, "not_applicable", "no /etc/shadow or /etc/passwd password hashes in the image",
                     target="(no accounts)")
        return
    for acc, path, layer in accounts:
        status, name = acc["status"], acc["name"]
        line = acc.get("line")
        common = dict(path=path, line=line, layer_index=layer, target=name)
        if status == "weak":
            yield Result(check.id, "fail", f"{path}:{line}: the {acc['scheme']} hash of {name} matches a weak password",
                         **common)
        elif status == "empty":
            yield Result(check.id, "fail", f"{path}:{line}: {name} has an empty password field: no password at all",
                         **common)
        elif status == "not_found":
            yield Result(check.id, "pass", f"{path}:{line}: the {acc['scheme']} hash of {name} matches none of"
                         f" {acc.get('tried', 0)} candidates tried", **common)
        elif status == "unverified":
            yield Result(check.id, "not_applicable", f"{path}:{line}: {name} ({acc['scheme']}) not verified: "
                         + (acc.get("reason") or f"time budget spent after {acc.get('tried', 0)} candidates"), **common)
        elif status == "unsupported":
            yield Result(check.id, "not_applicable", f"{path}:{line}: {name}: hash scheme {acc['scheme']} is not"
                         " supported by this system's libcrypt", **common)
        # locked accounts ('!', '*') cannot log in with a password: nothing to say about them


@evaluator("baseline.empty-passwords")
def empty_passwords(env: Env, check: Check) -> Iterable[Result]:
    accounts = effective_accounts(env)
    if not accounts:
        yield Result(check.id, "not_applicable", "no /etc/shadow or /etc/passwd in the image", target="/etc/shadow")
        return
    empty = [(a, p, l) for a, p, l in accounts if a["status"] == "empty"]
    if empty:
        a, path, layer = empty[0]
        yield Result(check.id, "fail", "; ".join(f"{p}:{x['line']}: {x['name']} has an empty password field"
                                                 for x, p, _ in empty), path=path, line=a["line"], layer_index=layer,
                     target=path)
    else:
        _, path, layer = accounts[0]
        yield Result(check.id, "pass", "no account has an empty password field", path=path, layer_index=layer,
                     target=path)


PASSWORD_CHECKS = ("weak_password.account", "baseline.empty-passwords")
