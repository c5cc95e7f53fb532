"""Layers read by two processes (ingest/parallel.py): the same results as one process, in the same order;
a layer the forked child could not read is read again here; nothing is forked when it would be unsafe."""
from __future__ import annotations

import os
import random
import threading

import pytest
from conftest import report_of
from imagebuilder import ImageBuilder

from stowaway.ingest import parallel


class Blob:
    def __init__(self, name: str, size: int):
        self.name, self.size = name, size


def _tasks(n=6):
    return [(Blob(f"b{i}", size), i) for i, size in enumerate([5, 500, 50, 0, 7000, 60][:n])]


def test_forked_reads_give_every_result_in_task_order_from_both_processes():
    parent = os.getpid()

    def read(blob, i):
        return (blob.name, i * i, os.getpid() == parent)

    got = parallel.read_all(_tasks(), read, fork=True)
    assert [g[:2] for g in got] == [(f"b{i}", i * i) for i in range(6)]
    here = {g[0] for g in got if g[2]}
    assert "b4" not in here  # the child starts with the largest blob (the rest: whichever process is free)
    assert parallel.read_all(_tasks(), read, fork=False) == [(f"b{i}", i * i, True) for i in range(6)]


class Pending:
    """A result still being finished (as a layer whose digest a thread computes): settled or discarded once."""

    def __init__(self, name: str, log: list):
        self.name, self.log = name, log

    def settle(self):
        self.log.append(("settle", self.name))
        if self.name == "bad":
            raise ValueError("digest failed")
        return self.name.upper()


def test_each_result_is_settled_after_the_next_is_read_and_the_last_at_the_end():
    log: list = []

    def read(blob, i):
        log.append(("read", blob.name))
        return Pending(blob.name, log)

    def discard(p):
        log.append(("discard", p.name))

    got = parallel.read_all(_tasks(3), read, fork=False, settle=lambda p: p.settle(), discard=discard)
    assert got == ["B0", "B1", "B2"]
    # the digest of one layer is waited for only once the next has been walked: at most one waits
    assert log == [("read", "b0"), ("read", "b1"), ("settle", "b0"), ("read", "b2"), ("settle", "b1"),
                   ("settle", "b2")]


def test_a_result_left_waiting_when_reading_fails_is_discarded_not_left_running():
    log: list = []

    def read(blob, i):
        if blob.name == "b2":
            raise ValueError("broken layer")
        return Pending(blob.name, log)

    with pytest.raises(ValueError, match="broken layer"):
        parallel.read_all(_tasks(4), read, fork=False, settle=lambda p: p.settle(),
                          discard=lambda p: log.append(("discard", p.name)))
    assert log == [("settle", "b0"), ("discard", "b1")]


def test_a_result_the_child_cannot_settle_is_read_and_settled_again_here():
    parent = os.getpid()

    def read(blob, i):
        return Pending("bad" if os.getpid() != parent and blob.name == "b4" else blob.name, [])

    got = parallel.read_all(_tasks(), read, fork=True, settle=lambda p: p.settle())
    assert got == [f"B{i}" for i in range(6)]


def _note_pid(path) -> None:
    (path.parent / "child.tmp").write_text(str(os.getpid()))
    os.replace(path.parent / "child.tmp", path)  # whole, or not there


def _gone(pid_file) -> bool:
    """The child whose pid is in the file has ended and been reaped (a zombie still has its pid)."""
    try:
        os.kill(int(pid_file.read_text()), 0)
    except ProcessLookupError:
        return True
    return False


def test_a_task_the_child_fails_is_read_again_here_and_the_child_is_reaped(tmp_path):
    parent = os.getpid()
    idle = []

    def read(blob, i):
        if os.getpid() != parent:
            _note_pid(tmp_path / "child")
            raise RuntimeError("child only")
        return blob.name

    got = parallel.read_all(_tasks(), read, fork=True, idle=idle.append)
    assert got == [f"b{i}" for i in range(6)]
    assert "b4" not in idle  # idle sees only what the parent read before the child's results came back
    assert _gone(tmp_path / "child")


def test_an_error_here_stops_the_child_and_is_raised_as_in_one_process(tmp_path):
    import time

    parent = os.getpid()

    def read(blob, i):
        if os.getpid() != parent:
            _note_pid(tmp_path / "child")
            time.sleep(30)  # still reading when the parent fails: it must be stopped, not waited for
        if blob.name == "b1":
            while not (tmp_path / "child").exists() and time.monotonic() - started < 20:
                time.sleep(0.01)  # the child is reading its first layer
            raise ValueError("broken layer")
        return blob.name

    started = time.monotonic()
    with pytest.raises(ValueError, match="broken layer"):
        parallel.read_all(_tasks(), read, fork=True)
    assert time.monotonic() - started < 25  # a hang guard, not a timing: the child sleeps 30 s
    assert _gone(tmp_path / "child")


def test_the_child_ends_with_its_parent_even_when_the_parent_is_killed_outright(tmp_path):
    """SIGKILL leaves the parent no chance to stop its child: the child must not read on for minutes."""
    import signal
    import subprocess
    import sys
    import time

    script = f"""
import os, pathlib, time
from stowaway.ingest import parallel
class Blob:
    def __init__(self, size):
        self.size = size
parent = os.getpid()
def read(blob):
    if os.getpid() != parent:
        pathlib.Path({str(tmp_path / "child.tmp")!r}).write_text(str(os.getpid()))
        os.replace({str(tmp_path / "child.tmp")!r}, {str(tmp_path / "child")!r})
    time.sleep(120)
parallel.read_all([(Blob(2),), (Blob(1),)], read, fork=True)
"""
    proc = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "child").exists():
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    child = int((tmp_path / "child").read_text())

    def ended() -> bool:  # gone, or a zombie waiting for whoever adopted it
        try:
            return open(f"/proc/{child}/stat").read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
        except FileNotFoundError:
            return True

    deadline = time.monotonic() + 30  # a hang guard: without the parent-death signal it sleeps 120 s
    while not ended() and time.monotonic() < deadline:
        time.sleep(0.05)
    alive = not ended()
    if alive:
        os.kill(child, signal.SIGKILL)
    assert not alive


