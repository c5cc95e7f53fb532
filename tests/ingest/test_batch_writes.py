"""Issue 16, item 4: the writer only writes, in batches. Evaluators that need no database and the
redaction run where the layers were read; the writer stores a batch of images in one transaction, each
image under a savepoint: whole or not at all, a failing image failed alone with its reason, the report
tables rebuilt once per batch, the task items updated in that transaction, nothing of a batch kept when
the process dies in it."""
from __future__ import annotations

import pickle
import signal
import sqlite3
import subprocess
import sys

import pytest
from imagebuilder import File, ImageBuilder

SECRET = "ghp_" + "Zq7Xr2Lm9Vb4Nc8Kd1Fg6Hj3Tw5Ys0Pa1Qe2"  # a GitHub token shape the secret rules know
STATUS = ("Package: openssh-server\nStatus: install ok installed\nVersion: 1:8.4p1-5\nArchitecture: amd64\n\n"
          "Package: nmap\nStatus: install ok installed\nVersion: 7.91+dfsg1-1\nArchitecture: amd64\n\n")


def image(i: int) -> ImageBuilder:
    img = ImageBuilder().layer({"etc/os-release": 'ID=debian\nVERSION_ID="11"\n', "var/lib/dpkg/status": STATUS,
                                "etc/ssh/sshd_config": "PermitRootLogin yes\nPermitEmptyPasswords yes\n",
                                "bin/sh": File(b"\x7fELF" + b"s" * 300, mode=0o755)}, created_by="ADD rootfs /")
    img.layer({f"srv/app{i}/settings.env": f"GITHUB_TOKEN={SECRET}\n", f"srv/app{i}/{i}.txt": "x" * (10 + i)},
              created_by=f"COPY app{i}")
    img.env = img.env + [f"GITHUB_TOKEN={SECRET}"]
    return img


@pytest.fixture
def sources(tmp_path):
    out = []
    for i in range(3):
        image(i).write_oci_layout(tmp_path / f"oci{i}", ref=f"demo/app:{i}")
        out.append(f"oci:{tmp_path / f'oci{i}'}")
    return out


POLICY = {"compliance": {"use_defaults": False,
                          "forbid": [{"id": "no-nmap", "packages": ["nmap"], "reason": "scanner tools"}]}}


def analyzed(sources, policy=POLICY):
    """Each source's results as a worker makes them (no database)."""
    from stowaway.ingest.pipeline import Job, run_job

    return [r for s in sources for r in run_job(Job(None, policy, None, None, s))]


def stored(database):
    q = database.execute
    return {
        "scans": q("SELECT reference, status FROM scans ORDER BY reference").fetchall(),
        "images": [r[0] for r in q("SELECT reference FROM images ORDER BY reference")],
        "overview": [r[0] for r in q("SELECT reference FROM image_overview ORDER BY reference")],
    }


# --- (a) evaluation where the layers were read ------------------------------------------------------

def test_a_workers_result_is_judged_and_masked_before_it_leaves_the_worker(sources):
    res = analyzed(sources[:1])[0]
    assert res.status == "done" and res.evaluated == "worker"
    kinds = {f.kind for f in res.findings}
    assert {"unsafe_setting", "compliance", "secret"} <= kinds  # baselines and compliance ran here
    assert any(f.rule == "no-nmap" for f in res.findings)
    # the filesystem, entry lists and owned files stay behind; the raw token never travels
    assert res.fs is None and res.layer_entries == [] and res.owned_files == set() and res.records == {}
    assert SECRET.encode() not in pickle.dumps(res)
    assert not any(SECRET in e for e in res.spec.config["config"]["Env"])


def test_the_writer_runs_only_the_evaluators_that_need_the_database(sources, db, monkeypatch):
    from stowaway.analyzers.base_image import BaseImage
    from stowaway.analyzers.compliance import SoftwareCompliance
    from stowaway.analyzers.settings.configs import SettingsFiles
    from stowaway.analyzers.vulnerabilities.evaluator import Vulnerabilities
    from stowaway.ingest.writer import Writer

    results = analyzed(sources[:1])
    ran = []
    for cls in (SettingsFiles, SoftwareCompliance, BaseImage, Vulnerabilities):
        def spy(self, ctx, layers, _real=cls.collect, _name=cls.name):
            ran.append(_name)
            return _real(self, ctx, layers)

        monkeypatch.setattr(cls, "collect", spy)
    out = Writer(db, POLICY).write(results[0])
    assert out.status == "done"
    assert sorted(ran) == ["base-image", "vulnerabilities"]
    kinds = {r[0] for r in db.execute("SELECT DISTINCT kind FROM findings")}
    assert {"unsafe_setting", "compliance", "secret", "base_image"} <= kinds


