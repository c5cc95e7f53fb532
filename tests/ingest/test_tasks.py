"""Scan tasks: per-registry hourly limits on a fake clock, concurrency bounds, retries, progress while
running, scan again. Images come from a local HTTP registry (http.server) and OCI layouts."""
import json
import socket
import subprocess
import sys

import pytest
from imagebuilder import ImageBuilder
from registry_server import Misbehaving, serve_image

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


class FakeClock:
    def __init__(self, t=T0):
        self.t = t
        self.slept = []

    def now(self):
        return self.t

    def sleep(self, seconds):
        self.slept.append(seconds)
        self.t += seconds


@pytest.fixture
def server():
    srv = Misbehaving()
    yield srv
    srv.stop()


def image(n) -> ImageBuilder:
    return ImageBuilder().layer({"etc/os-release": "ID=alpine\nVERSION_ID=3.19.1\n", f"app/{n}": "x" * (10 + n)})


def layouts(tmp_path, n):
    out = []
    for i in range(n):
        image(100 + i).write_oci_layout(tmp_path / f"oci{i}", ref=f"local/app:{i}")
        out.append(f"oci:{tmp_path / f'oci{i}'}")
    return out


def database(tmp_path):
    from stowaway.ingest.db import connect

    return connect(str(tmp_path / "t.db"))


def third_party(db, host, per_hour):
    from stowaway.ingest import sync

    sync.ensure(db)
    with db.conn:
        db.conn.execute("INSERT INTO registries (host, type, images_per_hour) VALUES (?, 'third-party', ?)",
                        [host, per_hour])


POLICY = {"source_options": {"scheme": "http", "retries": 0}}


def test_hourly_limit_defers_the_rest_to_later_hours(tmp_path, server):
    from stowaway.ingest.tasks import TaskRunner, create_task, run_pending

    for i in range(5):
        serve_image(server, "vendor/app", str(i), image(i))
    db = database(tmp_path)
    third_party(db, server.host, 2)
    clock = FakeClock()
    remote = [f"registry:{server.host}/vendor/app:{i}" for i in range(5)]
    local = layouts(tmp_path, 2)
    task = create_task(db, remote + local, risks=["files"], clock=clock)
    summary = TaskRunner(db, POLICY, clock).run(task)
    assert summary.state == "queued" and summary.waiting == 3
    # two from the limited registry, and both local layouts: the limit is per registry
    assert sorted(o.reference for o in summary.outcomes) == sorted(
        [f"{server.host}/vendor/app:0", f"{server.host}/vendor/app:1", "local/app:0", "local/app:1"])
    assert summary.next_at == T0 + 3600
    row = db.execute("SELECT state, done, waiting, next_run_at FROM tasks WHERE id=?", [task]).fetchone()
    assert row == ("queued", 4, 3, "2026-01-01T01:00:00Z")

    clock.t = T0 + 1800  # half an hour later nothing is due
    assert run_pending(db, POLICY, clock) == []
    clock.t = T0 + 3600
    [s] = run_pending(db, POLICY, clock)
    assert (len(s.outcomes), s.waiting, s.next_at) == (2, 1, T0 + 7200)
    clock.t = T0 + 7200
    [s] = run_pending(db, POLICY, clock)
    assert (s.state, len(s.outcomes), s.waiting) == ("done", 1, 0)
    starts = sorted(r[0] for r in db.execute("SELECT started_ts FROM task_items WHERE registry=?", [server.host]))
    assert starts == [T0, T0, T0 + 3600, T0 + 3600, T0 + 7200]
    assert all(b - a >= 3600 for a, b in zip(starts, starts[2:]))  # never three inside one hour
    assert db.execute("SELECT COUNT(*) FROM scans WHERE status='done'").fetchone()[0] == 7


def test_waiting_on_the_clock_finishes_in_one_run_and_the_policy_limit_applies_to_any_registry(tmp_path, server):
    from stowaway.ingest.tasks import HEARTBEAT_EVERY, TaskRunner, create_task

    for i in range(3):
        serve_image(server, "vendor/app", str(i), image(i))
    db = database(tmp_path)
    clock = FakeClock()
    policy = {**POLICY, "registries": {server.host: {"images_per_hour": 1}}}
    task = create_task(db, [f"registry:{server.host}/vendor/app:{i}" for i in range(3)], risks=["files"], clock=clock)
    summary = TaskRunner(db, policy, clock).run(task, wait=3 * 3600)
    assert (summary.state, len(summary.outcomes)) == ("done", 3)
    # slept on the fake clock, not the real one, in naps short enough to see a cancel and keep the heartbeat
    assert sum(clock.slept) == 7200 and max(clock.slept) <= HEARTBEAT_EVERY