class _Forkable:
    forkable = True


class _Stateful:
    forkable = False


def test_no_fork_where_it_is_unsafe(monkeypatch):
    monkeypatch.delenv("STOWAWAY_LAYER_PROCESSES", raising=False)
    # as in a command-line scan: no thread but this one (earlier tests may have left idle ones here)
    monkeypatch.setattr(parallel.threading, "active_count", lambda: 1)
    assert parallel.can_fork("docker-archive:/x.tar", [_Forkable()])
    assert parallel.can_fork("oci:/layout", [_Forkable()])
    assert not parallel.can_fork("registry:example.com/a:1", [_Forkable()])  # connections are never shared
    assert not parallel.can_fork("docker:a:1", [_Forkable()])
    assert not parallel.can_fork("docker-archive:/x.tar", [_Forkable(), _Stateful()])
    monkeypatch.setenv("STOWAWAY_LAYER_PROCESSES", "1")
    assert not parallel.can_fork("docker-archive:/x.tar", [_Forkable()])
    monkeypatch.delenv("STOWAWAY_LAYER_PROCESSES")
    monkeypatch.undo()
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        assert not parallel.can_fork("docker-archive:/x.tar", [_Forkable()])  # its locks would be copied held
    finally:
        stop.set()
        other.join()


def _can_fork_here() -> bool:
    parallel.threading.active_count = lambda: 1  # a worker's own pool threads are not the question here
    return parallel.can_fork("docker-archive:/x.tar", [_Forkable()])


def test_no_fork_in_a_pool_worker_and_no_multiprocessing_import_to_learn_it():
    """A process of a pool (its parallelism is already there) reads its layers itself; a command-line
    scan learns it is not one without importing multiprocessing."""
    import multiprocessing
    import subprocess
    import sys
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        assert pool.submit(_can_fork_here).result(timeout=120) is False
    code = ("import sys, stowaway.ingest.parallel as p; p.threading.active_count = lambda: 1;"
            " ok = p.can_fork('docker-archive:/x.tar', [type('A', (), {'forkable': True})()]);"
            " print(ok, 'multiprocessing' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["True", "False"], out.stderr


def _image(tmp_path):
    rnd = random.Random(16)
    token = "ghp_" + "".join(rnd.choices("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789", k=36))
    many = {f"usr/share/doc/p{i}/README": f"text {i}\n" for i in range(400)}
    img = (ImageBuilder()
           .layer({"etc/os-release": "ID=debian\nVERSION_ID=12\n", **many})
           .layer({"srv/app/.env": f"GITHUB_TOKEN={token}\n", "srv/big.bin": bytes(rnd.randrange(256) for _ in range(300000))})
           .layer({"srv/app/old.env": f"TOKEN={token}\n", "opt/other": "x\n"})
           .layer({"srv/app/.wh.old.env": b"", "home/u/.npmrc": f"//registry.npmjs.org/:_authToken={token}\n"}))
    path = tmp_path / "img.tar"
    img.write_docker_archive(path, ref="par/img:1")
    return path


def test_a_scan_with_its_layers_read_in_two_processes_is_the_scan_in_one(tmp_path, monkeypatch):
    from stowaway.ingest.db import connect
    from stowaway.ingest.pipeline import Scanner

    monkeypatch.setenv("STOWAWAY_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("STOWAWAY_DATA_DIR", str(tmp_path / "data"))
    # earlier tests may have left idle threads (tqdm's monitor, datasette's): this test's own scans
    # start none, so the fork is as safe here as in the command-line scan it stands for
    monkeypatch.setattr(parallel.threading, "active_count", lambda: 1)
    path = _image(tmp_path)
    forks = []
    real = parallel.read_all

    def spy(tasks, read, fork, idle=None, **kw):
        forks.append((len(tasks), fork))
        return real(tasks, read, fork, idle, **kw)

    monkeypatch.setattr(parallel, "read_all", spy)
    reports = {}
    for processes in ("2", "1"):
        monkeypatch.setenv("STOWAWAY_LAYER_PROCESSES", processes)
        database = connect(str(tmp_path / f"scan-{processes}.db"))  # each scan reads every layer
        out = Scanner(database, {}, progress=False, risks=["secrets"]).run([f"docker-archive:{path}"])
        assert [o.status for o in out] == ["done"]
        rep = report_of(database, "par/img:1")
        entries = [r[0] for r in database.conn.execute("SELECT file_index FROM layers ORDER BY diff_id")]
        reports[processes] = (rep["sensitive_information"], rep["image"]["os"], entries)
    assert [f for f in forks if f[0]] == [(4, True), (4, False)]
    assert reports["2"] == reports["1"]
    found = {(s["path"], s["rule"], s["layer_index"], s["visible"]) for s in reports["2"][0]}
    assert found == {("/srv/app/.env", "github-pat", 1, True), ("/srv/app/old.env", "github-pat", 2, False),
                     ("/home/u/.npmrc", "github-pat", 3, True)}
    assert reports["2"][1]["family"] == "debian"
