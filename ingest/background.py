"""Runs a task (a scan, a rescan or a registry sync) in a process of its own, for a server that must
answer at once: `start()` spawns `python -m stowaway.ingest.background` with the database path, the
task id and the policy on its standard input (never on the command line, where `ps` would show a
registry password), and returns; the child runs the task with the TaskRunner (or the sync) and
records everything on the task's rows, which the server's pages read.

The child is a process, not a thread: analysis is CPU-bound Python, and in the server's process it
would hold the GIL that the pages need. A child that dies is found by the next TaskRunner (pid and
heartbeat, see tasks.recover_stale); a child whose server stops goes on and finishes its task.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

# how long a scan task's child waits for images deferred by an images-per-hour limit before it leaves
# them queued for `stowaway tasks run ID` or the schedule (a day)
MAX_WAIT = 86400.0


def start(db_path: str, task_id: int, policy: dict, wait: float | None = None,
          images: dict[str, list[int]] | None = None) -> subprocess.Popen:
    """Starts the task's child process and returns it (a thread reaps it when it ends). IMAGES maps a
    source to the images it was chosen for: a scan of it that fails before an image is read (the file
    is gone) is recorded as theirs, so the image list shows the failure and its reason."""
    payload = json.dumps({"db": os.path.abspath(db_path), "task": int(task_id), "policy": policy,
                          "wait": MAX_WAIT if wait is None else float(wait), "images": images or {}})
    proc = subprocess.Popen([sys.executable, "-m", "stowaway.ingest.background"], stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, stderr=None, cwd=os.getcwd(), close_fds=True)
    assert proc.stdin is not None
    proc.stdin.write(payload.encode())
    proc.stdin.close()
    threading.Thread(target=proc.wait, name=f"stowaway-task-{task_id}", daemon=True).start()
    return proc


def run(db_path: str, task_id: int, policy: dict, wait: float = MAX_WAIT,
        images: dict[str, list[int]] | None = None) -> str:
    """Runs the task to its end in this process; returns its state. Any failure is recorded on the task
    as one sentence (the traceback goes to standard error, for the operator's log only)."""
    from . import db as dbm
    from .failures import describe
    from .model import ScanError
    from .policy import with_database_settings
    from .tasks import TaskRunner, ensure, iso

    database = dbm.connect(db_path)
    try:
        ensure(database)
        kind = (database.execute("SELECT kind FROM tasks WHERE id=?", [task_id]).fetchone() or [None])[0]
        if kind is None:
            raise ScanError(f"no task {task_id}")
        if kind == "sync":
            from .sync import run_sync_task

            run_sync_task(database, task_id, policy)
        else:
            policy = with_database_settings(policy, database)
            TaskRunner(database, policy, dask=(policy.get("scan") or {}).get("dask")).run(task_id, wait=wait)
    except Exception as exc:
        import time
        import traceback

        traceback.print_exc()
        error = str(exc) if isinstance(exc, ScanError) else describe(exc)
        if error.startswith("internal error"):
            error = f"the task stopped unexpectedly ({exc})"
        try:
            with database.conn:
                database.conn.execute("UPDATE task_items SET state='failed', error=? WHERE task_id=? AND state IN"
                                      " ('queued', 'running')", [error[:500], task_id])
                database.conn.execute("UPDATE tasks SET state='failed', running=0, error=?, finished_at=? WHERE id=?",
                                      [error.splitlines()[0][:500], iso(time.time()), task_id])
        except Exception:  # the database itself is the problem: the log above says so
            pass
    try:
        with database.conn:
            for source, ids in (images or {}).items():
                for image_id in ids[:1]:  # a source scanned for one image (narrowed to it) or a layout's first
                    database.conn.execute("UPDATE scans SET image_id=? WHERE task_id=? AND status='failed' AND"
                                          " image_id IS NULL AND source=?", [int(image_id), task_id, source])
    except Exception:  # only a nicer list: the task page has the failure either way
        pass
    row = database.execute("SELECT state FROM tasks WHERE id=?", [task_id]).fetchone()
    database.conn.close()
    return row[0] if row else "failed"


def main() -> int:
    request = json.loads(sys.stdin.read() or "{}")
    state = run(request["db"], int(request["task"]), request.get("policy") or {}, float(request.get("wait", MAX_WAIT)),
                request.get("images") or {})
    return 0 if state in ("done", "queued") else 1


if __name__ == "__main__":
    sys.exit(main())