def test_concurrency_never_exceeds_the_setting(tmp_path):
    from stowaway.ingest.tasks import TaskRunner, create_task

    db = database(tmp_path)
    task = create_task(db, layouts(tmp_path, 6), risks=["files"], concurrency=2)
    summary = TaskRunner(db, {}).run(task)
    assert summary.state == "done" and len(summary.outcomes) == 6
    assert summary.max_running == 2
    intervals = db.execute("SELECT worker_started, worker_finished FROM task_items WHERE task_id=?", [task]).fetchall()
    assert all(a and b and a <= b for a, b in intervals)
    assert max_overlap(intervals) <= 2  # measured inside the workers
    assert db.execute("SELECT max_running, progress FROM tasks WHERE id=?", [task]).fetchone() == (2, 1.0)


def test_concurrency_bounds_a_bigger_dask_cluster(tmp_path):
    distributed = pytest.importorskip("distributed")
    from stowaway.ingest.tasks import TaskRunner, create_task

    db = database(tmp_path)
    task = create_task(db, layouts(tmp_path, 6), risks=["files"], concurrency=2, executor="dask")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=4, processes=False, dashboard_address=None) as c, \
            distributed.Client(c) as client:
        summary = TaskRunner(db, {}, dask=client).run(task)
    assert summary.state == "done" and summary.max_running == 2
    intervals = db.execute("SELECT worker_started, worker_finished FROM task_items WHERE task_id=?", [task]).fetchall()
    assert max_overlap(intervals) <= 2


