#!/usr/bin/env python3
"""Benchmark: scan throughput (images per second) of analysis-heavy images on a Dask cluster of 1 and of
2 single-threaded workers (`dask scheduler` and `dask worker` commands, each in a session of its own,
or with --local-cluster a LocalCluster), and optionally in this process and in local worker processes.

    .venv/bin/python tests/bench/bench_dask_throughput.py [--images N] [--repeat R] [--batch B] [--profile]
    .venv/bin/python tests/bench/bench_dask_throughput.py --at-scale 10000   # the writer at 0 vs 10,000 images

Each image is its own OCI layout with one shared base layer and one layer of its own (F small files,
jars and config files holding credentials), so every run reads N+1 layers. Each configuration scans
into a fresh database; the writer is always this process. Cluster start-up is outside the timing (a
real cluster is already running: each worker has run one job before and the scheduler has seen one task,
warm_cluster). 1- and 2-worker runs
are interleaved (the order alternating), and each run's 2-vs-1 ratio is measured in that run; the summary
gives medians over the runs.

On a machine shared with others the 2-vs-1 ratio is bounded by the CPU the workers can get, so every
run also prints what the workers actually got, read from /proc/<pid>/stat of the worker processes:
  cores     their CPU seconds over the wall time (2 workers on an idle 2-core machine: up to 2.0,
            less what the writer's process and the scheduler take);
  img/cpu-s images per second of worker CPU: the per-image cost of the scale-out path, which load
            inflates far less than wall time (2 vs 1 should be about 1.0);
  busy      the share of the wall time the workers spent inside a job (worker_started/finished of
            the task items): below 1 when a worker waits for its next job.
After each pair, an anchor measured in the same conditions: the machine's own 2-vs-1 ratio for pure
Python work (1 and 2 processes in the pair's order, each in a session of its own, as the workers are).
Each pair's ratio / anchor is split into three factors whose product it is (each 1.0 at best):
  busy 2 vs 1     the workers' time inside a job, two against one: below 1 when two wait more for work
                  (the scan's start and last write, the writer's process keeping up);
  inside 2 vs 1   the CPU a worker got while inside a job, two against one, over the anchor's per
                  process: below 1 when the writer's process and the scheduler (their cores printed)
                  or others took CPU the workers would have had;
  img/cpu-s       images per worker-CPU-second, two against one.
The summary gives medians over the pairs and the ratio pooled over them (mean images/s of 2 workers
over that of 1, the anchor likewise), which one noisy pair moves less. Before the runs, the writer's
ceiling: the writer alone on already-analyzed results, per image and in batches.
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


def make_images(directory: str, n: int, files: int, jars: int = 0, secrets: int = 0, repository: str = "bench/app",
                first: int = 0) -> list[str]:
    base = {"etc/os-release": 'ID=debian\nVERSION_ID="12"\n'}
    base.update({f"usr/lib/lib{i}.so": File(b"\x7fELF" + os.urandom(64) * 8) for i in range(200)})
    sources = []
    for k in range(first, first + n):
        img = ImageBuilder().layer(base, created_by="ADD base /")
        img.layer(app_layer(k, files, jars, secrets), created_by=f"COPY app{k}")
        path = os.path.join(directory, f"img{k}")
        img.write_oci_layout(path, ref=f"{repository}:{k}")
        sources.append(f"oci:{path}")
    return sources


def _cpu() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def proc_cpu(pids) -> float:
    """CPU seconds (user + system, every thread) of processes `pids` so far, from /proc/<pid>/stat."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
        total += (int(fields[11]) + int(fields[12])) / tick  # utime and stime: fields 14 and 15
    return total


RUNS: list[dict] = []


