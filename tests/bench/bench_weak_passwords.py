#!/usr/bin/env python3
"""The weak-password check on corpus/shop:1.0 with the default list: time and candidates tried.

    python tests/bench/bench_weak_passwords.py [--archive ../shared/corpus/shop-1.0.docker.tar.gz] [--workers 1 2]

1. The check alone: the image's final /etc/shadow (read from the archive in memory) through the
   `weak-passwords` analyzer, once per worker count, with the process's verdict memory cleared.
2. The check in a scan: `stowaway scan` with only os-release and weak-passwords into a fresh
   database; the figures recorded in scan_facts.

Exit status 1 when a run did not finish every account within the budget (default 30 s).
"""
from __future__ import annotations

import argparse
import json
import os
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


def check_alone(shadow: bytes, workers: int, budget: float) -> dict:
    from stowaway.analyzers.settings import passwords
    from stowaway.analyzers.settings.passwords import WeakPasswords
    from stowaway.ingest.model import FileInfo, LayerFile

    passwords._VERDICTS.clear()  # measure the verification, not the process's memory of earlier verdicts
    analyzer = WeakPasswords({"passwords": {"workers": workers, "budget_seconds": budget}})
    t0 = time.perf_counter()
    record = analyzer.analyze(LayerFile(FileInfo("/etc/shadow", "file", len(shadow), 0o640), shadow, 0))[0]
    seconds = time.perf_counter() - t0
    statuses = Counter(a["status"] for a in record["accounts"])
    schemes = Counter(a["scheme"] for a in record["accounts"] if a["status"] not in ("locked",))
    return {"workers": workers, "seconds": round(seconds, 2), "tried": record["tried"], "exhausted": record["exhausted"],
            "statuses": dict(statuses), "schemes": dict(schemes), "list": record["candidates"]}


def check_in_scan(archive: Path) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        db = os.path.join(tmp, "bench.db")
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "stowaway.ingest.cli", "scan", f"docker-archive:{archive}", "--db", db,
                        "--no-progress", "--analyzer", "os-release", "--analyzer", "weak-passwords"], check=True,
                       capture_output=True)
        wall = time.perf_counter() - t0
        import sqlite3

        value = sqlite3.connect(db).execute("SELECT value FROM scan_facts WHERE name = 'weak_passwords'").fetchone()[0]
        return {"scan_wall_seconds": round(wall, 2), "facts": json.loads(value)}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--archive", type=Path, default=DEFAULT_ARCHIVE)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--budget", type=float, default=30.0)
    args = ap.parse_args()
    if not args.archive.exists():
        sys.exit(f"{args.archive}: not found (needs ../shared/corpus)")
    shadow = final_shadow(args.archive)
    ok = True
    print(f"cpus: {os.cpu_count()}, load average: {os.getloadavg()[0]:.2f}, budget: {args.budget} s")
    for workers in args.workers:
        r = check_alone(shadow, workers, args.budget)
        ok &= not r["exhausted"]
        print(f"check alone, {workers} worker(s): {r['seconds']} s, {r['tried']} candidates tried on unmatched accounts,"
              f" accounts {r['statuses']}, schemes {r['schemes']}, list of {r['list']} + user-name guesses")
    s = check_in_scan(args.archive)
    shadow_facts = s["facts"].get("/etc/shadow", {})
    ok &= not shadow_facts.get("exhausted", True)
    print(f"in a scan (default policy): check {shadow_facts.get('seconds')} s, {shadow_facts.get('tried')} candidates tried,"
          f" {shadow_facts.get('weak')} weak; whole scan {s['scan_wall_seconds']} s wall")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
