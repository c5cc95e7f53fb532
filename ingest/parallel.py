"""Layers of one image read by two processes at once (a fork of this one), when it is safe to.

The walk of a layer is Python work on one core; a machine has more. When an image has several layers
to read from a local file (a `docker save` archive, an OCI layout or archive), this process forks one
copy of itself and both take the next unread layer, largest first, until none is left: the child sends
back what it read (each layer's entry list, records and warnings, pickled), the parent reads the rest
itself. Nothing else changes: the same walk runs on the same bytes with the same analyzers.

It is done only where nothing can go wrong with a fork:

* the process runs no other thread (a thread's locks would be copied held) and is not itself a worker
  process of a pool (that parallelism is already there);
* the layers are read from a local file (pread on an inherited descriptor); a registry's or the engine's
  connections are never shared;
* every analyzer that reads the layers says its `analyze` keeps nothing later files rely on
  (`Analyzer.forkable`): records are all a layer's walk leaves;
* the child never touches the database and ends with os._exit (no atexit handler, no buffered output
  flushed twice). A layer the child could not finish (it failed, or died) is read again by the parent,
  which then fails or succeeds exactly as a one-process scan would.
"""
from __future__ import annotations

import os
import pickle
import signal
import sys
import threading
from typing import Callable, Iterable, Sequence

LOCAL_TRANSPORTS = ("docker-archive", "oci", "oci-archive")
MAX_TASKS = 255  # one byte per claim


def can_fork(source: str, analyzers: Iterable) -> bool:
    """Whether the layers of `source` may be read in a forked process for these analyzers."""
    if os.environ.get("STOWAWAY_LAYER_PROCESSES", "") == "1" or not hasattr(os, "fork"):
        return False
    # a worker process of a pool has multiprocessing loaded (it started it): asked only then, so that a
    # command-line scan does not import it (and socket with it) to learn it is not one
    workers = sys.modules.get("multiprocessing")
    if (os.cpu_count() or 1) < 2 or threading.active_count() != 1 or (
            workers is not None and workers.parent_process() is not None):
        return False
    if source.partition(":")[0] not in LOCAL_TRANSPORTS:
        return False
    return all(getattr(a, "forkable", False) for a in analyzers)


def _die_with(parent: int) -> None:
    """The child ends when its parent does, even killed outright (SIGKILL leaves no chance to stop it):
    Linux's parent-death signal, and a check that the parent did not die before it was set."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the child ends after its current layer (EPIPE)
        pass
    if os.getppid() != parent:
        os._exit(0)


def _keep(result):
    return result


def _drop(result) -> None:
    pass


def _in_turn(claims: Iterable[int], tasks: Sequence[tuple], read: Callable, settle: Callable,
             discard: Callable) -> dict[int, object]:
    """`read(*task)` for each claimed index; each result is settled once the next task has been read (a
    layer's digest is computed while the next layer is walked): at most one waits at a time, and one left
    waiting when something fails is discarded."""
    out: dict[int, object] = {}
    waiting: tuple[int, object] | None = None
    try:
        for i in claims:
            got = read(*tasks[i])
            done, waiting = waiting, (i, got)
            if done is not None:
                out[done[0]] = settle(done[1])
        if waiting is not None:
            done, waiting = waiting, None
            out[done[0]] = settle(done[1])
    finally:
        if waiting is not None:
            discard(waiting[1])
    return out


def read_all(tasks: Sequence[tuple], read: Callable, fork: bool, idle: Callable | None = None,
             settle: Callable = _keep, discard: Callable = _drop) -> list:
    """`read(*task)` for every task, in two processes when `fork` (see the module's docstring): the results
    in the order of `tasks`, each passed through `settle` (`read` may return a result still being finished,
    e.g. a layer whose digest is computed in a thread: it is settled after the next task was read, and
    `discard` ends one that will not be). A task is a tuple whose first item has a `size` (the blob's bytes).

    The child starts with the largest blob and the parent claims the next: a layer of many bytes is often
    one of few large files (cheap to send back), and the layer of many small files, whose entry list
    costs the most to send, then stays here. After its last claim the parent calls `idle` on each of
    its own results, while the child may still be reading (work the results would need later anyway)."""
    if not fork or len(tasks) < 2 or len(tasks) > MAX_TASKS:
        in_turn = _in_turn(range(len(tasks)), tasks, read, settle, discard)
        return [in_turn[i] for i in range(len(tasks))]
    order = sorted(range(len(tasks)), key=lambda i: (-(getattr(tasks[i][0], "size", 0) or 0), i))
    claims_r, claims_w = os.pipe()
    os.write(claims_w, bytes(order[1:]))  # at most 254 bytes: one write, all there before either reads
    os.close(claims_w)  # when every claim is taken, a read returns b""
    back_r, back_w = os.pipe()
    parent = os.getpid()

    def claimed(first: bytes = b""):
        """The indexes this process claims: `first`, then one byte from the claims pipe at a time."""
        claim = first or os.read(claims_r, 1)
        while claim:
            yield claim[0]
            claim = os.read(claims_r, 1)

    pid = os.fork()
    if pid == 0:  # the child: the largest, then claims until none is left, then every result at once
        try:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops it
            _die_with(parent)
            os.close(back_r)

            def guarded_read(*task):
                try:
                    return read(*task)
                except BaseException:  # noqa: BLE001 - the parent reads this layer again and fails as it would
                    return _FAILED

            def guarded_settle(result):
                if result is _FAILED:
                    return _FAILED
                try:
                    return settle(result)
                except BaseException:  # noqa: BLE001 - as above
                    return _FAILED

            got = _in_turn(claimed(bytes(order[:1])), tasks, guarded_read, guarded_settle, discard)
            done = [(i, r) for i, r in got.items() if r is not _FAILED]
            try:
                data = pickle.dumps(done, protocol=pickle.HIGHEST_PROTOCOL)
            except Exception:  # noqa: BLE001 - a result that does not pickle: the parent reads those layers
                data = b""
            with os.fdopen(back_w, "wb") as out:
                out.write(data)
        finally:
            os._exit(0)
    os.close(back_w)
    results: dict[int, object] = {}
    finished = False
    try:
        results = _in_turn(claimed(), tasks, read, settle, discard)
        if idle is not None:
            for result in results.values():
                idle(result)
        with os.fdopen(back_r, "rb") as fh:
            back_r = -1
            data = fh.read()
        finished = True
    finally:
        os.close(claims_r)
        if back_r >= 0:
            os.close(back_r)
        if not finished:
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    try:
        from_child = pickle.loads(data) if data else []
    except Exception:  # noqa: BLE001 - cut short: those layers are read here
        from_child = []
    results.update(dict(from_child))
    return [results[i] if i in results else settle(read(*tasks[i])) for i in range(len(tasks))]


_FAILED = object()  # a task the child could not finish: the parent reads it again