def timed(label: str, sources: list[str], directory: str, risks, policy: dict, scheduler_pid: int | None = None,
          **kw) -> dict:
    """One configuration's run: images/s; with a Dask client also what the workers got (from /proc of
    their processes): CPU seconds, cores (CPU over wall), images per worker-CPU-second, the share of the
    wall time they spent inside a job, and the CPU per image of this process (writer and client) and of
    the scheduler."""
    from stowaway.ingest.db import connect
    from stowaway.ingest.pipeline import Scanner

    client = kw.get("dask")
    path = os.path.join(directory, f"{label.replace(' ', '_').replace(':', '').replace(',', '')}.db")
    database = connect(path)
    pids = sorted(client.run(os.getpid).values()) if client else []
    workers0 = proc_cpu(pids)
    sched0 = proc_cpu([scheduler_pid]) if scheduler_pid else 0.0
    cpu0, t0 = _cpu(), time.perf_counter()
    out = Scanner(database, policy, risks=risks, progress=False, **kw).run(sources)
    wall = time.perf_counter() - t0
    here = _cpu() - cpu0
    failed = [o for o in out if o.status != "done"]
    if failed:
        sys.exit(f"{label}: {failed[0].error}")
    n = len(sources)
    run = {"label": label, "workers": len(pids), "wall": wall, "rate": n / wall, "writer_cpu": here / n,
           "writer_cores": here / wall}
    extra = ""
    if client:
        workers = proc_cpu(pids) - workers0
        sched = proc_cpu([scheduler_pid]) - sched0 if scheduler_pid else 0.0
        busy = connect(path).execute("SELECT SUM(worker_finished - worker_started) FROM task_items").fetchone()[0]
        run.update(worker_cpu=workers / n, cores=workers / wall, per_cpu=n / workers,
                   busy=(busy or 0.0) / (wall * len(pids)), sched_cpu=sched / n, sched_cores=sched / wall)
        # the CPU a worker got while inside a job, in cores: what the machine gave it when it had work
        run["inside"] = run["cores"] / (len(pids) * run["busy"]) if run["busy"] else 0.0
        extra = (f"  workers: {run['cores']:.2f} cores, {run['per_cpu']:.1f} img/cpu-s ({workers / n * 1000:.0f} ms"
                 f" per image), busy {run['busy'] * 100:.0f} %; this process {here / n * 1000:.0f} ms/image"
                 + (f", scheduler {sched / n * 1000:.0f} ms/image" if scheduler_pid else ""))
    print(f"{label:<28} {wall:7.2f} s  {n / wall:6.1f} images/s{extra}", flush=True)
    RUNS.append(run)
    return run


SPIN = """
import sys, time
end = time.perf_counter() + float(sys.argv[1])
n = 0
while time.perf_counter() < end:
    s = 0
    for i in range(20000):
        s += i * i % 7
    d = {str(i): i for i in range(2000)}
    n += 1
print(n)
"""


def machine_ceiling(seconds: float = 4.0, order: tuple[int, int] = (1, 2)) -> dict[int, float]:
    """The anchor: the 2-vs-1 ratio this machine gives right now to pure Python work that needs nothing
    from anyone (no writer, no scheduler, no I/O): 1 and 2 processes (in ORDER, as the pair's runs were),
    each in a session of its own as the workers are, each counting loops for SECONDS. What 2 workers can
    reach against 1 at best. Returns loops per second of 1 and of 2 processes."""
    rates = {}
    for k in order:
        procs = [subprocess.Popen([sys.executable, "-c", SPIN, str(seconds)], stdout=subprocess.PIPE, text=True,
                                  start_new_session=True) for _ in range(k)]
        rates[k] = sum(int(p.communicate()[0]) for p in procs) / seconds
    return rates


def warm_worker(source: str, policy: dict, risks) -> None:
    """Run on every worker before the timing: one job of SOURCE with no database, its result dropped, so each
    worker has imported its analyzers and compiled its rules as the workers of a running cluster have (each
    worker's first job cost about 0.1 s of CPU more than the next: half a second or more of wall time under
    load, paid once a run, which made a short run's 2-vs-1 ratio about what the first job costs)."""
    from stowaway.ingest.executors import Job, run_job

    run_job(Job(None, policy, risks, None, source))


