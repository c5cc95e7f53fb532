"""Scheduled scan policies on a fake clock: time windows (also across midnight), every N days, only images
updated in the last N days, only some repository types; run-once for cron and the foreground loop."""
import calendar
import json
import subprocess
import sys
import time

import pytest
from imagebuilder import ImageBuilder
from registry_server import Misbehaving, serve_image


def at(text):  # '2024-01-11 03:00' UTC -> epoch
    return float(calendar.timegm(time.strptime(text, "%Y-%m-%d %H:%M")))


class FakeClock:
    def __init__(self, t):
        self.t = t

    def now(self):
        return self.t

    def sleep(self, seconds):
        self.t += seconds


def built(created, n):
    img = ImageBuilder().layer({"etc/os-release": "ID=alpine\nVERSION_ID=3.19.1\n", f"app/{n}": "x" * n})
    config = img.config
    img.config = lambda diff_ids=None: {**config(diff_ids), "created": created}
    return img


def serve_repos(server, repos):
    """repos: {repo: {tag: builder}} served with catalog and tag lists."""
    for repo, tags in repos.items():
        for tag, img in tags.items():
            serve_image(server, repo, tag, img)
        body = json.dumps({"name": repo, "tags": list(tags)}).encode()
        server.routes[f"/v2/{repo}/tags/list"] = lambda req, b=body: (200, {"Content-Type": "application/json"}, b)
    cat = json.dumps({"repositories": sorted(repos)}).encode()
    server.routes["/v2/_catalog"] = lambda req: (200, {"Content-Type": "application/json"}, cat)


@pytest.fixture
def estate(tmp_path):
    """Two registries synced: a third-party one (one fresh image, one old) and a private one."""
    from stowaway.ingest.db import connect
    from stowaway.ingest.sources.registry import RegistryClient
    from stowaway.ingest.sync import sync

    vendor, own = Misbehaving(), Misbehaving()
    serve_repos(vendor, {"vendor/fresh": {"1": built("2024-01-05T00:00:00Z", 1)},
                         "vendor/old": {"1": built("2023-01-01T00:00:00Z", 2)}})
    serve_repos(own, {"corp/app": {"1": built("2024-01-06T00:00:00Z", 3), "2": built("2024-01-08T00:00:00Z", 4)}})
    db = connect(str(tmp_path / "s.db"))
    sync(db, RegistryClient(vendor.host, scheme="http"), repo_type="third-party")
    sync(db, RegistryClient(own.host, scheme="http"), repo_type="private")
    yield db, vendor, own
    vendor.stop()
    own.stop()


POLICY = {"source_options": {"scheme": "http", "retries": 0}}


def scanned(db):
    return sorted(r[0].split("/", 1)[1] for r in db.execute("SELECT reference FROM scans WHERE status='done'"))


def test_window_crossing_midnight_and_plain_window():
    from stowaway.ingest.scheduler import in_window

    assert in_window(at("2024-01-11 03:00"), "00:00", "07:00")
    assert not in_window(at("2024-01-11 07:00"), "00:00", "07:00")
    assert in_window(at("2024-01-11 23:30"), "22:00", "06:00") and in_window(at("2024-01-11 05:59"), "22:00", "06:00")
    assert not in_window(at("2024-01-11 12:00"), "22:00", "06:00")
    assert in_window(at("2024-01-11 12:00"), None, None)


def test_policy_runs_in_its_window_every_n_days_over_its_types_and_recent_images(estate):
    from stowaway.ingest.scheduler import add_policy, run_once

    db, vendor, own = estate
    add_policy(db, "nightly-vendor", every_days=2, window="00:00-07:00", updated_within_days=30,
               repository_types=["third-party"], risk_types=["files"], retries=0)
    clock = FakeClock(at("2024-01-10 12:00"))
    assert run_once(db, POLICY, clock) == []  # outside the window
    clock.t = at("2024-01-11 03:00")
    [summary] = run_once(db, POLICY, clock)
    assert summary.state == "done"
    assert scanned(db) == ["vendor/fresh:1"]  # not the old image, not the private registry
    task = db.execute("SELECT kind, policy_id, risk_types FROM tasks WHERE id=?", [summary.task_id]).fetchone()
    assert task[0] == "scheduled" and task[1] and json.loads(task[2]) == ["files"]
    clock.t = at("2024-01-12 03:00")
    assert run_once(db, POLICY, clock) == []  # every 2 days: not yet
    clock.t = at("2024-01-13 02:00")
    assert len(run_once(db, POLICY, clock)) == 1
    assert scanned(db) == ["vendor/fresh:1", "vendor/fresh:1"]


