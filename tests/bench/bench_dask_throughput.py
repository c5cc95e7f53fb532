#!/usr/bin/env python3
"""Benchmark: scan throughput (images per second) of many small images, in this process, in local
worker processes, and on a Dask LocalCluster of 1 and 2 single-threaded worker processes.

    .venv/bin/python tests/bench/bench_dask_throughput.py [--images N] [--files F] [--risk TYPE ...]

Each image is its own OCI layout with one shared base layer and one layer of F small files of its
own, so every run reads N+1 layers. Each configuration scans into a fresh database; the writer is
always this process. Cluster start-up is outside the timing (a real cluster is already running).
"""
from __future__ import annotations

import argparse
import os
import pathlib
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

from imagebuilder import File, ImageBuilder  # noqa: E402


def make_images(directory: str, n: int, files: int) -> list[str]:
    base = {"etc/os-release": 'ID=debian\nVERSION_ID="12"\n'}
    base.update({f"usr/lib/lib{i}.so": File(b"\x7fELF" + os.urandom(64) * 8) for i in range(200)})
    sources = []
    for k in range(n):
        img = ImageBuilder().layer(base, created_by="ADD base /")
        img.layer({f"srv/app{k}/f{i}.txt": f"image {k} file {i}\n" * 20 for i in range(files)},
                  created_by=f"COPY app{k}")
        path = os.path.join(directory, f"img{k}")
        img.write_oci_layout(path, ref=f"bench/app:{k}")
        sources.append(f"oci:{path}")
    return sources


def timed(label: str, sources: list[str], directory: str, risks, **kw) -> float:
    from stowaway.ingest.db import connect
    from stowaway.ingest.pipeline import Scanner

    database = connect(os.path.join(directory, f"{label.replace(' ', '_')}.db"))
    t0 = time.perf_counter()
    out = Scanner(database, {}, risks=risks, progress=False, **kw).run(sources)
    wall = time.perf_counter() - t0
    failed = [o for o in out if o.status != "done"]
    if failed:
        sys.exit(f"{label}: {failed[0].error}")
    rate = len(sources) / wall
    print(f"{label:<28} {wall:7.2f} s  {rate:7.1f} images/s", flush=True)
    return rate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=60)
    ap.add_argument("--files", type=int, default=300)
    ap.add_argument("--risk", action="append", help="risk types (default: all)")
    args = ap.parse_args()
    from distributed import Client, LocalCluster

    with tempfile.TemporaryDirectory() as tmp:
        sources = make_images(tmp, args.images, args.files)
        print(f"{args.images} images, {args.files} files each, risks {','.join(args.risk or ['all'])},"
              f" {os.cpu_count()} CPUs")
        timed("this process", sources, tmp, args.risk)
        timed("local processes, --jobs 2", sources, tmp, args.risk, jobs=2)
        rates = {}
        for workers in (1, 2):
            with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                              silence_logs=40) as cluster, Client(cluster) as client:
                client.run(lambda: __import__("stowaway.ingest.pipeline"))  # warm the workers' imports
                rates[workers] = timed(f"dask, {workers} worker(s)", sources, tmp, args.risk, dask=client)
        print(f"dask speed-up 2 vs 1 workers: {rates[2] / rates[1]:.2f}x")


if __name__ == "__main__":
    main()