def test_an_evaluator_consuming_a_database_evaluator_runs_in_the_writer_too():
    from stowaway.analyzers.base import Analyzer
    from stowaway.ingest.evaluate import Evaluator

    class NeedsDb(Analyzer):
        name, stage, needs_db, produces = "t-needs-db", "evaluate", True, ("facts",)

    class After(Analyzer):
        name, stage, consumes = "t-after", "evaluate", ("t-needs-db",)

    class Alone(Analyzer):
        name, stage = "t-alone", "evaluate"

    ev = Evaluator({}, [NeedsDb(), After(), Alone()])
    import stowaway.analyzers.base as base

    saved = dict(base._REGISTRY)
    try:
        base.load_all()
        base._REGISTRY.update({c.name: c for c in (NeedsDb, After, Alone)})
        here, there = ev.placement(["t-needs-db", "t-after", "t-alone"])
    finally:
        base._REGISTRY.clear()
        base._REGISTRY.update(saved)
    assert [a.name for a in here] == ["t-alone"]
    assert [a.name for a in there] == ["t-needs-db", "t-after"]


# --- (b) batch writes ---------------------------------------------------------------------------------

def test_a_batch_is_one_transaction_and_one_refresh_of_the_report_tables(sources, db):
    from stowaway.ingest.readmodel import MATERIALIZE, rebuild_all
    from stowaway.ingest.writer import Writer

    results = analyzed(sources)
    writer = Writer(db, POLICY)
    statements: list[str] = []
    db.conn.set_trace_callback(statements.append)
    out = writer.write_batch(results)
    db.conn.set_trace_callback(None)
    assert [o.status for o in out] == ["done"] * 3
    assert statements.count("COMMIT") == 1
    # the report rows of each image rebuilt once, the repositories' latest versions once for the batch
    assert sum(s.startswith("DELETE FROM [image_overview] WHERE [id] = ") for s in statements) == 3
    assert sum("UPDATE image_overview SET latest_version" in s for s in statements) == 1
    assert stored(db)["overview"] == ["demo/app:0", "demo/app:1", "demo/app:2"]
    tables = [*MATERIALIZE, "report_facet_counts"]
    before = {t: sorted(map(repr, db.execute(f"SELECT * FROM [{t}] WHERE 1 > 0").fetchall())) for t in tables}
    with db.conn:
        rebuild_all(db.conn)
    after = {t: sorted(map(repr, db.execute(f"SELECT * FROM [{t}] WHERE 1 > 0").fetchall())) for t in tables}
    assert before["report_facet_counts"]
    assert before == after  # the once-per-batch refresh built what a full rebuild builds, kept counts too
    assert db.execute("SELECT COUNT(*) FROM read_model_deferred").fetchone()[0] == 0


def test_one_images_failing_write_fails_it_alone_and_keeps_the_others(sources, db, monkeypatch):
    from stowaway.ingest import writer as writer_mod
    from stowaway.ingest.writer import Writer

    results = analyzed(sources)
    real = writer_mod.write_results

    def half_then_fail(conn, scan_id, image_id, ctx):
        real(conn, scan_id, image_id, ctx)  # its rows are in the transaction when it fails
        if conn.execute("SELECT reference FROM images WHERE id = ?", [image_id]).fetchone()[0] == "demo/app:1":
            raise sqlite3.IntegrityError("CHECK constraint failed: planted")

    monkeypatch.setattr(writer_mod, "write_results", half_then_fail)
    out = Writer(db, POLICY).write_batch(results)
    assert [o.status for o in out] == ["done", "failed", "done"]
    assert "demo/app:1" in out[1].error and "planted" in out[1].error and "Traceback" not in out[1].error
    got = stored(db)
    assert got["scans"] == [("demo/app:0", "done"), ("demo/app:1", "failed"), ("demo/app:2", "done")]
    assert got["images"] == got["overview"] == ["demo/app:0", "demo/app:2"]
    failed = out[1].scan_id
    # nothing of the failed image's scan is left: no rows of its scan, no layer only it had
    for table in ("packages", "findings", "scan_facts", "file_stats"):
        assert db.execute(f"SELECT COUNT(*) FROM {table} WHERE scan_id = ?", [failed]).fetchone()[0] == 0, table
    own = results[1].spec.layers[1].diff_id
    assert db.execute("SELECT COUNT(*) FROM layers WHERE diff_id = ?", [own]).fetchone()[0] == 0
    assert db.execute("SELECT error FROM scans WHERE id = ?", [failed]).fetchone()[0] == out[1].error


