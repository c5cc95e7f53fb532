"""What the console's background tasks need from ingest: a task's own images-per-hour limit, registry
syncs as tasks (progress, result, a failure in one sentence) that the scan runner never picks up,
sources recorded with an absolute location, and the background process's entry point."""
import json
import os

from imagebuilder import ImageBuilder
from registry_server import Misbehaving, serve_image
from test_tasks import T0, FakeClock, database, layouts

POLICY = {"source_options": {"scheme": "http", "retries": 0}}


def test_a_tasks_own_images_per_hour_defers_the_rest_whatever_the_source(tmp_path):
    from stowaway.ingest.tasks import TaskRunner, create_task

    db = database(tmp_path)
    clock = FakeClock()
    task = create_task(db, layouts(tmp_path, 3), risks=["files"], clock=clock, images_per_hour=2)
    assert db.execute("SELECT images_per_hour FROM tasks WHERE id=?", [task]).fetchone() == (2,)
    summary = TaskRunner(db, {}, clock).run(task)
    # local layouts have no registry limit: the task's own limit held the third back an hour
    assert (summary.state, len(summary.outcomes), summary.waiting, summary.next_at) == ("queued", 2, 1, T0 + 3600)
    summary = TaskRunner(db, {}, clock).run(task, wait=3600)
    assert (summary.state, len(summary.outcomes)) == ("done", 1) and sum(clock.slept) == 3600
    starts = sorted(r[0] for r in db.execute("SELECT started_ts FROM task_items WHERE task_id=?", [task]))
    assert starts == [T0, T0, T0 + 3600]
    # without a limit nothing waits
    other = create_task(db, layouts(tmp_path / "more", 3), risks=["files"], clock=clock)
    assert TaskRunner(db, {}, clock).run(other).state == "done"


def registry_with_catalog(server, repos: dict[str, list[str]]):
    for repo, tags in repos.items():
        for n, tag in enumerate(tags):
            serve_image(server, repo, tag, ImageBuilder().layer({"etc/os-release": "ID=alpine\n", f"a/{n}": tag}))
        server.routes[f"/v2/{repo}/tags/list"] = lambda req, r=repo, t=tags: (
            200, {"Content-Type": "application/json"}, json.dumps({"name": r, "tags": t}).encode())
    server.routes["/v2/_catalog"] = lambda req: (200, {"Content-Type": "application/json"},
                                                 json.dumps({"repositories": sorted(repos)}).encode())


def test_a_sync_task_records_progress_and_its_result(tmp_path):
    from stowaway.ingest import background
    from stowaway.ingest.sync import create_sync_task
    from stowaway.ingest.tasks import TaskRunner, run_pending

    server = Misbehaving()
    try:
        registry_with_catalog(server, {"team/api": ["1", "2"], "team/web": ["1"]})
        db = database(tmp_path)
        task = create_sync_task(db, server.host)
        # the scan runner never takes a sync for a scan
        assert run_pending(db, POLICY) == []
        try:
            TaskRunner(db, POLICY).run(task)
            raise AssertionError("a sync task was run as a scan")
        except Exception as exc:
            assert "registry sync" in str(exc)
        db.conn.close()
        assert background.run(str(tmp_path / "t.db"), task, POLICY) == "done"
    finally:
        server.stop()
    db = database(tmp_path)
    row = db.execute("SELECT kind, state, total, done, failed, progress, error FROM tasks WHERE id=?", [task]).fetchone()
    assert row == ("sync", "done", 2, 2, 0, 1.0, None)
    state, images, summary = db.execute("SELECT state, images, summary FROM task_items WHERE task_id=?",
                                        [task]).fetchone()
    assert (state, images) == ("done", 3)
    assert json.loads(summary) | {"errors": []} == {"repositories": 2, "tags": 3, "added": 3, "changed": 0,
                                                     "unchanged": 0, "removed": 0, "errors": [], "more_errors": 0}
    assert db.execute("SELECT COUNT(*) FROM registry_images WHERE host=?", [server.host]).fetchone() == (3,)
    assert db.execute("SELECT COUNT(*) FROM scans").fetchone() == (0,)


def test_a_failed_sync_is_one_sentence_and_starts_no_scan(tmp_path):
    from stowaway.ingest import background
    from stowaway.ingest.sync import create_sync_task
    from stowaway.ingest.tasks import mark_interrupted

    db = database(tmp_path)
    task = create_sync_task(db, "127.0.0.1:9")  # nothing listens there
    db.conn.close()
    assert background.run(str(tmp_path / "t.db"), task, {"registries": {"127.0.0.1:9": {
        "scheme": "http", "retries": 0, "timeout": 5}}}) == "failed"
    db = database(tmp_path)
    state, error = db.execute("SELECT state, error FROM tasks WHERE id=?", [task]).fetchone()
    assert state == "failed" and error.startswith("127.0.0.1:9") and "\n" not in error
    assert "HTTPConnectionPool" not in error and "Traceback" not in error
    # an interrupted sync has no scan in progress to mark
    other = create_sync_task(db, "127.0.0.1:9")
    with db.conn:
        db.conn.execute("UPDATE task_items SET state='running' WHERE task_id=?", [other])
    mark_interrupted(db, other, "interrupted: test")
    assert db.execute("SELECT COUNT(*) FROM scans").fetchone() == (0,)


def test_sources_are_recorded_absolute(tmp_path, monkeypatch):
    from stowaway.ingest.pipeline import Scanner
    from stowaway.ingest.sources import absolute_source

    (tmp_path / "work").mkdir()
    ImageBuilder().layer({"etc/os-release": "ID=alpine\n"}).write_oci_layout(tmp_path / "work" / "lay", ref="x/y:1")
    assert absolute_source("oci:lay:x/y:1", str(tmp_path / "work")) == f"oci:{tmp_path / 'work' / 'lay'}:x/y:1"
    assert absolute_source("oci:lay", str(tmp_path)) == "oci:lay"  # not there: left as it is
    assert absolute_source("registry:127.0.0.1:5000/a/b:1", str(tmp_path)) == "registry:127.0.0.1:5000/a/b:1"
    assert absolute_source("docker-archive:/abs/x.tar") == "docker-archive:/abs/x.tar"

    monkeypatch.chdir(tmp_path / "work")
    db = database(tmp_path)
    [outcome] = Scanner(db, {}, progress=False).run(["oci:lay:x/y:1"])
    assert outcome.status == "done"
    want = f"oci:{tmp_path / 'work' / 'lay'}:x/y:1"
    assert db.execute("SELECT source FROM images").fetchone() == (want,)
    assert db.execute("SELECT source FROM scans").fetchone() == (want,)
    assert os.path.isabs(want[len("oci:"):].split(":")[0])
