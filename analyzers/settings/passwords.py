"""Weak passwords of Linux accounts: /etc/shadow (and legacy hashes in /etc/passwd) verified against the
policy's own list, guesses made from each user name and a built-in list of weak passwords, in that
order (most likely first).

A strong hash costs tens of milliseconds a guess by design, so guessing must neither dominate nor
stall a scan:

* It starts as soon as `analyze` sees a password file, in a child process (`_guesser.py`), and runs
  while the rest of the layers are read; the image's `collect` (or the applier's `settle` call,
  before records leave the analysis process) waits for it only then.
* Before any guess, each hash's cost is read from its own settings (bcrypt cost, sha-crypt rounds,
  yescrypt/scrypt N, r, p, t, bsdicrypt and sha1crypt/sunmd5 rounds): above the policy's cap
  (`[passwords] max_cost.SCHEME`) the account is reported "hash cost too high to check" and nothing
  is tried.
* The guessing of an image has a time budget (`[passwords] budget_seconds`), counted from the first
  guess; when it is spent the child is killed, even in the middle of a guess, and every account says
  how far it was checked ("checked 40 of 214 candidates before the time budget ... ran out").
* Verdicts are remembered by a keyed fingerprint of the hash and the candidate list
  (verdict_cache.py): the same hash in fifty images costs once, and a partly checked hash goes on
  where the last scan stopped.

Hashes are credentials: they go to the child through a pipe and nowhere else. The per-layer records
keep account names, schemes, costs and verdicts only; a matched password is never stored, nor where
in the list it sat.

Policy:
    [passwords]
    extra = ["Sh0p2024!", ...]     # candidates tried first
    extra_file = "/path/list.txt"  # one per line
    budget_seconds = 10            # per image
    workers = 2                    # guessing threads in the child; libcrypt runs without the GIL
    max_accounts = 1000            # accounts with a hash checked per file
    verdict_cache = true           # remember verdicts across scans (a file in the user's cache dir)
    [passwords.max_cost]           # per scheme, see crypt.DEFAULT_MAX_COST
    bcrypt = 13
"""
from __future__ import annotations

import atexit
import hashlib
import itertools
import json
import os
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from importlib import resources
from typing import IO, Iterable

from stowaway.ingest.model import ScanError

from ..base import Analyzer, Fact, register
from .crypt import DEFAULT_MAX_COST, MAX_PASSPHRASE, CryptUnavailable, cost_of, libcrypt, scheme_of, too_costly
from .env import Env, visible_records
from .model import Check, Result, baseline_of, catalog, evaluator, run_checks
from .verdict_cache import VerdictCache

FILES = ("/etc/shadow", "/etc/passwd")
MAX_SIZE = 4 << 20
# Per image, from the first guess. 10 s covers the default candidates (~215) over two yescrypt
# accounts at the default cost (~40 ms a guess) with two threads on an idle machine; more is reported
# as partly checked, and the verdict cache lets the next scan go on from there.
DEFAULT_BUDGET = 10.0
DEFAULT_MAX_ACCOUNTS = 1000
DERIVATION_VERSION = 2  # 2: the policy's list first, then the user-name guesses, then the built-in list
VERDICTS = ("weak", "empty", "not_found", "unverified", "unsupported", "locked", "too_costly")
GUESSER = "stowaway.analyzers.settings._guesser"


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


def candidates(name: str, extra: list[str], builtin: list[str]) -> list[str]:
    """What is tried against one account, most likely first: the policy's list (the owner knows their
    own habits), the user-name guesses, then the built-in list, which is ordered by frequency.
    What libcrypt cannot take as a passphrase would read as an unsupported hash: it is left out."""
    return [w for w in dedupe(extra + derived(name) + builtin)
            if "\0" not in w and len(w.encode("utf-8")) < MAX_PASSPHRASE]


# --- the guesser process ------------------------------------------------------------------------
_PROCS: set[subprocess.Popen] = set()


@atexit.register
def _kill_all() -> None:
    for proc in list(_PROCS):
        _kill(proc)


