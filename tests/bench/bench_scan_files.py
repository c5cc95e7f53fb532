#!/usr/bin/env python3
"""Benchmark: a files-only scan of a docker-save archive against `gzip -dc` of the same file.

    .venv/bin/python tests/bench/bench_scan_files.py [ARCHIVE] [--runs N]

ARCHIVE defaults to ../shared/corpus/shop-1.0.docker.tar.gz. Each run is a fresh process on a fresh
database (no layer cache), so it measures the whole read: decompression, digest checks, tar
parsing, squash and the database write. Prints wall time and peak RSS (best of N for both tools)
and the ratio. Target (issue 2): within 1.5x of gunzip, peak RSS under 150 MB.
"""
from __future__ import annotations

import argparse
import os
import pathlib
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
DEFAULT = ROOT.parent / "shared" / "corpus" / "shop-1.0.docker.tar.gz"


def measure(argv: list[str], stdout=subprocess.DEVNULL) -> tuple[float, int]:
    """(wall seconds, peak RSS in bytes) of one child process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=stdout, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{argv[0]} failed: {proc.stderr.read().decode()[-2000:]}")
    return wall, usage.ru_maxrss * 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("archive", nargs="?", default=str(DEFAULT))
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    stowaway = str(pathlib.Path(sys.executable).with_name("stowaway"))
    scans, gunzips = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.runs):
            db = os.path.join(tmp, f"bench{i}.db")
            scans.append(measure([stowaway, "scan", f"docker-archive:{args.archive}", "--db", db, "--risk", "files",
                                  "--no-progress"]))
            gunzips.append(measure(["gzip", "-dc", args.archive]))
    best_scan = min(w for w, _ in scans)
    best_gz = min(w for w, _ in gunzips)
    rss = max(r for _, r in scans)
    print(f"archive          {args.archive} ({os.path.getsize(args.archive) / 1e6:.1f} MB)")
    print(f"runs             {args.runs} (best wall time of each)")
    print(f"gzip -dc         {best_gz:.2f} s")
    print(f"stowaway scan    {best_scan:.2f} s   peak RSS {rss / 2**20:.0f} MiB")
    print(f"ratio            {best_scan / best_gz:.2f}x gunzip (target <= 1.5x; RSS target < 150 MB)")
    print(f"all scan runs    {', '.join(f'{w:.2f}' for w, _ in scans)} s")
    print(f"all gunzip runs  {', '.join(f'{w:.2f}' for w, _ in gunzips)} s")


if __name__ == "__main__":
    main()