def _with_extra_findings(res, n: int, broken: bool = False):
    """RES with N more findings (secrets with details, compliance findings naming a package: more rows than
    one multi-row INSERT takes), and with BROKEN one in their middle titled 'planted' (see the test)."""
    import dataclasses

    secret = next(f for f in res.findings if f.kind == "secret")
    about = next(f for f in res.findings if f.package)
    extra = [dataclasses.replace(secret, path=f"/srv/extra/{i}.env", detail={**secret.detail, "line": i + 1})
             for i in range(n)]
    extra += [dataclasses.replace(about, title=f"{about.title} ({i})", rule=f"{about.rule}-{i}") for i in range(n)]
    if broken:
        extra[n + n // 2] = dataclasses.replace(extra[n + n // 2], title="planted")
    res.findings = list(res.findings) + extra
    return res


def test_many_findings_keep_their_links_and_a_failing_insert_fails_its_image_alone(sources, db):
    """The findings, packages and details of an image go in with a few multi-row INSERTs and ids handed
    out by the writer: every detail names its finding and every finding its scan's package, across the
    INSERTs' chunks; an image whose rows fail in the middle of one (a constraint: here a trigger planted
    for one finding) is failed with the reason and nothing of it kept, the batch's other images whole,
    their kept counts what a rebuild counts."""
    from stowaway.ingest.readmodel import rebuild_all
    from stowaway.ingest.writer import Writer

    results = analyzed(sources)
    _with_extra_findings(results[0], 150)
    _with_extra_findings(results[1], 90, broken=True)
    _with_extra_findings(results[2], 70)
    expected = {r.reference: (len(r.findings), {p.key for p in r.packages}) for r in results}
    extra = {"demo/app:0": 150, "demo/app:2": 70}
    writer = Writer(db, POLICY)
    db.conn.execute("CREATE TRIGGER planted BEFORE INSERT ON findings WHEN NEW.title = 'planted'"
                    " BEGIN SELECT RAISE(ABORT, 'planted constraint failed'); END")
    out = writer.write_batch(results)
    assert [o.status for o in out] == ["done", "failed", "done"]
    assert "demo/app:1" in out[1].error and "planted constraint failed" in out[1].error
    q = db.execute
    assert q("SELECT COUNT(*) FROM findings WHERE scan_id = ?", [out[1].scan_id]).fetchone()[0] == 0
    assert q("SELECT COUNT(*) FROM packages WHERE scan_id = ?", [out[1].scan_id]).fetchone()[0] == 0
    for o in (out[0], out[2]):
        findings, packages = expected[o.reference]
        # the worker's findings, and the writer's own evaluations' (the base image check)
        assert q("SELECT COUNT(*) FROM findings WHERE scan_id = ?", [o.scan_id]).fetchone()[0] >= findings
        assert {tuple(r) for r in q("SELECT ecosystem, name, version, coalesce(path, '') FROM packages"
                                    " WHERE scan_id = ?", [o.scan_id])} == {(k[0], k[1], k[2], k[3] or "") for k in packages}
        # a finding about a package names that package of its own scan; the compliance finding's own name too
        assert q("SELECT COUNT(*) FROM findings f JOIN packages p ON p.id = f.package_id WHERE f.scan_id = ?"
                 " AND p.scan_id <> f.scan_id", [o.scan_id]).fetchone()[0] == 0
        assert q("SELECT COUNT(*) FROM findings f JOIN compliance_details d ON d.finding_id = f.id"
                 " JOIN packages p ON p.id = f.package_id WHERE f.scan_id = ? AND d.name = p.name",
                 [o.scan_id]).fetchone()[0] == extra[o.reference] + 1
        # every secret's detail row is its own finding's: the line numbers planted above, each once
        lines = [r[0] for r in q("SELECT d.line FROM findings f JOIN secret_details d ON d.finding_id = f.id"
                                 " WHERE f.scan_id = ? AND f.path LIKE '/srv/extra/%' ORDER BY f.id", [o.scan_id])]
        assert lines == list(range(1, extra[o.reference] + 1))
        assert q("SELECT COUNT(*) FROM secret_details d JOIN findings f ON f.id = d.finding_id WHERE f.scan_id = ?"
                 " AND f.kind <> 'secret'", [o.scan_id]).fetchone()[0] == 0
    counts = sorted(q("SELECT * FROM report_facet_counts").fetchall())
    with db.conn:
        rebuild_all(db.conn)
    assert sorted(q("SELECT * FROM report_facet_counts").fetchall()) == counts


def test_a_batch_moves_its_repositorys_latest_version_as_a_rebuild_does(sources, db):
    """The latest-version flag of the repositories a batch writes to, set once for the batch (only the flags
    that change): a newer version written later takes it from the one before; an image of a repository
    whose name is another image's reference (no repository of its own) is grouped as the full rebuild
    groups it."""
    from stowaway.ingest.readmodel import rebuild_all, refresh_images
    from stowaway.ingest.writer import Writer

    results = analyzed(sources)
    writer = Writer(db, POLICY)

    def flags():
        return dict(db.execute("SELECT reference, latest_version FROM image_overview").fetchall())

    def rebuilt():
        with db.conn:
            db.conn.execute("SAVEPOINT rebuilt")
            rebuild_all(db.conn)
            out = flags()
            db.conn.execute("ROLLBACK TO rebuilt")
            db.conn.execute("RELEASE rebuilt")
        return out

    writer.write_batch(results[:2])
    assert flags() == {"demo/app:0": 0, "demo/app:1": 1} == rebuilt()
    writer.write_batch(results[2:])
    assert flags() == {"demo/app:0": 0, "demo/app:1": 0, "demo/app:2": 1} == rebuilt()
    # an image stored without a repository is its own group, keyed by its reference (refreshed as the writer
    # refreshes a batch: the trigger deferred, then refresh_images)
    with db.conn:
        db.conn.execute("INSERT INTO read_model_deferred (batch) VALUES (1)")
        db.conn.execute("UPDATE images SET repository = NULL WHERE reference = 'demo/app:0'")
        db.conn.execute("DELETE FROM read_model_deferred")
        refresh_images(db.conn, [r[0] for r in db.execute("SELECT id FROM images WHERE reference = 'demo/app:0'")])
    assert flags() == {"demo/app:0": 1, "demo/app:1": 0, "demo/app:2": 1} == rebuilt()


def test_a_workers_layers_arrive_encoded_and_the_layer_cache_holds_what_an_inline_scan_stores(sources, tmp_path):
    """A worker encodes its fresh layers' records for the layer cache (executors.pack_layer): the writer
    stores those bytes as they are, the same rows an in-process scan (records encoded by the writer) stores."""
    from stowaway.ingest.analysis import Analysis
    from stowaway.ingest.cache import unpack
    from stowaway.ingest.db import connect
    from stowaway.ingest.writer import Writer

    from_worker = analyzed(sources[:1])
    assert from_worker[0].fresh and all(not layer.records and layer.packed_records for layer in from_worker[0].fresh)
    inline = list(Analysis(None, POLICY, None, None, progress=False).source_results(sources[0]))
    assert all(layer.records and not layer.packed_records for layer in inline[0].fresh)
    stored_rows = []
    for name, results in (("worker", from_worker), ("inline", inline)):
        database = connect(str(tmp_path / f"{name}.db"))
        assert [o.status for o in Writer(database, POLICY).write_batch(results)] == ["done"]
        stored_rows.append(sorted(
            (diff_id, analyzer, version, fingerprint, count, repr(unpack(records)))
            for diff_id, analyzer, version, fingerprint, count, records in database.execute(
                "SELECT l.diff_id, a.analyzer, a.version, a.fingerprint, a.record_count, a.records"
                " FROM layer_analyses a JOIN layers l ON l.id = a.layer_id")))
    assert stored_rows[0] and stored_rows[0] == stored_rows[1]
    assert any(count for *_, count, _records in stored_rows[0])


def test_insert_values_writes_every_row_in_order_with_its_types(db):
    from stowaway.ingest.db import insert_values

    db.conn.execute("CREATE TABLE t (a, b, c)")
    for n in (0, 1, 7, 64, 333, 1000):
        db.conn.execute("DELETE FROM t")
        rows = [(i, f"s{i}", [None, 1.5, b"\x00b"][i % 3]) for i in range(n)]
        insert_values(db.conn, "INSERT INTO t (a, b, c)", rows)
        assert db.execute("SELECT a, b, c FROM t ORDER BY rowid").fetchall() == rows


def test_a_lost_batch_is_written_again_image_by_image(sources, db):
    from stowaway.ingest.writer import Writer

    results = analyzed(sources)
    calls = []

    def finish(outcomes):  # the task items' update; the first time, the disk is full
        calls.append([o.status for o in outcomes])
        if len(calls) == 1:
            raise sqlite3.OperationalError("database or disk is full")

    writer = Writer(db, POLICY)
    out = writer.write_batch(results, finish)
    assert [o.status for o in out] == ["done"] * 3
    assert calls == [["done"] * 3, ["done"] * 3]
    assert writer.stats["batch_fallbacks"] == 1
    assert stored(db)["scans"] == [("demo/app:0", "done"), ("demo/app:1", "done"), ("demo/app:2", "done")]
    assert stored(db)["overview"] == ["demo/app:0", "demo/app:1", "demo/app:2"]
    # evaluated once: the second write stored no finding twice
    assert db.execute("SELECT COUNT(*) FROM findings GROUP BY scan_id, fingerprint HAVING COUNT(*) > 1"
                      ).fetchall() == []


def test_an_interrupt_inside_a_batch_keeps_nothing_of_it(sources, db, monkeypatch):
    from stowaway.ingest import writer as writer_mod
    from stowaway.ingest.writer import Writer

    first = analyzed(sources[:1])
    Writer(db, POLICY).write(first[0])  # an earlier, committed scan
    results = analyzed(sources[1:])
    real = writer_mod.write_results
    calls = []

    def ctrl_c_on_the_second(conn, *args):
        real(conn, *args)
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(writer_mod, "write_results", ctrl_c_on_the_second)
    writer = Writer(db, POLICY)
    with pytest.raises(KeyboardInterrupt):
        writer.write_batch(results)
    assert not db.conn.in_transaction
    assert stored(db)["scans"] == [("demo/app:0", "done")]  # demo/app:1, written first in the batch, is gone too
    assert stored(db)["overview"] == ["demo/app:0"]


KILL_IN_BATCH = r"""
import os, signal, sys
from stowaway.ingest import writer
from stowaway.ingest.db import connect
from stowaway.ingest.pipeline import Job, run_job

results = [r for s in sys.argv[2:] for r in run_job(Job(None, {}, None, None, s))]
real, calls = writer.write_results, []

def write_then_die(conn, *args):
    real(conn, *args)
    calls.append(1)
    if len(calls) == 2:  # the first image is written and released, the second's rows are in: SIGKILL
        os.kill(os.getpid(), signal.SIGKILL)

writer.write_results = write_then_die
writer.Writer(connect(sys.argv[1])).write_batch(results)
"""


def test_a_process_killed_in_the_middle_of_a_batch_leaves_no_partial_scan(sources, tmp_path):
    from stowaway.ingest.db import connect
    from stowaway.ingest.writer import Writer

    path = str(tmp_path / "kill.db")
    database = connect(path)
    assert Writer(database, {}).write(analyzed(sources[:1], {})[0]).status == "done"
    database.conn.close()
    r = subprocess.run([sys.executable, "-c", KILL_IN_BATCH, path, *sources[1:]], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == -signal.SIGKILL, r.stderr[-1000:]
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert conn.execute("SELECT reference, status FROM scans").fetchall() == [("demo/app:0", "done")]
    assert [r[0] for r in conn.execute("SELECT reference FROM images")] == ["demo/app:0"]
    assert [r[0] for r in conn.execute("SELECT reference FROM image_overview")] == ["demo/app:0"]
    scan_ids = {r[0] for r in conn.execute("SELECT DISTINCT scan_id FROM findings")}
    assert scan_ids == {1}
    assert conn.execute("SELECT COUNT(*) FROM read_model_deferred").fetchone()[0] == 0


# --- the task runner: batches of workers' results, the items in the same transaction ------------------

def _count_batches(monkeypatch):
    from stowaway.ingest.writer import Writer

    sizes = []
    real = Writer.write_batch

    def spy(self, results, finish=None):
        sizes.append(len(results))
        return real(self, results, finish)

    monkeypatch.setattr(Writer, "write_batch", spy)
    return sizes


def test_the_task_runner_writes_workers_results_in_batches_with_their_items(tmp_path, sources, monkeypatch):
    from stowaway.ingest.db import connect
    from stowaway.ingest.pipeline import Scanner

    bad = tmp_path / "broken.tar"
    bad.write_bytes(b"not a tar at all" * 10)
    sizes = _count_batches(monkeypatch)
    database = connect(str(tmp_path / "batched.db"))
    policy = {**POLICY, "scan": {"write_batch": 16, "write_batch_seconds": 600}}
    out = Scanner(database, policy, progress=False, jobs=2).run([sources[0], f"docker-archive:{bad}", *sources[1:]])
    assert sorted(o.status for o in out) == ["done", "done", "done", "failed"]
    # nothing left running, so the batch is written at once (600 s is only the first image's longest wait)
    assert sum(sizes) == 4 and len(sizes) < 4
    items = database.execute("SELECT source, state, images, error FROM task_items ORDER BY id").fetchall()
    assert [s for _, s, _, _ in items] == ["done", "failed", "done", "done"]
    assert "broken.tar" in items[1][3]
    done = database.execute("SELECT done, failed, state FROM tasks").fetchone()
    assert done == (3, 1, "done")

    sizes.clear()
    database = connect(str(tmp_path / "one-by-one.db"))
    policy = {**POLICY, "scan": {"write_batch": 1}}
    out = Scanner(database, policy, progress=False, jobs=2).run(sources)
    assert sizes == [1, 1, 1] and [o.status for o in out] == ["done"] * 3


def test_the_last_jobs_results_are_written_while_the_last_job_runs(tmp_path, sources, monkeypatch):
    """When a worker has nothing left to start, what came back is written at once (not after the last job:
    the scan's end waited for its last batch), however long write_batch_seconds lets a batch wait."""
    import time

    from stowaway.analyzers.settings.crypt import libcrypt
    from stowaway.ingest.db import connect
    from stowaway.ingest.pipeline import Scanner
    from stowaway.ingest.writer import Writer

    # the last source is the slow one, by construction rather than by luck: its /etc/shadow holds an md5crypt
    # hash (fresh salt: no verdict cached) of a password in none of 200,000 candidates, so its weak-password
    # check runs to its 3 s budget while the first two sources take a fraction of that
    lib = libcrypt()
    slow = image(2)
    slow.layer({"etc/shadow": f"app:{lib.crypt(b'not-in-any-list-7Hq!', lib.gensalt('$1$'))}:19000:0:99999:7:::\n"},
               created_by="RUN useradd app")
    slow.write_oci_layout(tmp_path / "slow", ref="demo/app:2")
    writes: list[tuple[float, int]] = []
    real = Writer.write_batch

    def spy(self, results, finish=None):
        writes.append((time.time(), len(results)))
        return real(self, results, finish)

    monkeypatch.setattr(Writer, "write_batch", spy)
    database = connect(str(tmp_path / "tail.db"))
    policy = {**POLICY, "scan": {"write_batch": 16, "write_batch_seconds": 600},
              "passwords": {"extra": [f"filler-{i:06d}" for i in range(200_000)], "budget_seconds": 3, "workers": 1}}
    out = Scanner(database, policy, progress=False, jobs=2).run([*sources[:2], f"oci:{tmp_path / 'slow'}"])
    assert [o.status for o in out] == ["done"] * 3
    # two workers, three sources: once the third has started, a worker is idle and the first results go in
    assert len(writes) >= 2 and sum(n for _, n in writes) == 3
    last_finished = database.execute("SELECT MAX(worker_finished) FROM task_items").fetchone()[0]
    assert writes[0][0] < last_finished


def test_a_dask_cluster_scan_is_batched_and_stores_what_the_local_scan_stores(tmp_path, sources, monkeypatch):
    distributed = pytest.importorskip("distributed")
    from stowaway.ingest.db import connect
    from stowaway.ingest.pipeline import Scanner

    local = connect(str(tmp_path / "local.db"))
    Scanner(local, POLICY, progress=False).run(sources)
    sizes = _count_batches(monkeypatch)
    remote = connect(str(tmp_path / "dask.db"))
    policy = {**POLICY, "scan": {"write_batch_seconds": 600}}
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as cl, \
            distributed.Client(cl) as client:
        out = Scanner(remote, policy, progress=False, dask=client).run(sources)
    assert [o.status for o in out] == ["done"] * 3 and len(sizes) < 3

    def rows(database):
        return {
            "findings": database.execute("SELECT s.reference, f.kind, f.rule, f.path, f.fingerprint, f.suppressed"
                                         " FROM findings f JOIN scans s ON s.id = f.scan_id ORDER BY 1, 2, 3, 4, 5"
                                         ).fetchall(),
            "overview": database.execute("SELECT reference, packages, unsafe_settings, secrets, compliance,"
                                         " latest_version FROM image_overview ORDER BY 1").fetchall(),
        }

    assert rows(remote) == rows(local)
    assert rows(remote)["overview"][0][2:5] != (0, 0, 0)


def test_suppressions_apply_to_every_image_of_a_batch(tmp_path, sources):
    from stowaway.ingest.db import connect
    from stowaway.ingest.findings import Suppression, add_suppression
    from stowaway.ingest.pipeline import Scanner

    database = connect(str(tmp_path / "s.db"))
    with database.conn:
        add_suppression(database.conn, Suppression(rule="no-nmap", reason="allowed on build hosts"))
    policy = {**POLICY, "scan": {"write_batch_seconds": 600}}
    out = Scanner(database, policy, progress=False, jobs=2).run(sources)
    assert [o.status for o in out] == ["done"] * 3
    got = database.execute("SELECT f.suppressed, f.suppressed_reason, COUNT(*) FROM findings f WHERE f.kind ="
                           " 'compliance' GROUP BY 1, 2").fetchall()
    assert got == [(1, "allowed on build hosts", 3)]
    assert [r[0] for r in database.execute("SELECT compliance FROM image_overview")] == [0, 0, 0]


def test_a_suppression_in_force_leaves_one_refresh_of_each_images_report_rows(sources, db):
    """With a suppression covering the new scans' findings the batch still rebuilds each image's report rows
    once, at its end (matching the suppressions rebuilt them a second time, from the scan they replace), and
    they and the kept counts are what a full rebuild makes."""
    from stowaway.ingest.findings import Suppression, add_suppression
    from stowaway.ingest.readmodel import MATERIALIZE, rebuild_all
    from stowaway.ingest.writer import Writer

    writer = Writer(db, POLICY)
    writer.write_batch(analyzed(sources[:1]))  # demo/app:0 has a current scan the next batch's scan replaces
    with db.conn:
        add_suppression(db.conn, Suppression(rule="no-nmap", reason="allowed on build hosts"))
    statements: list[str] = []
    db.conn.set_trace_callback(statements.append)
    out = writer.write_batch(analyzed(sources))
    db.conn.set_trace_callback(None)
    assert [o.status for o in out] == ["done"] * 3
    assert sum(s.startswith("DELETE FROM [image_overview] WHERE [id] = ") for s in statements) == 3
    assert db.execute("SELECT COUNT(*) FROM findings f JOIN images i ON f.scan_id = i.last_scan_id"
                      " WHERE f.rule = 'no-nmap' AND f.suppressed = 1").fetchone()[0] == 3
    # a kept count that went down to 0 stays as a row of 0 (a rebuild makes none): compared without them
    tables = {**{t: "1 > 0" for t in MATERIALIZE}, "report_facet_counts": "n <> 0"}
    before = {t: sorted(map(repr, db.execute(f"SELECT * FROM [{t}] WHERE {w}").fetchall())) for t, w in tables.items()}
    with db.conn:
        rebuild_all(db.conn)
    assert before == {t: sorted(map(repr, db.execute(f"SELECT * FROM [{t}] WHERE {w}").fetchall()))
                      for t, w in tables.items()}


def test_write_batch_caps_the_images_of_one_transaction(tmp_path, sources, monkeypatch):
    from stowaway.ingest.db import connect
    from stowaway.ingest.pipeline import Scanner

    for i in range(3, 6):
        image(i).write_oci_layout(tmp_path / f"oci{i}", ref=f"demo/app:{i}")
    sizes = _count_batches(monkeypatch)
    database = connect(str(tmp_path / "cap.db"))
    out = Scanner(database, {**POLICY, "scan": {"write_batch": 2, "write_batch_seconds": 600}}, progress=False,
                  jobs=2).run(sources + [f"oci:{tmp_path / f'oci{i}'}" for i in range(3, 6)])
    assert [o.status for o in out] == ["done"] * 6
    assert max(sizes) == 2 and sum(sizes) == 6


def test_the_latest_version_does_not_depend_on_the_order_images_were_written(tmp_path, sources, monkeypatch):
    """Images of one repository created at the same moment (one build tagged twice, reproducible builds):
    the latest version is told apart by reference, so a scan in another order (Dask finishes jobs in any
    order) flags the same image, as the overview, the exports and a rescan do."""
    from stowaway.ingest import exports
    from stowaway.ingest.db import connect
    from stowaway.ingest.pipeline import Scanner

    flags = []
    for n, order in enumerate((sources, sources[::-1])):
        database = connect(str(tmp_path / f"order{n}.db"))
        Scanner(database, POLICY, progress=False).run(order)
        overview = database.execute("SELECT reference, latest_version FROM image_overview ORDER BY 1").fetchall()
        _, baseline = exports.rows(database, "baseline", latest_only=True)
        flags.append((overview, sorted({row[0] for row in baseline})))
    assert flags[0] == flags[1]
    assert [r for r, latest in flags[0][0] if latest] == ["demo/app:2"]  # equal times: the greatest reference
    assert flags[0][1] == ["demo/app:2"]


def _hold_write_lock(tmp_path):
    """Another writer (a bulk rematch's long transaction): a connection holding the write lock."""
    other = sqlite3.connect(str(tmp_path / "test.db"), isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    return other


def test_a_batch_waits_for_another_writers_lock_then_writes(sources, db, tmp_path):
    import threading

    from stowaway.ingest.writer import Writer

    results = analyzed(sources)
    events: list[str] = []
    writer = Writer(db, {**POLICY, "scan": {"write_lock_wait_seconds": 120}}, on_event=lambda k, d: events.append(k))
    assert writer.write_batch(results[:1])[0].status == "done"  # schema steps done before the lock is taken
    db.conn.execute("PRAGMA busy_timeout = 50")  # one attempt gives up long before the other writer finishes
    other = _hold_write_lock(tmp_path)
    release = threading.Timer(1.0, other.rollback)
    release.start()
    try:
        out = writer.write_batch(results[1:])
    finally:
        release.join()
        other.close()
    assert [o.status for o in out] == ["done", "done"]
    assert "write_lock_wait" in events  # it said that it waited
    assert writer.stats["batch_fallbacks"] == 0
    assert stored(db)["scans"] == [("demo/app:0", "done"), ("demo/app:1", "done"), ("demo/app:2", "done")]


def test_past_the_lock_wait_a_batchs_images_fail_with_that_reason_and_nothing_is_kept(sources, db, tmp_path):
    from stowaway.ingest.writer import Writer

    results = analyzed(sources)
    writer = Writer(db, {**POLICY, "scan": {"write_lock_wait_seconds": 0.3}})
    db.conn.execute("PRAGMA busy_timeout = 50")
    other = _hold_write_lock(tmp_path)
    settled: list[list[str]] = []
    try:
        out = writer.write_batch(results, lambda outcomes: settled.append([o.status for o in outcomes]))
    finally:
        other.rollback()
        other.close()
    assert [o.status for o in out] == ["failed"] * 3
    assert settled == [["failed"] * 3]  # the caller's bookkeeping (a task's items) learns of the failures
    for o, res in zip(out, results):  # one sentence each, naming the cause and the setting; no retry alone
        assert o.error.startswith(f"{res.reference}: not written: another writer") and "\n" not in o.error
        assert "write_lock_wait_seconds = 0" in o.error and "database is locked" not in o.error
    assert writer.stats["batch_fallbacks"] == 0
    assert stored(db)["scans"] == []
