#!/usr/bin/env python3
"""Benchmark: scan throughput (images per second) of analysis-heavy images on a Dask cluster of 1 and of
2 single-threaded workers (`dask scheduler` and `dask worker` commands, each in a session of its own,
or with --local-cluster a LocalCluster), and optionally in this process and in local worker processes.

    .venv/bin/python tests/bench/bench_dask_throughput.py [--images N] [--repeat R] [--batch B] [--profile]

Each image is its own OCI layout with one shared base layer and one layer of its own (F small files,
jars and config files holding credentials), so every run reads N+1 layers. Each configuration scans
into a fresh database; the writer is always this process. Cluster start-up is outside the timing (a
real cluster is already running). Prints each run's 2-vs-1 ratio (both measured in that run), and
the writer's ceiling: the writer alone on already-analyzed results, per image and in batches.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import pathlib
import random
import socket
import string
import subprocess
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


def _cpu() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def timed(label: str, sources: list[str], directory: str, risks, policy: dict, **kw) -> float:
    """Images/s of one configuration; with a Dask client, also the CPU seconds per image spent in the
    workers and in this process (the writer, the client and, for a LocalCluster, the scheduler), which a
    loaded machine inflates far less than the wall time."""
    from stowaway.ingest.db import connect
    from stowaway.ingest.pipeline import Scanner

    client = kw.get("dask")
    database = connect(os.path.join(directory, f"{label.replace(' ', '_').replace(':', '')}.db"))
    workers0 = sum(client.run(_cpu).values()) if client else 0.0
    cpu0, t0 = _cpu(), time.perf_counter()
    out = Scanner(database, policy, risks=risks, progress=False, **kw).run(sources)
    wall = time.perf_counter() - t0
    here = _cpu() - cpu0
    failed = [o for o in out if o.status != "done"]
    if failed:
        sys.exit(f"{label}: {failed[0].error}")
    rate = len(sources) / wall
    extra = ""
    if client:
        workers = sum(client.run(_cpu).values()) - workers0
        extra = (f"  CPU per image: workers {workers / len(sources) * 1000:.0f} ms,"
                 f" this process {here / len(sources) * 1000:.0f} ms")
        CPU.setdefault("workers", []).append(workers / len(sources))
        CPU.setdefault("writer", []).append(here / len(sources))
    print(f"{label:<28} {wall:7.2f} s  {rate:7.1f} images/s{extra}", flush=True)
    return rate


CPU: dict[str, list[float]] = {}


@contextlib.contextmanager
def cluster(workers: int, local: bool):
    """A Dask client on WORKERS single-threaded workers: `dask scheduler` and `dask worker` started as
    commands, each in a session of its own, as a cluster's services are (Linux's autogroup scheduler
    shares a loaded CPU between sessions, so workers inside this one would share its one slice); or,
    with LOCAL, a LocalCluster in this process."""
    from distributed import Client, LocalCluster

    if local:
        with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                          silence_logs=40) as lc, Client(lc) as client:
            yield client
        return
    dask = os.path.join(os.path.dirname(sys.executable), "dask")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "start_new_session": True}
    procs = [subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
                              **quiet)]
    try:
        procs += [subprocess.Popen([dask, "worker", address, "--nthreads", "1", "--no-nanny", "--no-dashboard"],
                                   **quiet) for _ in range(workers)]
        with Client(address, timeout=120) as client:
            client.wait_for_workers(workers, timeout=300)
            yield client
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


def writer_ceiling(sources: list[str], directory: str, risks, batch: int, profile: bool = False) -> dict:
    """The writer alone, analysis done beforehand in this process (as a worker does it: judged and
    redacted): unpickling the results (what the writer process does with a worker's reply) and writing
    them one transaction per image, then in batches of BATCH. Returns images/s of each."""
    import cProfile
    import pickle
    import pstats

    from stowaway.ingest.analysis import Analysis
    from stowaway.ingest.db import connect
    from stowaway.ingest.writer import Writer

    analysis = Analysis(None, {}, risks, None, progress=False)
    blob = pickle.dumps([r for s in sources for r in analysis.source_results(s)])
    n = len(sources)
    out = {}
    t0 = time.perf_counter()
    for _ in range(3):
        pickle.loads(blob)
    out["unpickle"] = n * 3 / (time.perf_counter() - t0)
    for label, size in (("per image", 1), (f"batches of {batch}", batch)):
        database = connect(os.path.join(directory, f"writer-{size}.db"))
        writer = Writer(database, {})
        prof = cProfile.Profile() if profile and size == batch else None
        t0 = time.perf_counter()
        results = pickle.loads(blob)
        if prof:
            prof.enable()
        for i in range(0, n, size):
            writer.write_batch(results[i:i + size])
        if prof:
            prof.disable()
        wall = time.perf_counter() - t0
        out[label] = n / wall
        print(f"writer alone, {label:<16} {wall:7.2f} s  {n / wall:7.1f} images/s (unpickling included)", flush=True)
        if prof:
            pstats.Stats(prof).sort_stats("cumulative").print_stats(25)
    return out


def load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=40, help="images to scan (default 40)")
    ap.add_argument("--files", type=int, default=100, help="small text files per image (default 100)")
    ap.add_argument("--jars", type=int, default=20, help="jars per image, 40 classes each (default 20)")
    ap.add_argument("--secrets", type=int, default=10, help="config files with 4 credentials each, per image"
                    " (default 10)")
    ap.add_argument("--risk", action="append", help="risk types (default: all)")
    ap.add_argument("--repeat", type=int, default=3, help="runs of 1 then 2 workers (default 3); each run's ratio"
                    " is measured in that run")
    ap.add_argument("--batch", type=int, default=16, help="[scan] write_batch for the Dask runs and the writer's"
                    " batched ceiling (default 16)")
    ap.add_argument("--local", action="store_true", help="also time this process and --jobs 2")
    ap.add_argument("--local-cluster", action="store_true", help="workers of a dask.distributed.LocalCluster in"
                    " this process's session, instead of `dask scheduler` and `dask worker` commands in sessions of"
                    " their own")
    ap.add_argument("--profile", action="store_true", help="print where the writer's time goes (cProfile of"
                    " its batched run)")
    args = ap.parse_args()
    policy = {"scan": {"write_batch": args.batch}}
    with tempfile.TemporaryDirectory() as tmp:
        sources = make_images(tmp, args.images, args.files, args.jars, args.secrets)
        print(f"{args.images} images, each {args.files} files, {args.jars} jars, {args.secrets} files of secrets;"
              f" risks {','.join(args.risk or ['all'])}, {os.cpu_count()} CPUs, load {load()}")
        ceiling = writer_ceiling(sources, tmp, args.risk, args.batch, args.profile)
        if args.local:
            timed("this process", sources, tmp, args.risk, policy)
            timed("local processes, --jobs 2", sources, tmp, args.risk, policy, jobs=2)
        ratios = []
        for run in range(1, args.repeat + 1):
            rates = {}
            for workers in ((1, 2) if run % 2 else (2, 1)):  # alternated: a load that drifts favours neither
                with cluster(workers, args.local_cluster) as client:
                    client.run(lambda: __import__("stowaway.ingest.pipeline"))  # warm the workers' imports
                    rates[workers] = timed(f"run {run}: dask, {workers} worker(s)", sources, tmp, args.risk, policy,
                                           dask=client)
            ratios.append(rates[2] / rates[1])
            print(f"run {run}: dask speed-up 2 vs 1 workers: {ratios[-1]:.2f}x (load {load()})", flush=True)
        print(f"speed-up 2 vs 1 workers over {len(ratios)} runs: {', '.join(f'{r:.2f}x' for r in ratios)};"
              f" median {sorted(ratios)[len(ratios) // 2]:.2f}x")
        print(f"writer's ceiling: {ceiling[f'batches of {args.batch}']:.1f} images/s in batches of {args.batch}"
              f" ({ceiling['per image']:.1f} one transaction per image; unpickling alone {ceiling['unpickle']:.0f}/s)")
        a, w = sorted(CPU["workers"])[len(CPU["workers"]) // 2], sorted(CPU["writer"])[len(CPU["writer"]) // 2]
        print(f"CPU per image (median of the Dask runs): a worker {a * 1000:.0f} ms, so about {1 / a:.1f} images/s per"
              f" worker on a core of its own; this process {w * 1000:.0f} ms (writer and client; with --local-cluster"
              f" the scheduler too), so the writer's process saturates at about {1 / w:.0f} images/s, {w / a * 100:.0f} % of a"
              f" worker's CPU per image: about {a / w:.0f} workers")


if __name__ == "__main__":
    main()
