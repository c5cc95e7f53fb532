#!/usr/bin/env python3
"""The weak-password check on corpus/shop:1.0 (issue 16): its share of a whole scan, now and before.

    python tests/bench/bench_weak_passwords.py [--archive ../shared/corpus/shop-1.0.docker.tar.gz] [--workers 2]

Every figure is measured in this run, on this machine (shared and noisy: compare ratios, not seconds):

1. The guessing alone: the image's final /etc/shadow through the `weak-passwords` analyzer with no
   verdict cache, analyze() then settle(), with the old default budget (30 s): what the check costs
   when nothing overlaps it and nothing cuts it short. The check before issue 16 ran exactly this,
   inside the layer walk, so it is the old behaviour's cost on the scan's critical path.
2. Whole scans (all analyzers, `stowaway scan` in a child process, a fresh database each):
   a. without the weak-passwords analyzer (the anchor);
   b. with it, empty verdict cache: guessing runs beside the layer walk, the scan waits at the end;
   c. with it again, the verdict cache of (b) kept (a new database: every layer is read again): the
      same hashes cost nothing, as in the fifty-images case (a hash the budget cut short in (b) is
      taken up where it stopped).
   The check's cost in a scan is (b - a); the old behaviour's scan is estimated as a + (1), since the
   old check added its whole guessing time to the walk.

The default budget (10 s per image) may cut the strong account short on a loaded machine: the
figures say so (exhausted=True) rather than fail.
"""
from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tarfile
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_ARCHIVE = ROOT.parent / "shared" / "corpus" / "shop-1.0.docker.tar.gz"


def final_shadow(archive: Path) -> bytes:
    """The /etc/shadow of the top-most layer that has one (docker save legacy layout)."""
    with tarfile.open(archive) as outer:
        manifest = json.load(outer.extractfile("manifest.json"))[0]
        found = None
        for layer in manifest["Layers"]:
            with tarfile.open(fileobj=outer.extractfile(layer), mode="r|") as inner:
                for member in inner:
                    if member.name.lstrip("./") == "etc/shadow" and member.isfile():
                        found = inner.extractfile(member).read()
        if found is None:
            sys.exit(f"{archive}: no /etc/shadow")
        return found


def check_alone(shadow: bytes, workers: int, cache_dir: str, budget: float) -> dict:
    os.environ["STOWAWAY_CACHE_DIR"] = cache_dir
    from stowaway.analyzers.settings.passwords import WeakPasswords
    from stowaway.analyzers.settings.verdict_cache import forget_memory
    from stowaway.ingest.model import FileInfo, LayerFile

    forget_memory()
    analyzer = WeakPasswords({"passwords": {"workers": workers, "verdict_cache": False, "budget_seconds": budget}})
    t0 = time.perf_counter()
    record = analyzer.analyze(LayerFile(FileInfo("/etc/shadow", "file", len(shadow), 0o640), shadow, 0))[0]
    analyzer.settle([[record]])
    seconds = time.perf_counter() - t0
    analyzer.service.close()
    statuses = Counter(a["status"] for a in record["accounts"])
    return {"seconds": seconds, "tried": record["tried"], "exhausted": record["exhausted"], "statuses": dict(statuses)}


def scan(archive: Path, tmp: str, name: str, cache_dir: str, analyzers: list[str] | None, workers: int) -> dict:
    db = os.path.join(tmp, f"{name}.db")
    cmd = [sys.executable, "-m", "stowaway.ingest.cli", "scan", f"docker-archive:{archive}", "--db", db,
           "--no-progress", "--set", f"passwords.workers={workers}"]
    for a in analyzers or ():
        cmd += ["--analyzer", a]
    env = {**os.environ, "STOWAWAY_CACHE_DIR": cache_dir, "STOWAWAY_DATA_DIR": os.path.join(tmp, "data")}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"scan {name} failed: {proc.stderr.strip()[-2000:]}")
    row = sqlite3.connect(db).execute("SELECT value FROM scan_facts WHERE name = 'weak_passwords'").fetchone()
    facts = json.loads(row[0]).get("/etc/shadow", {}) if row else {}
    return {"wall": wall, "facts": facts}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--archive", type=Path, default=DEFAULT_ARCHIVE)
    ap.add_argument("--workers", type=int, default=2, help="guessing threads ([passwords] workers)")
    args = ap.parse_args()
    if not args.archive.exists():
        sys.exit(f"{args.archive}: not found (needs ../shared/corpus)")
    from stowaway.analyzers.base import load_all

    everything_else = sorted(set(load_all()) - {"weak-passwords"})
    shadow = final_shadow(args.archive)
    print(f"cpus: {os.cpu_count()}, load average at start: {os.getloadavg()[0]:.2f}, workers: {args.workers}")
    with tempfile.TemporaryDirectory() as tmp:
        alone = check_alone(shadow, args.workers, os.path.join(tmp, "cache-alone"), 30.0)
        anchor = scan(args.archive, tmp, "anchor", os.path.join(tmp, "cache-a"), everything_else, args.workers)
        cold = scan(args.archive, tmp, "cold", os.path.join(tmp, "cache-b"), None, args.workers)
        warm = scan(args.archive, tmp, "warm", os.path.join(tmp, "cache-b"), None, args.workers)
    f_cold, f_warm = cold["facts"], warm["facts"]
    check_cost = cold["wall"] - anchor["wall"]
    old_scan = anchor["wall"] + alone["seconds"]
    print(f"guessing alone, old default budget 30 s (= the old check, on the critical path): {alone['seconds']:.2f} s,"
          f" {alone['tried']} candidates tried on unmatched accounts, accounts {alone['statuses']}")
    print(f"scan without the check (anchor): {anchor['wall']:.2f} s")
    print(f"scan with the check, empty verdict cache: {cold['wall']:.2f} s; guessing {f_cold.get('seconds')} s beside"
          f" the walk, waited {f_cold.get('waited')} s at the end, {f_cold.get('weak')} weak,"
          f" exhausted={f_cold.get('exhausted')}")
    print(f"scan with the check, verdict cache kept: {warm['wall']:.2f} s; {f_warm.get('cached')} account(s) from the"
          f" cache, guessing {f_warm.get('seconds')} s, waited {f_warm.get('waited')} s")
    print(f"ratio: the check's share of the whole scan (cold): {max(check_cost, 0) / cold['wall']:.2f}"
          f" (wait at the end / scan: {f_cold.get('waited', 0) / cold['wall']:.2f});"
          f" old behaviour's share, estimated: {alone['seconds'] / old_scan:.2f}")
    print(f"ratio: the check's added scan time, new / old: {max(check_cost, 0) / alone['seconds']:.2f};"
          f" whole scan, new / old estimate: {cold['wall'] / old_scan:.2f};"
          f" warm-cache scan / anchor: {warm['wall'] / anchor['wall']:.2f}")
    print(f"load average at end: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