def max_overlap(intervals):
    events = sorted([(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals], key=lambda e: (e[0], e[1]))
    best = cur = 0
    for _, d in events:
        cur += d
        best = max(best, cur)
    return best


def test_failures_are_retried_per_task_and_never_block_the_others(tmp_path, server):
    from stowaway.ingest.tasks import TaskRunner, create_task

    serve_image(server, "vendor/flaky", "1", image(1))
    serve_image(server, "vendor/good", "1", image(2))
    good = server.routes["/v2/vendor/flaky/manifests/1"]
    answers = iter([(500, {}, b"")])
    server.routes["/v2/vendor/flaky/manifests/1"] = lambda req: next(answers, None) or good(req)
    server.routes["/v2/vendor/broken/manifests/1"] = lambda req: (500, {}, b"")
    db = database(tmp_path)
    clock = FakeClock()
    sources = [f"registry:{server.host}/vendor/{r}:1" for r in ("flaky", "broken", "good")]
    task = create_task(db, sources, risks=["files"], retries=1, retry_delay=60, clock=clock)
    summary = TaskRunner(db, POLICY, clock).run(task, wait=600)
    items = {r[0].split("/")[-1]: r[1:] for r in db.execute(
        "SELECT source, state, attempts, error FROM task_items WHERE task_id=?", [task])}
    assert items["flaky:1"][:2] == ("done", 2)
    assert items["good:1"][:2] == ("done", 1)
    assert items["broken:1"][:2] == ("failed", 2) and "500" in items["broken:1"][2]
    assert sum(clock.slept) == 60  # the retry delay, on the fake clock
    row = db.execute("SELECT state, done, failed, waiting FROM tasks WHERE id=?", [task]).fetchone()
    assert row == ("done", 2, 1, 0)
    assert summary.state == "done"


def test_progress_is_visible_to_another_connection_while_the_task_runs(tmp_path):
    from stowaway.ingest.db import connect
    from stowaway.ingest.tasks import TaskRunner, create_task

    db = database(tmp_path)
    task = create_task(db, layouts(tmp_path, 3), risks=["files"])
    reader = connect(str(tmp_path / "t.db"))
    seen = []

    def look(item_id, state, error):
        seen.append(reader.execute("SELECT state, done, progress FROM tasks WHERE id=?", [task]).fetchone())

    TaskRunner(db, {}, on_item=look).run(task)
    assert [s[0] for s in seen] == ["running"] * 3
    assert [s[1] for s in seen] == [0, 1, 2]  # counted after each item is recorded
    assert reader.execute("SELECT state, progress FROM tasks WHERE id=?", [task]).fetchone() == ("done", 1.0)


def test_cli_scan_creates_a_task_and_rescan_scans_one_image_again(tmp_path):
    a, b = image(1), image(2)
    a.write_oci_layout(tmp_path / "oci", ref="demo/a:1")
    b.write_oci_layout(tmp_path / "oci", ref="demo/b:1", append=True)
    db = str(tmp_path / "cli.db")
    cli = [sys.executable, "-m", "stowaway.ingest.cli"]
    r = subprocess.run(cli + ["scan", f"oci:{tmp_path / 'oci'}", "--db", db, "--jobs", "2", "--no-progress",
                              "--risk", "files"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(cli + ["rescan", "demo/b:1", "--db", db, "--risk", "files"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert "rescanned demo/b:1" in r.stderr and "0 layers read, 1 cached" in r.stderr
    r = subprocess.run(cli + ["tasks", "--db", db, "--json"], capture_output=True, text=True, timeout=60)
    tasks = [json.loads(line) for line in r.stdout.splitlines()]
    assert [(t["kind"], t["state"], t["total"], t["done"]) for t in tasks] == [("rescan", "done", 1, 1),
                                                                             ("manual", "done", 1, 1)]
    r = subprocess.run(cli + ["tasks", "show", str(tasks[0]["id"]), "--db", db, "--json"], capture_output=True,
                       text=True, timeout=60)
    assert json.loads(r.stdout)["source"] == f"oci:{tmp_path / 'oci'}:demo/b:1"
    r = subprocess.run(cli + ["rescan", "nope:1", "--db", db], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "no such image" in r.stderr


def test_an_interrupted_task_puts_its_running_items_back(tmp_path):
    from stowaway.ingest.tasks import TaskRunner, create_task

    db = database(tmp_path)
    task = create_task(db, layouts(tmp_path, 2), risks=["files"])
    with db.conn:  # as a killed run leaves it
        db.conn.execute("UPDATE tasks SET state='running' WHERE id=?", [task])
        db.conn.execute("UPDATE task_items SET state='running', attempts=1 WHERE task_id=?", [task])
    summary = TaskRunner(db, {}).run(task)
    assert summary.state == "done" and len(summary.outcomes) == 2


def test_cli_scan_over_the_hourly_limit_says_what_it_deferred(tmp_path, server):
    for i in range(3):
        serve_image(server, "vendor/app", str(i), image(i))
    policy = tmp_path / "policy.toml"
    policy.write_text(f'[registries."{server.host}"]\nscheme = "http"\nimages_per_hour = 2\n')
    db = str(tmp_path / "cli.db")
    cli = [sys.executable, "-m", "stowaway.ingest.cli"]
    r = subprocess.run(cli + ["scan", *[f"registry:{server.host}/vendor/app:{i}" for i in range(3)], "--db", db,
                              "--config", str(policy), "--risk", "files", "--no-progress"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("scanned ") == 2
    assert "1 image(s) deferred by a per-registry hourly limit until" in r.stderr
    r = subprocess.run(cli + ["tasks", "--db", db, "--json"], capture_output=True, text=True, timeout=60)
    task = json.loads(r.stdout.splitlines()[0])
    assert (task["state"], task["done"], task["waiting"]) == ("queued", 2, 1) and task["next_run_at"]
    # run-once an instant later: nothing is due yet, so nothing more is scanned
    r = subprocess.run(cli + ["schedule", "run-once", "--db", db, "--config", str(policy)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0 and r.stderr == ""


def states(db, task):
    return (db.execute("SELECT state FROM tasks WHERE id=?", [task]).fetchone()[0],
            [r[0] for r in db.execute("SELECT state FROM task_items WHERE task_id=? ORDER BY id", [task])])


def test_cancel_a_running_task_finishes_the_image_in_progress_and_starts_no_other(tmp_path):
    from stowaway.ingest.db import connect
    from stowaway.ingest.tasks import TaskRunner, cancel_task, create_task

    db = database(tmp_path)
    task = create_task(db, layouts(tmp_path, 3), risks=["files"])
    user = connect(str(tmp_path / "t.db"))  # the user, from another connection (the CLI or the console)
    said = []

    def cancel_after_the_first(item_id, state, error):
        if not said:
            said.append(cancel_task(user, task))

    summary = TaskRunner(db, {}, on_item=cancel_after_the_first).run(task)
    assert said == [f"task {task}: cancelling: 2 queued image(s) will not start; the 0 in progress finish first"]
    assert summary.state == "cancelled" and len(summary.outcomes) == 1
    assert states(user, task) == ("cancelled", ["done", "cancelled", "cancelled"])
    assert user.execute("SELECT progress, waiting FROM tasks WHERE id=?", [task]).fetchone() == (1.0, 0)
    assert user.execute("SELECT COUNT(*) FROM scans WHERE status='done'").fetchone()[0] == 1
    # a cancelled task stays cancelled: running it again scans nothing
    assert TaskRunner(db, {}).run(task).outcomes == []
    with pytest.raises(Exception, match=f"task {task} is already cancelled: nothing to cancel"):
        cancel_task(user, task)


def test_cancel_wakes_a_task_waiting_on_an_hourly_limit(tmp_path, server):
    from stowaway.ingest.db import connect
    from stowaway.ingest.tasks import TaskRunner, cancel_task, create_task

    for i in range(3):
        serve_image(server, "vendor/app", str(i), image(i))
    db = database(tmp_path)
    task = create_task(db, [f"registry:{server.host}/vendor/app:{i}" for i in range(3)], risks=["files"])
    user = connect(str(tmp_path / "t.db"))

    class CancelWhileAsleep(FakeClock):
        def sleep(self, seconds):
            super().sleep(seconds)
            if len(self.slept) == 2:
                cancel_task(user, task, clock=self)

    clock = CancelWhileAsleep()
    policy = {**POLICY, "registries": {server.host: {"images_per_hour": 1}}}
    summary = TaskRunner(db, policy, clock).run(task, wait=3 * 3600)
    assert summary.state == "cancelled" and len(summary.outcomes) == 1 and summary.next_at is None
    assert sum(clock.slept) < 3600  # woke from its wait for the next hour, not after it
    assert states(user, task) == ("cancelled", ["done", "cancelled", "cancelled"])


def test_cancel_a_task_nobody_runs_ends_it_at_once(tmp_path):
    from stowaway.ingest.tasks import cancel_task, create_task

    db = database(tmp_path)
    queued = create_task(db, layouts(tmp_path, 2), risks=["files"])
    assert cancel_task(db, queued) == f"task {queued}: cancelled (2 image(s) not scanned)"
    assert states(db, queued) == ("cancelled", ["cancelled", "cancelled"])
    # left 'running' by a process that is gone: its image in progress is cancelled too, not left running
    orphan = create_task(db, layouts(tmp_path, 2), risks=["files"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    with db.conn:
        db.conn.execute("UPDATE tasks SET state='running', pid=?, host=? WHERE id=?",
                        [dead.pid, socket.gethostname(), orphan])
        db.conn.execute("UPDATE task_items SET state='running' WHERE id=(SELECT MIN(id) FROM task_items WHERE task_id=?)",
                        [orphan])
    assert cancel_task(db, orphan) == f"task {orphan}: cancelled (2 image(s) not scanned)"
    assert states(db, orphan) == ("cancelled", ["cancelled", "cancelled"])
    with pytest.raises(Exception, match="no task 999"):
        cancel_task(db, 999)


def test_cli_tasks_cancel(tmp_path):
    from stowaway.ingest.tasks import create_task

    db = database(tmp_path)
    task = create_task(db, layouts(tmp_path, 1), risks=["files"])
    cli = [sys.executable, "-m", "stowaway.ingest.cli", "tasks"]
    r = subprocess.run(cli + ["cancel", str(task), "--db", str(tmp_path / "t.db")], capture_output=True, text=True,
                       timeout=60)
    assert (r.returncode, r.stderr.strip()) == (0, f"task {task}: cancelled (1 image(s) not scanned)")
    r = subprocess.run(cli + ["cancel", str(task), "--db", str(tmp_path / "t.db")], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2 and r.stderr.strip().endswith(f"task {task} is already cancelled: nothing to cancel")
    assert "Traceback" not in r.stderr


def test_the_next_items_are_read_in_order_from_an_index_not_sorted(tmp_path):
    """The runner asks for the next due items before every start: read in (not_before, id) order from an
    index, never by sorting every queued item of the task (a task of a registry's 10,000 images sorted all
    of them at each start)."""
    from stowaway.ingest.db import connect
    from stowaway.ingest.tasks import DUE_SQL, TaskRunner, create_task

    db = connect(str(tmp_path / "due.db"))
    task_id = create_task(db, [f"oci:{tmp_path}/missing{i}" for i in range(30)])
    with db.conn:  # a retry deferred, another due earlier than the rest
        db.conn.execute("UPDATE task_items SET not_before = 50 WHERE id = (SELECT MIN(id) FROM task_items)")
        db.conn.execute("UPDATE task_items SET not_before = 5 WHERE id = (SELECT MAX(id) FROM task_items)")
    ids = [r[0] for r in db.execute("SELECT id FROM task_items ORDER BY id")]
    due = [r[0] for r in TaskRunner(db, {})._due(task_id, 100.0, 4)]
    assert due == [ids[1], ids[2], ids[3], ids[4]]  # not_before 0 first, in id order
    assert [r[0] for r in TaskRunner(db, {})._due(task_id, 10.0, 40)] == ids[1:-1] + [ids[-1]]
    plan = " ".join(r[3] for r in db.execute("EXPLAIN QUERY PLAN " + DUE_SQL, [task_id, 100.0, 4]))
    assert "idx_task_items_due" in plan and "TEMP B-TREE" not in plan


def _hold_write_lock(tmp_path, release_after=None):
    """Another writer (a bulk rematch's transaction of minutes) holding the database's write lock."""
    import sqlite3
    import threading

    other = sqlite3.connect(str(tmp_path / "t.db"), isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    if release_after is not None:
        threading.Timer(release_after, other.rollback).start()
    return other


def test_a_tasks_bookkeeping_waits_for_another_writers_lock_as_its_scans_do(tmp_path):
    from stowaway.ingest.tasks import TaskRunner, create_task

    db = database(tmp_path)
    srcs = layouts(tmp_path, 3)
    TaskRunner(db, {}).run(create_task(db, srcs[:1], risks=["files"]))  # every schema in place
    db.conn.execute("PRAGMA busy_timeout = 50")  # one attempt gives up long before the other writer is done
    other = _hold_write_lock(tmp_path, release_after=1.0)
    task = create_task(db, srcs[1:], risks=["files"])  # `stowaway scan` creates its task: it waits, then writes
    other.close()
    other = _hold_write_lock(tmp_path, release_after=1.0)
    events: list[str] = []
    summary = TaskRunner(db, {}, on_event=lambda kind, data: events.append(kind)).run(task)
    other.close()
    assert summary.state == "done" and [o.status for o in summary.outcomes] == ["done", "done"]
    assert "write_lock_wait" in events  # it said that it waited
    assert db.execute("SELECT state, done FROM tasks WHERE id=?", [task]).fetchone() == ("done", 2)


def test_past_the_lock_wait_a_task_stops_with_one_sentence_naming_the_setting(tmp_path):
    from stowaway.ingest.db import WriteLockWaitOver
    from stowaway.ingest.model import ScanError
    from stowaway.ingest.tasks import TaskRunner, create_task

    db = database(tmp_path)
    srcs = layouts(tmp_path, 2)
    TaskRunner(db, {}).run(create_task(db, srcs[:1], risks=["files"]))
    task = create_task(db, srcs[1:], risks=["files"])
    db.conn.execute("PRAGMA busy_timeout = 50")
    other = _hold_write_lock(tmp_path)
    try:
        with pytest.raises(WriteLockWaitOver) as err:
            TaskRunner(db, {"scan": {"write_lock_wait_seconds": 0.3}}).run(task)
    finally:
        other.rollback()
        other.close()
    assert isinstance(err.value, ScanError)  # the CLI says it in one sentence, no traceback
    text = str(err.value)
    assert "write_lock_wait_seconds = 0" in text and "another writer" in text and "\n" not in text
    assert not db.conn.in_transaction
    # nothing half-done: the task is as it was, and runs once the lock is free
    assert TaskRunner(db, {}).run(task).state == "done"


def test_a_ctrl_c_whose_interrupt_is_lost_still_stops_the_run_before_it_writes(tmp_path, monkeypatch):
    """Python drops an exception raised in a finalizer or in a library's callback: a Ctrl-C whose
    KeyboardInterrupt lands there must still stop the run before its next write, the scan interrupted,
    never recorded as finished."""
    import os
    import signal

    from stowaway.ingest import streams
    from stowaway.ingest.tasks import TaskRunner, create_task

    monkeypatch.setenv("STOWAWAY_LAYER_PROCESSES", "1")  # one process: the signal goes where the layer is read
    # Ctrl-C as a terminal's user has it (an earlier test may have left this process's SIGINT otherwise)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    db = database(tmp_path)
    task = create_task(db, layouts(tmp_path, 2), risks=["files"])
    finish = streams.LayerStream.finish
    swallowed = []

    def ctrl_c_lost(self, *a, **kw):
        if not swallowed:
            try:
                os.kill(os.getpid(), signal.SIGINT)
                for _ in range(1000):  # the handler runs between these bytecodes
                    pass
            except KeyboardInterrupt:
                swallowed.append(True)  # as a finalizer or callback would drop it
        return finish(self, *a, **kw)

    monkeypatch.setattr(streams.LayerStream, "finish", ctrl_c_lost)
    with pytest.raises(KeyboardInterrupt):
        TaskRunner(db, {}).run(task)
    assert swallowed == [True]
    assert db.execute("SELECT state FROM tasks WHERE id=?", [task]).fetchone()[0] == "interrupted"
    assert db.execute("SELECT COUNT(*) FROM scans WHERE status='done'").fetchone()[0] == 0
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored after the run
    signal.signal(signal.SIGINT, previous)