def _kill(proc: subprocess.Popen) -> None:
    try:
        proc.kill()
        proc.wait(timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        pass
    _PROCS.discard(proc)


@dataclass(eq=False)
class Task:
    account: dict
    stored: str
    words: list[str]
    start: int  # candidates before this one were checked by an earlier scan (verdict cache)
    key: str  # verdict-cache key
    cost: str  # the hash's cost, said when it could not be checked through


@dataclass(eq=False)
class Job:
    """One password file's accounts to guess, handed to the guesser process."""

    id: int
    tasks: list[Task]
    state: str = "queued"  # queued | running | done | cut
    reason: str = ""  # why a cut job stopped
    progress: dict[int, int] = field(default_factory=dict)  # task index -> candidates checked from the first
    weak: set[int] = field(default_factory=set)
    unsupported: set[int] = field(default_factory=set)
    started: float = 0.0
    ended: float = 0.0
    acknowledged: bool = False  # the guesser said it started this job
    event: threading.Event = field(default_factory=threading.Event)

    @property
    def seconds(self) -> float:
        return round(max(0.0, self.ended - self.started), 3) if self.started else 0.0


class GuessService:
    """Runs jobs one at a time in a guesser child process, started when first needed.

    The time budget covers a busy spell: it starts with the first job dispatched while idle and ends
    when nothing is queued or running (an image's layer walk followed by its `settle`). When it is spent
    the child is killed, the running job keeps the progress it reported, and queued jobs are cut
    before their first guess."""

    def __init__(self, threads: int, budget: float, idle: float = 5.0):
        self.threads = threads
        self.budget = budget
        self.idle = idle  # seconds an idle guesser waits for a job before it exits
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._queue: deque[Job] = deque()
        self._running: Job | None = None
        self._proc: subprocess.Popen | None = None
        self._deadline: float | None = None

    def __del__(self):
        proc = getattr(self, "_proc", None)
        if proc is not None:
            _kill(proc)

    @property
    def budget_reason(self) -> str:
        return f"the time budget of {self.budget:g} s ([passwords] budget_seconds) ran out"

    def submit(self, tasks: list[Task]) -> Job:
        job = Job(next(self._ids), tasks)
        with self._lock:
            self._queue.append(job)
            self._next()
        return job

    def wait(self, job: Job) -> float:
        """Waits for a job until the budget ends; returns the seconds waited."""
        t0 = time.monotonic()
        while not job.event.is_set():
            with self._lock:
                deadline = self._deadline
            timeout = 0.05 if deadline is None else max(0.0, deadline - time.monotonic())
            if job.event.wait(timeout):
                break
            if deadline is not None and time.monotonic() >= deadline:
                self._expire(deadline)
        return time.monotonic() - t0

    def close(self) -> None:
        with self._lock:
            proc, self._proc = self._proc, None
            for job in ([self._running] if self._running else []) + list(self._queue):
                self._finish(job, "cut", "the scan ended before this file was checked")
            self._running, self._deadline = None, None
            self._queue.clear()
        if proc is not None:
            _kill(proc)

    # --- under self._lock -----------------------------------------------------------------------
    def _finish(self, job: Job, state: str, reason: str = "") -> None:
        job.state, job.reason = state, reason
        job.ended = time.monotonic()
        job.event.set()

    def _next(self) -> None:
        while self._running is None and self._queue:
            job = self._queue.popleft()
            now = time.monotonic()
            if self._deadline is None:
                self._deadline = now + self.budget
            left = self._deadline - now
            if left <= 0:
                self._finish(job, "cut", self.budget_reason)
                continue
            try:
                proc = self._process()
                payload = {"id": job.id, "threads": self.threads, "seconds": left + 1.0,
                           "accounts": [{"i": i, "hash": t.stored, "words": t.words, "start": t.start}
                                        for i, t in enumerate(job.tasks)]}
                assert proc.stdin is not None
                proc.stdin.write(json.dumps(payload) + "\n")
                proc.stdin.flush()
            except OSError as exc:
                if self._proc is not None:
                    _kill(self._proc)
                    self._proc = None
                self._finish(job, "cut", f"the guesser process could not be started ({exc})")
                continue
            job.state, job.started = "running", now
            self._running = job
        if self._running is None and not self._queue:
            self._deadline = None

    def _process(self) -> subprocess.Popen:
        if self._proc is None or self._proc.poll() is not None:
            proc = subprocess.Popen([sys.executable, "-m", GUESSER, str(self.idle)], stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE,
                                    stderr=subprocess.DEVNULL, text=True, bufsize=1, close_fds=True)
            _PROCS.add(proc)
            self._proc = proc
            assert proc.stdout is not None
            threading.Thread(target=self._read, args=(proc, proc.stdout), daemon=True,
                             name="weak-passwords reader").start()
        return self._proc

    def _expire(self, deadline: float) -> None:
        with self._lock:
            if self._deadline != deadline:
                return  # another waiter expired it, or a new spell began
            proc, self._proc = self._proc, None
            if self._running is not None:
                self._finish(self._running, "cut", self.budget_reason)
                self._running = None
            while self._queue:
                self._finish(self._queue.popleft(), "cut", self.budget_reason)
            self._deadline = None
        if proc is not None:
            _kill(proc)

    # --- the reader thread ------------------------------------------------------------------------
    def _read(self, proc: subprocess.Popen, stream: IO[str]) -> None:
        for line in stream:
            parts = line.split()
            if len(parts) < 2:
                continue
            with self._lock:
                job = self._running
                if proc is not self._proc or job is None or parts[1] != str(job.id):
                    continue
                kind = parts[0]
                try:
                    if kind == "s":
                        job.acknowledged = True
                    elif kind == "p" and len(parts) == 4:
                        job.progress[int(parts[2])] = int(parts[3])
                    elif kind == "w" and len(parts) == 3:
                        job.weak.add(int(parts[2]))
                    elif kind == "u" and len(parts) == 3:
                        job.unsupported.add(int(parts[2]))
                    elif kind == "d":
                        self._finish(job, "done")
                        self._running = None
                        self._next()
                except ValueError:
                    continue
        code = proc.wait()
        _PROCS.discard(proc)
        with self._lock:
            if proc is self._proc:
                self._proc = None
                job = self._running
                self._running = None
                if job is not None and code == 0 and not job.acknowledged:
                    self._queue.appendleft(job)  # it ended idle as the job was sent: a new guesser takes it
                elif job is not None:
                    self._finish(job, "cut", f"the guesser process ended unexpectedly (exit status {code})")
                self._next()


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


def _max_cost(conf: dict) -> dict[str, float]:
    given = conf.get("max_cost") or {}
    if not isinstance(given, dict):
        raise ScanError("[passwords] max_cost must be a table of scheme = cost (e.g. bcrypt = 13)")
    unknown = sorted(set(given) - set(DEFAULT_MAX_COST))
    if unknown:
        raise ScanError(f"[passwords] max_cost: unknown scheme(s) {', '.join(unknown)};"
                        f" known: {', '.join(sorted(DEFAULT_MAX_COST))}")
    caps = dict(DEFAULT_MAX_COST)
    for scheme, value in given.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise ScanError(f"[passwords] max_cost.{scheme} must be a positive number, got {value!r}")
        caps[scheme] = float(value)
    return caps


def _positive(conf: dict, key: str, default, kind):
    value = conf.get(key, default)
    try:
        if isinstance(value, bool):
            raise ValueError
        value = kind(value)
    except (TypeError, ValueError):
        raise ScanError(f"[passwords] {key} must be a number, got {value!r}") from None
    if value <= 0:
        raise ScanError(f"[passwords] {key} must be positive, got {value!r}")
    return value


@register
class WeakPasswords(Analyzer):
    name = "weak-passwords"
    version = 2
    risk = "unsafe_settings"
    # collects after every other index analyzer (packages and findings are not read): its collect
    # waits for the guessing, which so overlaps the layer walk and all their collects
    consumes = ("os", "packages", "findings")
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
        self.budget = _positive(conf, "budget_seconds", DEFAULT_BUDGET, float)
        self.workers = _positive(conf, "workers", min(2, os.cpu_count() or 1), int)
        self.max_accounts = _positive(conf, "max_accounts", DEFAULT_MAX_ACCOUNTS, int)
        self.max_cost = _max_cost(conf)
        self.extra = dedupe(extra)
        self.builtin = builtin_list()
        self.words = dedupe(self.extra + self.builtin)
        self.service = GuessService(self.workers, self.budget)
        self.cache = VerdictCache(conf.get("verdict_cache", True) is not False)
        self._jobs: dict[int, Job] = {}
        self._fingerprint = hashlib.sha256(json.dumps(
            {"extra": self.extra, "builtin": self.builtin, "budget": self.budget, "derived": DERIVATION_VERSION,
             "max_cost": self.max_cost, "max_accounts": self.max_accounts}, sort_keys=True).encode()).hexdigest()[:16]

    def fingerprint(self):
        return self._fingerprint

    def required(self, path, info):
        return path in FILES and info.size <= MAX_SIZE

    def analyze(self, file):
        accounts, hashes = parse_accounts(file.path, file.text())
        record = {"path": file.path, "accounts": accounts, "tried": 0, "weak": 0, "seconds": 0.0, "waited": 0.0,
                  "exhausted": False, "error": "", "budget_seconds": self.budget, "candidates": len(self.words),
                  "cached": 0, "too_costly": 0}
        tasks = self._tasks(record, accounts, hashes)
        if tasks:
            job = self.service.submit(tasks)
            self._jobs[job.id] = job
            record["_job"] = job.id
        else:
            self._summarize(record)
        return [record]

    def _tasks(self, record: dict, accounts: list[dict], hashes: dict[str, str]) -> list[Task]:
        """Decides every account that needs no guess (cost too high, verdict known, over the account
        cap) and returns the guesses to make for the others."""
        pending = [a for a in accounts if a["status"] == "pending" and a["name"] in hashes]
        try:
            libcrypt()
        except CryptUnavailable as exc:
            for acc in pending:
                acc.update(status="unverified", tried=0, reason=str(exc))
            record["error"] = str(exc)
            return []
        todo: list[tuple[dict, str, list[str], str, str]] = []
        for n, acc in enumerate(pending):
            stored = hashes[acc["name"]]
            cost = cost_of(stored)
            acc["cost"] = cost.text if cost else acc["scheme"]
            refused = too_costly(cost, self.max_cost)
            if refused:
                acc.update(status="too_costly", reason=refused)
                record["too_costly"] += 1
                continue
            words = candidates(acc["name"], self.extra, self.builtin)
            if n >= self.max_accounts:
                acc.update(status="unverified", tried=0, candidates=len(words),
                           reason=f"more than {self.max_accounts} accounts with a password hash in this file"
                                  " ([passwords] max_accounts)")
                continue
            digest = hashlib.sha256("\n".join(words).encode("utf-8", "replace")).hexdigest()
            todo.append((acc, stored, words, self.cache.key_of(digest, stored), acc["cost"]))
        known = self.cache.get([t[3] for t in todo])
        tasks = []
        for acc, stored, words, key, cost_text in todo:
            status, checked = known.get(key, ("", 0))
            if status in ("weak", "not_found", "unsupported"):
                acc["status"] = status
                if status == "not_found":
                    acc.update(tried=checked, candidates=len(words))
                record["cached"] += 1
                continue
            start = min(checked, len(words)) if status == "partial" else 0
            tasks.append(Task(acc, stored, words, start, key, cost_text))
        return tasks

    def settle(self, layers: list[list[dict]]) -> None:
        """Waits for the guessing of these records (within the budget) and writes its verdicts into them.
        Called by `collect`, and by the applier before records leave the process that read the layers."""
        for records in layers:
            for record in records:
                job_id = record.pop("_job", None) if isinstance(record, dict) else None
                if job_id is None:
                    continue
                job = self._jobs.pop(job_id, None)
                if job is None:  # made by another process or analyzer: its guesses are not here to wait for
                    for acc in record["accounts"]:
                        if acc["status"] == "pending":
                            acc.update(status="unverified", tried=0, reason="the guessing ran in another process")
                    self._summarize(record)
                    continue
                record["waited"] = round(self.service.wait(job), 3)
                self._complete(record, job)

    def _complete(self, record: dict, job: Job) -> None:
        verdicts: dict[str, tuple[str, int]] = {}
        for i, task in enumerate(job.tasks):
            acc, total = task.account, len(task.words)
            if i in job.weak:
                acc["status"] = "weak"
                verdicts[task.key] = ("weak", 0)
            elif i in job.unsupported:
                acc["status"] = "unsupported"
                verdicts[task.key] = ("unsupported", 0)
            else:
                checked = max(job.progress.get(i, task.start), task.start)
                acc.update(tried=checked, candidates=total)
                if checked >= total:
                    acc["status"] = "not_found"
                    verdicts[task.key] = ("not_found", checked)
                else:
                    acc["status"] = "unverified"
                    acc["reason"] = (f"checked {checked} of {total} candidates before "
                                     f"{job.reason or 'the guessing stopped'}; {task.cost}")
                    if checked > task.start:
                        verdicts[task.key] = ("partial", checked)
            task.stored = ""
        record["seconds"] = job.seconds
        self.cache.put(verdicts)
        if self.cache.warning:
            record["error"] = record["error"] or self.cache.warning
        self._summarize(record)

    @staticmethod
    def _summarize(record: dict) -> None:
        accounts = record["accounts"]
        for a in accounts:
            if a["status"] == "weak":
                # how far down the list it matched would say which password it was
                a.pop("tried", None)
        record["weak"] = sum(a["status"] == "weak" for a in accounts)
        record["tried"] = sum(a.get("tried", 0) for a in accounts)
        record["exhausted"] = any(a["status"] == "unverified" for a in accounts)

    def collect(self, ctx, layers):
        self.settle(layers)
        visible = visible_records(ctx, layers)
        env = Env(ctx, {}, baseline_of(ctx.os))
        env.password_files = visible
        if visible:
            yield Fact("weak_passwords", {
                path: {k: r.get(k, 0) for k in ("tried", "weak", "seconds", "waited", "exhausted", "budget_seconds",
                                                 "candidates", "error", "cached", "too_costly")}
                | {"layer_index": layer, "accounts": len(r["accounts"])} for path, (r, layer) in visible.items()})
        for path, (r, _) in visible.items():
            unverified = [a for a in r["accounts"] if a["status"] == "unverified"]
            costly = [a for a in r["accounts"] if a["status"] == "too_costly"]
            if unverified:
                ctx.warn(f"weak-passwords: {path}: {len(unverified)} account(s) not fully checked: "
                         + "; ".join(f"{a['name']}: {a.get('reason', '')}" for a in unverified[:5])
                         + ("; ..." if len(unverified) > 5 else ""))
            if costly:
                ctx.warn(f"weak-passwords: {path}: {len(costly)} account(s) not checked: "
                         + "; ".join(f"{a['name']}: {a['reason']}" for a in costly[:5])
                         + ("; ..." if len(costly) > 5 else ""))
            if r.get("error"):
                ctx.warn(f"weak-passwords: {path}: {r['error']}")
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
                         + (acc.get("reason") or f"checked {acc.get('tried', 0)} candidates"), **common)
        elif status == "too_costly":
            yield Result(check.id, "not_applicable", f"{path}:{line}: {name} ({acc['scheme']}) not checked: "
                         + acc.get("reason", "hash cost too high to check"), **common)
        elif status == "pending":  # its guessing was never waited for: say so, never 'pass'
            yield Result(check.id, "not_applicable", f"{path}:{line}: {name} ({acc['scheme']}) not verified:"
                         " the guessing did not finish in the analysis", **common)
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