def test_latest_only_policy_over_all_types_and_the_foreground_loop(estate):
    from stowaway.ingest.scheduler import add_policy, run_forever

    db, vendor, own = estate
    add_policy(db, "all-latest", every_days=1, latest_only=True, risk_types=["files"])
    clock = FakeClock(at("2024-01-11 12:00"))
    run_forever(db, POLICY, interval=3600, clock=clock, iterations=3)
    # one run (the next two rounds fall inside the same day); corp/app's latest tag is 2
    assert scanned(db) == ["corp/app:2", "vendor/fresh:1", "vendor/old:1"]
    assert clock.t == at("2024-01-11 14:00")


def test_failed_scheduled_image_is_retried_per_policy(estate):
    from stowaway.ingest.scheduler import add_policy, run_once

    db, vendor, own = estate
    good = vendor.routes["/v2/vendor/fresh/manifests/1"]
    answers = iter([(503, {}, b"")])
    vendor.routes["/v2/vendor/fresh/manifests/1"] = lambda req: next(answers, None) or good(req)
    add_policy(db, "retrying", repository_types=["third-party"], updated_within_days=30, risk_types=["files"],
               retries=2, retry_delay=600)
    clock = FakeClock(at("2024-01-11 03:00"))
    [summary] = run_once(db, POLICY, clock)
    assert summary.state == "queued" and summary.waiting == 1  # failed once, retry in 10 minutes
    clock.t += 600
    [summary] = run_once(db, POLICY, clock)  # cron's next call continues the task, starts nothing new
    assert summary.state == "done" and scanned(db) == ["vendor/fresh:1"]
    assert db.execute("SELECT attempts FROM task_items").fetchone()[0] == 2


def test_cli_schedule_add_list_and_bad_values(tmp_path):
    db = str(tmp_path / "c.db")
    cli = [sys.executable, "-m", "stowaway.ingest.cli", "schedule"]
    r = subprocess.run(cli + ["add", "nightly", "--db", db, "--every-days", "1", "--window", "00:00-07:00",
                              "--type", "third-party", "--updated-within-days", "7", "--concurrency", "2"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(cli + ["list", "--db", db], capture_output=True, text=True, timeout=60)
    header, row = r.stdout.splitlines()
    assert header.split()[:3] == ["NAME", "EVERY", "DAYS"]
    assert row.split()[:6] == ["nightly", "1", "00:00-07:00", "third-party", "all", "7"]
    r = subprocess.run(cli + ["list", "--db", db, "--format", "json"], capture_output=True, text=True, timeout=60)
    listed = json.loads(r.stdout)
    assert listed["name"] == "nightly" and listed["concurrency"] == 2 and listed["window_start"] == "00:00"
    r = subprocess.run(cli + ["add", "bad", "--db", db, "--window", "25:00-07:00"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2 and "not a time of day" in r.stderr
    r = subprocess.run(cli + ["run-once", "--db", db], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


def test_every_n_days_counts_window_occurrences():
    from stowaway.ingest.scheduler import Policy

    p = Policy(1, "p", 1, "22:00", "06:00", None, None, None, False, None, 1, 0, 0, at("2024-01-10 23:00"))
    assert not p.due(at("2024-01-11 01:00"))  # the same night's window
    assert p.due(at("2024-01-11 22:30"))  # the next night's
    p.window_start = p.window_end = None
    assert not p.due(at("2024-01-11 12:00")) and p.due(at("2024-01-11 23:00"))  # 24 hours without a window
