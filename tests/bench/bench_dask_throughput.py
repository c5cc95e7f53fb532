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
import random
import string
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

from imagebuilder import File, ImageBuilder  # noqa: E402

sys.path.insert(0, str(ROOT / "tests" / "bench"))
from synthetic import _jar  # noqa: E402


def _token(rnd: random.Random, n: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    return "".join(rnd.choice(alphabet) for _ in range(n))


def app_layer(k: int, files: int, jars: int, secrets: int) -> dict:
    """Image K's own files: FILES small text files, JARS jars (40 classes each) and SECRETS config files
    holding credentials, all different from every other image's (nothing is cached across images)."""
    rnd = random.Random(k)
    out: dict = {f"srv/app{k}/f{i}.txt": f"image {k} file {i}\n" * 20 for i in range(files)}
    for j in range(jars):
        out[f"srv/app{k}/lib/lib{j}.jar"] = File(_jar(k * 1000 + j))
    for j in range(secrets):
        out[f"srv/app{k}/conf/service{j}.env"] = (
            f"# service {j}\nGITHUB_TOKEN=ghp_{_token(rnd, 36)}\n"
            f"AWS_ACCESS_KEY_ID=AKIA{_token(rnd, 16, string.ascii_uppercase + string.digits)}\n"
            f"AWS_SECRET_ACCESS_KEY={_token(rnd, 40)}\nDB_PASSWORD={_token(rnd, 20)}\n" + "LOG_LEVEL=info\n" * 40)
    return out


def make_images(directory: str, n: int, files: int, jars: int = 0, secrets: int = 0) -> list[str]:
    base = {"etc/os-release": 'ID=debian\nVERSION_ID="12"\n'}
    base.update({f"usr/lib/lib{i}.so": File(b"\x7fELF" + os.urandom(64) * 8) for i in range(200)})
    sources = []
    for k in range(n):
        img = ImageBuilder().layer(base, created_by="ADD base /")
        img.layer(app_layer(k, files, jars, secrets), created_by=f"COPY app{k}")
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


def profile_writer(sources: list[str], directory: str, risks) -> None:
    """Analysis in this process first, then the writer alone under cProfile: its ceiling in images/s."""
    import cProfile
    import pstats

    from stowaway.ingest.analysis import Analysis
    from stowaway.ingest.db import connect
    from stowaway.ingest.writer import Writer

    database = connect(os.path.join(directory, "profile.db"))
    analysis = Analysis(None, {}, risks, None, progress=False)
    results = [r for s in sources for r in analysis.source_results(s)]
    writer = Writer(database, {})
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    for r in results:
        writer.write(r)
    prof.disable()
    wall = time.perf_counter() - t0
    print(f"writer alone (under cProfile): {wall:.2f} s, ceiling {len(results) / wall:.1f} images/s")
    pstats.Stats(prof).sort_stats("cumulative").print_stats(25)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=40, help="images to scan (default 40)")
    ap.add_argument("--files", type=int, default=100, help="small text files per image (default 100)")
    ap.add_argument("--jars", type=int, default=20, help="jars per image, 40 classes each (default 20)")
    ap.add_argument("--secrets", type=int, default=10, help="config files with 4 credentials each, per image"
                    " (default 10)")
    ap.add_argument("--risk", action="append", help="risk types (default: all)")
    ap.add_argument("--local", action="store_true", help="also time this process and --jobs 2")
    ap.add_argument("--profile", action="store_true", help="print where the writer's time goes (cProfile of"
                    " the writing side of a scan in this process, analysis already done)")
    args = ap.parse_args()
    from distributed import Client, LocalCluster

    with tempfile.TemporaryDirectory() as tmp:
        sources = make_images(tmp, args.images, args.files, args.jars, args.secrets)
        print(f"{args.images} images, each {args.files} files, {args.jars} jars, {args.secrets} files of secrets;"
              f" risks {','.join(args.risk or ['all'])}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
        if args.profile:
            profile_writer(sources, tmp, args.risk)
        if args.local:
            timed("this process", sources, tmp, args.risk)
            timed("local processes, --jobs 2", sources, tmp, args.risk, jobs=2)
        rates = {}
        for workers in (1, 2):
            with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                              silence_logs=40) as cluster, Client(cluster) as client:
                client.run(lambda: __import__("stowaway.ingest.pipeline"))  # warm the workers' imports
                rates[workers] = timed(f"dask, {workers} worker(s)", sources, tmp, args.risk, dask=client)
        print(f"dask speed-up 2 vs 1 workers: {rates[2] / rates[1]:.2f}x (load {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
