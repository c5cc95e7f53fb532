"""Local worker processes and a Dask cluster analyze; the one writer stores: same database either way."""
import pytest
from imagebuilder import WHITEOUT, File, ImageBuilder, Symlink


def images(tmp_path, n=3):
    """`n` small images sharing a base layer, in one OCI layout each."""
    base = {"etc/os-release": 'ID=debian\nVERSION_ID="11"\nPRETTY_NAME="Debian GNU/Linux 11"\n',
            "bin/sh": File(b"\x7fELF" + b"s" * 300, mode=0o755), "etc/motd": "hi\n"}
    sources = []
    for i in range(n):
        img = ImageBuilder().layer(base, created_by="ADD base /")
        img.layer({"etc/.wh.motd": WHITEOUT, f"app/{i}.txt": "x" * (100 + i), "app/link": Symlink(f"{i}.txt")},
                  created_by=f"COPY app {i}")
        img.write_oci_layout(tmp_path / f"oci{i}", ref=f"demo/app:{i}")
        sources.append(f"oci:{tmp_path / f'oci{i}'}")
    return sources


def contents(database):
    """What a scan stored, without ids and times: images, layers, packages, findings, file statistics."""
    q = database.execute
    return {
        "images": q("SELECT reference, manifest_digest, platform, os_family, os_version, size FROM images"
                    " ORDER BY reference").fetchall(),
        "layers": q("SELECT diff_id, digest, size, entries FROM layers ORDER BY diff_id").fetchall(),
        "image_layers": q("SELECT i.reference, il.position, l.diff_id FROM image_layers il JOIN images i ON"
                          " i.id = il.image_id JOIN layers l ON l.id = il.layer_id ORDER BY 1, 2").fetchall(),
        "analyses": q("SELECT l.diff_id, a.analyzer, a.version, a.record_count FROM layer_analyses a JOIN layers l"
                      " ON l.id = a.layer_id ORDER BY 1, 2").fetchall(),
        "packages": q("SELECT i.reference, p.ecosystem, p.name, p.version, p.path FROM packages p JOIN images i ON"
                      " i.id = p.image_id ORDER BY 1, 2, 3, 5").fetchall(),
        "findings": q("SELECT i.reference, f.kind, f.rule, f.path, f.fingerprint FROM findings f JOIN images i ON"
                      " i.id = f.image_id ORDER BY 1, 2, 3, 4, 5").fetchall(),
        "file_stats": q("SELECT i.reference, s.total_files, s.total_size, s.directories, s.symlinks FROM file_stats s"
                        " JOIN images i ON i.id = s.image_id ORDER BY 1").fetchall(),
        "largest": q("SELECT s.reference, l.rank, l.path, l.size, l.layer_index FROM largest_files l JOIN scans s ON"
                     " s.id = l.scan_id ORDER BY 1, 2").fetchall(),
        "layer_stats": q("SELECT s.reference, l.layer_index, l.files, l.visible_files, l.whiteouts FROM layer_stats l"
                         " JOIN scans s ON s.id = l.scan_id ORDER BY 1, 2").fetchall(),
        "scans": q("SELECT reference, status, layers_read + layers_cached FROM scans ORDER BY reference").fetchall(),
    }


def scan_with(tmp_path, name, sources, policy=None, **kw):
    from stowaway.ingest.db import connect
    from stowaway.ingest.pipeline import Scanner

    database = connect(str(tmp_path / f"{name}.db"))
    outcomes = Scanner(database, policy or {}, progress=False, **kw).run(sources)
    return database, outcomes


def test_local_processes_store_what_the_sequential_scan_stores(tmp_path):
    sources = images(tmp_path)
    seq, seq_out = scan_with(tmp_path, "seq", sources)
    par, par_out = scan_with(tmp_path, "par", sources, jobs=2)
    assert [o.status for o in par_out] == ["done"] * 3
    assert contents(par)["file_stats"][0][1:3] == (3, 60 + 304 + 100)  # os-release, sh, 0.txt (motd whited out)
    assert contents(par) == contents(seq)