def warm_cluster(client, source: str, policy: dict, risks) -> None:
    """Before the timing, as a running cluster is: each worker warmed (warm_worker), and one task of the scan's
    function through the scheduler, which unpickles a task's function and arguments and so imports Stowaway's
    modules the first time it sees one (0.1-0.3 s before a fresh scheduler dispatched the scan's first task:
    both workers idle, 5-8 % of a 2-worker run at load 5-10)."""
    from stowaway.ingest.dask_runner import DaskExecutor  # noqa: F401  (the task loop's imports, once)
    from stowaway.ingest.executors import run_jobs

    client.run(warm_worker, source, policy, risks)
    client.submit(run_jobs, (), pure=False).result()


def median(values: list[float]) -> float:
    values = sorted(values)
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


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
            yield client, None  # the scheduler runs in this process
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
            yield client, procs[0].pid
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


def write_at_scale(directory: str, args) -> None:
    """Issue 16 item 5: the writer's cost per image of first scans written into a database that already holds
    AT_SCALE images (bench_datasette_pages' generated database: 100 findings each, the report tables, kept
    facet counts and page indexes built; copied, the cached one is left as it is) against an empty one, the
    same images into each: CPU and wall ms per image, in batches of --batch. The images join a repository
    of the generated ones (bench/app7, 1 of 100 versions each) with versions of their own; a few are written
    first, unmeasured (the writer's page cache warm, as in a long scan)."""
    import pickle
    import shutil

    import bench_datasette_pages

    # first: the cache's key is a digest of a new database's schema, which the modules imported below add to
    # (ingest/reuse.py's tables): found before them, it is the key the pages benchmark uses
    generated = bench_datasette_pages.cached_database(args.at_scale, 100, args.cache_dir)
    from stowaway.ingest.analysis import Analysis
    from stowaway.ingest.db import connect
    from stowaway.ingest.writer import Writer

    warm = 8
    sources = make_images(directory, args.images + warm, args.files, args.jars, args.secrets, repository="bench/app7",
                          first=100000)
    analysis = Analysis(None, {}, args.risk, None, progress=False)
    blob = pickle.dumps([r for s in sources for r in analysis.source_results(s)])
    got = {}
    for label, base in (("an empty database", None), (f"a database of {args.at_scale} images", generated)):
        path = os.path.join(directory, f"scale-{0 if base is None else args.at_scale}.db")
        if base is not None:
            for suffix in ("", "-wal"):  # the generated database as it was left (its WAL, if any, included)
                if os.path.exists(f"{base}{suffix}"):
                    shutil.copyfile(f"{base}{suffix}", f"{path}{suffix}")
            os.sync()  # the copy's 2 GB on disk first: its write-back would otherwise delay the writes measured
        database = connect(path)
        writer = Writer(database, {})
        results = pickle.loads(blob)
        writer.write_batch(results[:warm])
        cpu0, t0 = _cpu(), time.perf_counter()
        for i in range(warm, len(results), args.batch):
            out = writer.write_batch(results[i:i + args.batch])
            if any(o.status != "done" for o in out):
                sys.exit(f"write into {label}: {next(o.error for o in out if o.status != 'done')}")
        cpu, wall = (_cpu() - cpu0) / args.images, (time.perf_counter() - t0) / args.images
        got[base is not None] = (cpu, wall)
        print(f"first scans written into {label:<30} {cpu * 1000:6.1f} ms CPU, {wall * 1000:6.1f} ms wall per image"
              f" (load {load()})", flush=True)
        database.conn.close()
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(f"{path}{suffix}"):
                os.unlink(f"{path}{suffix}")
    print(f"write cost at {args.at_scale} images vs an empty database: {got[True][0] / got[False][0]:.2f}x CPU,"
          f" {got[True][1] / got[False][1]:.2f}x wall per image")


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
    ap.add_argument("--no-ahead", action="store_true", help="submit no job ahead of the workers (DaskExecutor.ahead"
                    " = 0, as before it existed): each worker waits for this process between two jobs")
    ap.add_argument("--per-task", type=int, default=0, metavar="N", help="[scan] dask_sources_per_task: sources"
                    " one Dask task carries while plenty are queued (default: the scan's, 4; 1: a task per source)")
    ap.add_argument("--profile", action="store_true", help="print where the writer's time goes (cProfile of"
                    " its batched run)")
    ap.add_argument("--at-scale", type=int, default=0, metavar="N", help="only the write cost of first scans into a"
                    " database already holding N generated images (e.g. 10000) against an empty one, ms per image;"
                    " no Dask runs")
    ap.add_argument("--cache-dir", type=pathlib.Path,
                    default=pathlib.Path(os.environ.get("STOWAWAY_BENCH_CACHE") or ROOT.parent / "bench-cache"),
                    help="[--at-scale] where the generated database is kept between runs (default"
                         " $STOWAWAY_BENCH_CACHE or ../bench-cache beside the repository)")
    args = ap.parse_args()
    if args.at_scale:
        with tempfile.TemporaryDirectory() as tmp:
            print(f"{args.images} images, each {args.files} files, {args.jars} jars, {args.secrets} files of secrets;"
                  f" {os.cpu_count()} CPUs, load {load()}")
            write_at_scale(tmp, args)
        return
    policy: dict = {"scan": {"write_batch": args.batch}}
    if args.per_task:
        policy["scan"]["dask_sources_per_task"] = args.per_task
    if args.no_ahead:
        from stowaway.ingest.dask_runner import DaskExecutor

        DaskExecutor.ahead = property(lambda self: 0)  # type: ignore[assignment,method-assign]
    with tempfile.TemporaryDirectory() as tmp:
        sources = make_images(tmp, args.images, args.files, args.jars, args.secrets)
        print(f"{args.images} images, each {args.files} files, {args.jars} jars, {args.secrets} files of secrets;"
              f" risks {','.join(args.risk or ['all'])}, {os.cpu_count()} CPUs, load {load()};"
              f" jobs ahead of the workers: {'none (--no-ahead)' if args.no_ahead else 'one task per worker'};"
              f" sources per Dask task: {args.per_task or 'the default'}")
        ceiling = writer_ceiling(sources, tmp, args.risk, args.batch, args.profile)
        if args.local:
            timed("this process", sources, tmp, args.risk, policy)
            timed("local processes, --jobs 2", sources, tmp, args.risk, policy, jobs=2)
        pairs = []
        for run in range(1, args.repeat + 1):
            got = {}
            order = (1, 2) if run % 2 else (2, 1)  # alternated: a load that drifts favours neither
            for workers in order:
                with cluster(workers, args.local_cluster) as (client, scheduler_pid):
                    warm_cluster(client, sources[0], policy, tuple(args.risk) if args.risk else None)
                    got[workers] = timed(f"run {run}: dask, {workers} worker(s)", sources, tmp, args.risk, policy,
                                         scheduler_pid, dask=client)
            spin = machine_ceiling(order=order)
            anchor = spin[2] / spin[1]
            one, two = got[1], got[2]
            pair = {"rate": two["rate"] / one["rate"], "anchor": anchor, "cores": two["cores"] / one["cores"],
                    "per_cpu": two["per_cpu"] / one["per_cpu"], "cores1": one["cores"], "cores2": two["cores"],
                    "busy1": one["busy"], "busy2": two["busy"], "of_anchor": two["rate"] / one["rate"] / anchor,
                    "busy": two["busy"] / one["busy"], "inside": two["inside"] / one["inside"] / (anchor / 2),
                    "side2": two["writer_cores"] + two["sched_cores"], "rate1": one["rate"], "rate2": two["rate"],
                    "spin1": spin[1], "spin2": spin[2]}
            pairs.append(pair)
            print(f"run {run}: 2 vs 1 workers: {pair['rate']:.2f}x images/s (anchor: 2 vs 1 processes of pure Python"
                  f" work now {anchor:.2f}x); the workers got {two['cores']:.2f} vs"
                  f" {one['cores']:.2f} cores ({pair['cores']:.2f}x); images per worker-CPU-second"
                  f" {pair['per_cpu']:.2f}x (load {load()})", flush=True)
            print(f"run {run}: ratio / anchor {pair['of_anchor']:.2f} = busy 2 vs 1 {pair['busy']:.2f} (the workers'"
                  f" idle time) x CPU inside a job 2 vs 1, over the anchor's per process {pair['inside']:.2f}"
                  f" (the machine's share; with 2 workers the writer's process and the scheduler took"
                  f" {pair['side2']:.2f} cores) x images per worker-CPU-second {pair['per_cpu']:.2f}", flush=True)
        med = {k: median([p[k] for p in pairs]) for k in pairs[0]}
        rates = ", ".join(f"{p['rate']:.2f}x" for p in pairs)
        print(f"speed-up 2 vs 1 workers over {len(pairs)} runs: {rates};"
              f" median {med['rate']:.2f}x (load {load()})")
        pooled = sum(p["rate2"] for p in pairs) / sum(p["rate1"] for p in pairs)
        pooled_anchor = sum(p["spin2"] for p in pairs) / sum(p["spin1"] for p in pairs)
        print(f"  pooled over the runs (mean images/s of 2 workers over that of 1): {pooled:.2f}x; the anchor pooled"
              f" likewise {pooled_anchor:.2f}x; ratio / anchor {pooled / pooled_anchor:.2f}")
        anchors = ", ".join(f"{p['anchor']:.2f}x" for p in pairs)
        print(f"  anchor, 2 vs 1 processes of pure Python work measured after each run: {anchors};"
              f" median {med['anchor']:.2f}x: the machine's own ceiling for 2 vs 1 at that load")
        print(f"  cores the workers got (median): 1 worker {med['cores1']:.2f}, 2 workers {med['cores2']:.2f} of"
              f" {os.cpu_count()} ({med['cores2'] / (os.cpu_count() or 2) * 100:.0f} % of the machine); ratio"
              f" {med['cores']:.2f}x")
        print(f"  images per worker-CPU-second, 2 vs 1 (median): {med['per_cpu']:.2f}x (1.0: the second worker adds"
              f" no cost per image); workers busy {med['busy1'] * 100:.0f} % (1) and {med['busy2'] * 100:.0f} % (2)"
              f" of the wall time")
        print(f"  ratio / anchor (median) {med['of_anchor']:.2f}: where the gap comes from (each 1.0 at best, their"
              f" product the ratio / anchor): the workers' time inside a job 2 vs 1 {med['busy']:.2f} (below 1: a"
              f" worker waits for its next job more often with two); the CPU a worker got inside a job 2 vs 1 over"
              f" the anchor's per process {med['inside']:.2f} (below 1: the writer's process and the scheduler,"
              f" {med['side2']:.2f} cores with two workers, or others, took it); images per worker-CPU-second"
              f" {med['per_cpu']:.2f}")
        print(f"  so on two free cores of their own (2 cores each a worker, at this cost per image):"
              f" {2 * med['per_cpu']:.2f}x")
        print(f"writer's ceiling: {ceiling[f'batches of {args.batch}']:.1f} images/s in batches of {args.batch}"
              f" ({ceiling['per image']:.1f} one transaction per image; unpickling alone {ceiling['unpickle']:.0f}/s)")
        dask_runs = [r for r in RUNS if r["workers"]]
        a, w = median([r["worker_cpu"] for r in dask_runs]), median([r["writer_cpu"] for r in dask_runs])
        print(f"CPU per image (median of the Dask runs): a worker {a * 1000:.0f} ms, so about {1 / a:.1f} images/s per"
              f" worker on a core of its own; this process {w * 1000:.0f} ms (writer and client; with --local-cluster"
              f" the scheduler too), so the writer's process saturates at about {1 / w:.0f} images/s, {w / a * 100:.0f} % of a"
              f" worker's CPU per image: about {a / w:.0f} workers")


if __name__ == "__main__":
    main()
