"""The weak-password guesser: a child process that `passwords.GuessService` starts and may kill.

One guess against a slow hash can take seconds (or, for a hostile one, hours), and a thread cannot be
stopped inside libcrypt; a process can. The parent writes one job a line on standard input:

    {"id": 7, "threads": 2, "seconds": 30.0,
     "accounts": [{"i": 0, "hash": "$y$...", "words": ["alice", "alice123", ...], "start": 0}]}

and reads, on standard output, lines that never hold a password or a hash:

    s 7         job 7 started
    p 7 0 40    account 0: its first 40 candidates are checked, none matched
    w 7 0       account 0 matched a candidate (which one is not said)
    u 7 0       libcrypt refuses account 0's setting: every candidate would be refused alike
    d 7         job 7 done: every account finished or the job's own time ran out

Accounts are worked round-robin (the likeliest candidates reach every account first) by `threads`
threads; ctypes releases the GIL inside libcrypt, so they run in parallel. The child also stops by
itself, between guesses, when its job's seconds are spent or its parent has gone.
"""
from __future__ import annotations

import hmac
import json
import os
import select
import sys
import threading
import time

from stowaway.analyzers.settings.crypt import CryptUnavailable, LibCrypt, libcrypt

IDLE_SECONDS = 5.0  # a guesser with no job for this long exits
PROGRESS_EVERY = 0.02  # seconds between progress lines of one account (final states are sent at once)


class _Account:
    def __init__(self, spec: dict):
        self.i: int = spec["i"]
        self.hash: str = spec["hash"]
        self.hash_bytes = self.hash.encode("utf-8", "surrogateescape")
        self.words: list[str] = spec["words"]
        self.prefix: int = spec.get("start", 0)  # candidates [0, prefix) are checked
        self.done: set[int] = set()
        self.finished = self.prefix >= len(self.words)
        self.reported = 0.0


def run_job(lib: LibCrypt, job: dict, write, parent: int) -> None:
    accounts = [_Account(a) for a in job["accounts"]]
    deadline = time.monotonic() + float(job.get("seconds", 30.0))
    lock = threading.Lock()
    longest = max((len(a.words) for a in accounts), default=0)
    order = ((a, k) for k in range(longest) for a in accounts if a.prefix <= k < len(a.words))

    def work() -> None:
        while time.monotonic() < deadline and os.getppid() == parent:
            with lock:
                task = next(order, None)
                while task is not None and task[0].finished:
                    task = next(order, None)
            if task is None:
                return
            acc, k = task
            got = lib.crypt(acc.words[k].encode("utf-8"), acc.hash)
            with lock:
                if acc.finished:
                    continue
                if got is None:
                    acc.finished = True
                    write(f"u {job['id']} {acc.i}")
                    continue
                # bytes: compare_digest refuses str with non-ASCII characters, and a shadow file may hold any
                if hmac.compare_digest(got.encode("utf-8", "surrogateescape"), acc.hash_bytes):
                    acc.finished = True
                    write(f"w {job['id']} {acc.i}")
                    continue
                acc.done.add(k)
                while acc.prefix in acc.done:
                    acc.done.discard(acc.prefix)
                    acc.prefix += 1
                now = time.monotonic()
                if acc.prefix >= len(acc.words):
                    acc.finished = True
                    write(f"p {job['id']} {acc.i} {acc.prefix}")
                elif now - acc.reported >= PROGRESS_EVERY:
                    acc.reported = now
                    write(f"p {job['id']} {acc.i} {acc.prefix}")

    threads = [threading.Thread(target=work, daemon=True) for _ in range(max(1, int(job.get("threads", 1))))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for acc in accounts:  # what the last throttled lines did not say yet
        if not acc.finished:
            write(f"p {job['id']} {acc.i} {acc.prefix}")


def main() -> int:
    out = sys.stdout
    out_lock = threading.Lock()

    def write(line: str) -> None:
        with out_lock:
            out.write(line + "\n")
            out.flush()

    try:
        lib = libcrypt()
    except CryptUnavailable as exc:
        write(f"e {exc}")
        return 1
    parent = os.getppid()
    idle = float(sys.argv[1]) if len(sys.argv) > 1 else IDLE_SECONDS
    while True:
        # an idle guesser ends: the parent starts another for its next job (none is left waiting forever)
        ready, _, _ = select.select([sys.stdin], [], [], idle)
        if not ready:
            return 0
        line = sys.stdin.readline()
        if not line:
            return 0
        if not line.strip():
            continue
        job = json.loads(line)
        write(f"s {job['id']}")
        run_job(lib, job, write, parent)
        write(f"d {job['id']}")


if __name__ == "__main__":
    sys.exit(main())