def test_dask_cluster_stores_what_the_local_scan_stores(tmp_path):
    distributed = pytest.importorskip("distributed")
    sources = images(tmp_path)
    local, _ = scan_with(tmp_path, "local", sources, jobs=2)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cl, \
            distributed.Client(cl) as client:
        remote, out = scan_with(tmp_path, "dask", sources, dask=client)
    assert sorted(o.reference for o in out) == ["demo/app:0", "demo/app:1", "demo/app:2"]
    assert contents(remote) == contents(local)
    assert contents(remote)["packages"] == contents(local)["packages"]


def test_each_dask_worker_thread_has_its_next_job_waiting_unless_a_concurrency_was_asked_for(tmp_path):
    """A worker that finishes a job starts the next one at once, instead of idling while the writer
    receives the result, writes a batch and submits more: one task ahead per worker thread, and as many
    sources in flight as full tasks carry (dask_sources_per_task), even once the tasks get smaller at the
    scan's end. An explicit concurrency (--jobs) stays an exact bound."""
    distributed = pytest.importorskip("distributed")
    sources = images(tmp_path, 20)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cl, \
            distributed.Client(cl) as client:
        ahead, out = scan_with(tmp_path, "ahead", sources, dask=client)
        single, single_out = scan_with(tmp_path, "single", sources, dask=client,
                                       policy={"scan": {"dask_sources_per_task": 1}})
        bounded, bounded_out = scan_with(tmp_path, "bounded", sources, dask=client, jobs=2)
    assert [o.status for o in out] == [o.status for o in single_out] == [o.status for o in bounded_out] == ["done"] * 20
    assert ahead.execute("SELECT max_running FROM tasks").fetchone()[0] == 16  # 2 threads + 2 ahead, 4 sources each
    assert single.execute("SELECT max_running FROM tasks").fetchone()[0] == 4  # 2 running, 2 waiting at the scheduler
    assert bounded.execute("SELECT max_running FROM tasks").fetchone()[0] == 2
    assert contents(ahead) == contents(bounded) == contents(single)


def test_a_failing_source_fails_alone_in_workers(tmp_path):
    sources = images(tmp_path, 2)
    bad = tmp_path / "broken.tar"
    bad.write_bytes(b"not a tar at all" * 10)
    database, out = scan_with(tmp_path, "mixed", [sources[0], f"docker-archive:{bad}", sources[1]], jobs=2)
    by_status = sorted((o.status, o.reference) for o in out)
    assert [s for s, _ in by_status] == ["done", "done", "failed"]
    failed = database.execute("SELECT error FROM scans WHERE status = 'failed'").fetchone()[0]
    assert "broken.tar" in failed


def test_cli_scan_on_a_dask_scheduler_address(tmp_path):
    import json
    import subprocess
    import sys

    distributed = pytest.importorskip("distributed")
    sources = images(tmp_path, 2)
    db = str(tmp_path / "cli.db")
    policy = tmp_path / "policy.toml"
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False, protocol="tcp",
                                  dashboard_address=None) as cluster:
        policy.write_text(f'[scan]\ndask = "{cluster.scheduler_address}"\n')
        r = subprocess.run([sys.executable, "-m", "stowaway.ingest.cli", "scan", *sources, "--db", db, "--config",
                            str(policy), "--risk", "files", "--no-progress"], capture_output=True, text=True, timeout=180)
        assert r.returncode == 0, r.stderr
        assert "run_job" in cluster.scheduler.task_prefixes  # the analysis ran on the cluster
    assert r.stderr.count("scanned demo/app:") == 2
    r = subprocess.run([sys.executable, "-m", "stowaway.ingest.cli", "tasks", "--db", db, "--json"],
                       capture_output=True, text=True, timeout=60)
    task = json.loads(r.stdout.splitlines()[0])
    assert (task["executor"], task["state"], task["done"]) == ("dask", "done", 2)
    r = subprocess.run([sys.executable, "-m", "stowaway.ingest.cli", "scan", sources[0], "--db", db, "--dask",
                        "tcp://127.0.0.1:1", "--set", "scan.dask_timeout=2", "--no-progress"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "cannot reach the Dask scheduler" in r.stderr


def test_a_worker_that_cannot_see_the_database_reads_everything_and_the_writer_still_stores_it(tmp_path):
    from stowaway.ingest.db import connect
    from stowaway.ingest.pipeline import Job, Writer, run_job

    sources = images(tmp_path, 2)
    seq, _ = scan_with(tmp_path, "seq", sources)
    database = connect(str(tmp_path / "remote.db"))
    writer = Writer(database, {})
    for source in sources:
        results = run_job(Job(str(tmp_path / "elsewhere" / "not-here.db"), {}, None, None, source))
        assert [r.layers_read for r in results] == [2]  # no cache to consult: both layers read
        assert writer.write(results[0]).status == "done"
    got, want = contents(database), contents(seq)
    for key in ("images", "layers", "packages", "findings", "file_stats", "largest", "layer_stats"):
        assert got[key] == want[key], key


def _task_items(database):
    return database.execute("SELECT source, state, attempts, images, error FROM task_items ORDER BY id").fetchall()


def test_several_sources_go_in_one_dask_task_each_written_and_settled_as_its_own(tmp_path, monkeypatch):
    """Several sources a task (run_jobs) while plenty are queued, fewer as the queue drains: the stored scans
    and each source's task item are what one task per source gives; a broken source in a group fails alone,
    with its reason."""
    distributed = pytest.importorskip("distributed")
    from stowaway.ingest import dask_runner

    sources = images(tmp_path, 11)
    bad = tmp_path / "broken.tar"
    bad.write_bytes(b"not a tar at all" * 10)
    sources.insert(3, f"docker-archive:{bad}")
    groups = []
    real = dask_runner.DaskExecutor.submit_group

    def spy(self, jobs):
        groups.append([job.source for job in jobs])
        return real(self, jobs)

    monkeypatch.setattr(dask_runner.DaskExecutor, "submit_group", spy)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cl, \
            distributed.Client(cl) as client:
        grouped, out = scan_with(tmp_path, "grouped", sources, dask=client,
                                 policy={"scan": {"dask_sources_per_task": 2}})
        single, single_out = scan_with(tmp_path, "single", sources, dask=client,
                                       policy={"scan": {"dask_sources_per_task": 1}})
        assert "run_jobs" in cl.scheduler.task_prefixes
    # 12 queued, 2 worker threads, 2 tasks each (one running, one ahead): 2 sources a task while at least two
    # tasks' worth per thread are queued (8 of them), then one a task: the last ones spread over the workers
    assert groups == [sources[i:i + 2] for i in range(0, 8, 2)]
    assert sorted(o.status for o in out) == sorted(o.status for o in single_out) == ["done"] * 11 + ["failed"]
    items = _task_items(grouped)
    assert items == _task_items(single)
    assert [i[1] for i in items] == ["done"] * 3 + ["failed"] + ["done"] * 8
    assert "broken.tar" in items[3][4] and all(i[3] == 1 for i in items)
    assert contents(grouped) == contents(single)


def test_a_group_whose_task_fails_as_a_whole_runs_each_source_again_alone(tmp_path, monkeypatch):
    """A worker lost while it runs a group fails the whole task; each of its sources then runs in a task of
    its own (without counting as an attempt), so a source that kills its worker cannot fail its neighbours."""
    distributed = pytest.importorskip("distributed")
    from stowaway.ingest import dask_runner

    sources = images(tmp_path, 8)
    lost, alone = [], []
    real_group, real_submit = dask_runner.DaskExecutor.submit_group, dask_runner.DaskExecutor.submit

    def lose_first_group(self, jobs):
        if lost:
            return real_group(self, jobs)
        lost.extend(job.source for job in jobs)
        return self.client.submit(_worker_lost, pure=False)

    def submit(self, job):
        alone.append(job.source)
        return real_submit(self, job)

    monkeypatch.setattr(dask_runner.DaskExecutor, "submit_group", lose_first_group)
    monkeypatch.setattr(dask_runner.DaskExecutor, "submit", submit)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cl, \
            distributed.Client(cl) as client:
        database, out = scan_with(tmp_path, "lost", sources, dask=client, policy={"scan": {"dask_sources_per_task": 2}})
    assert lost == sources[:2] and set(lost) <= set(alone)
    assert [o.status for o in out] == ["done"] * 8
    assert [i[1:4] for i in _task_items(database)] == [("done", 1, 1)] * 8


def _worker_lost():
    raise OSError("the worker running this task was lost")
