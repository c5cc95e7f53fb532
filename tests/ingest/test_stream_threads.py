"""The threads behind a layer stream (hash, read-ahead, isal's gzip reader) end on every path.

A layer is read by up to four threads: the blob's hash, isal's gzip decompression, the uncompressed
stream's hash and the read-ahead. Each test drives one way a layer can end early (the reader stops,
the source raises, the compressed data is corrupt, a size cap is hit) and checks that no call blocks
and that, once the stream is closed, no thread of it is left running or reading the blob.

Every test runs its body under a hang guard (`no_hang`): a join with a generous limit that fails the
test, with every thread's stack, instead of blocking the suite. It is not a measure of speed.
"""
from __future__ import annotations

import faulthandler
import gc
import hashlib
import io
import random
import sys
import tarfile
import threading

import pytest

GUARD = 120  # seconds: far beyond any of these bodies on a loaded machine; only a hang reaches it


def no_hang(fn, *args, guard: float = GUARD):
    """Runs fn(*args) in a thread; fails the test (with all stacks) if it has not returned after `guard` s."""
    box: dict = {}

    def run():
        try:
            box["value"] = fn(*args)
        except BaseException as exc:  # noqa: BLE001 - handed to the test's thread
            box["error"] = exc

    t = threading.Thread(target=run, name="no-hang-guard", daemon=True)
    t.start()
    t.join(guard)
    if t.is_alive():
        faulthandler.dump_traceback(file=sys.stderr)
        pytest.fail(f"{getattr(fn, '__name__', fn)} still blocked after {guard} s: a hang")
    if "error" in box:
        raise box["error"]
    return box.get("value")


def left_running(before: set) -> list[str]:
    """Threads started since `before` that are still alive (the guard's own thread excluded)."""
    return sorted(t.name for t in threading.enumerate() if t not in before and t.name != "no-hang-guard"
                  and t.is_alive())


def layer_tar(size: int, seed: int = 1) -> bytes:
    """A layer of files totalling about `size` bytes, compressible but not trivially (words from a seed)."""
    rnd = random.Random(seed)
    words = [bytes(rnd.choice(b"abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(rnd.randint(3, 12)))
             for _ in range(4000)]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        i = 0
        while buf.tell() < size:
            data = b" ".join(rnd.choice(words) for _ in range(30000))
            info = tarfile.TarInfo(f"srv/data/file{i}.txt")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
            i += 1
    return buf.getvalue()


@pytest.fixture(scope="module")
def big_layer() -> bytes:
    return layer_tar(24 << 20)


def compressed(data: bytes, how: str) -> bytes:
    if how == "gzip":
        from isal import igzip

        return igzip.compress(data, compresslevel=0)
    if how == "zstd":
        import zstandard

        return zstandard.ZstdCompressor(level=1).compress(data)
    return data


class Watched(io.RawIOBase):
    """A blob that records every read after it was told the stream is closed, and can fail at an offset."""

    def __init__(self, data: bytes, fail_at: int | None = None):
        self.inner = io.BytesIO(data)
        self.fail_at = fail_at
        self.closed_stream = False
        self.reads_after_close: list[str] = []

    def readable(self):
        return True

    def read(self, n=-1):
        if self.closed_stream:
            self.reads_after_close.append(threading.current_thread().name)
        if self.fail_at is not None and self.inner.tell() >= self.fail_at:
            raise OSError("the disk went away")
        return self.inner.read(n)

    def readinto(self, b):
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)


def _open_read_close(raw, limits, stop_after: int | None):
    """Opens a LayerStream, walks (or reads `stop_after` bytes and stops) and closes it, as a scan does;
    returns how it ended and the threads left running once it was closed. All of it in one thread that
    lives on, as a scan's does (isal's reader ends by itself when the thread that opened it ends)."""
    from stowaway.ingest.layers import walk
    from stowaway.ingest.model import ScanError
    from stowaway.ingest.streams import LayerStream

    before = set(threading.enumerate())
    stream = LayerStream(raw, limits, "test: layer 0")
    try:
        if stop_after is not None:
            got = 0
            while got < stop_after:
                chunk = stream.tar.read(1 << 16)
                assert chunk, "the layer ended before the reader stopped"
                got += len(chunk)
            outcome = "stopped"
        else:
            try:
                walk(stream.tar, 0, [], limits, "test: layer 0")
                stream.finish()
                outcome = "finished"
            except ScanError as exc:
                outcome = str(exc)
    finally:
        stream.close()
        raw.closed_stream = True
    return outcome, left_running(before)


@pytest.mark.parametrize("how", ["gzip", "zstd", "none"])
def test_a_layer_abandoned_half_way_leaves_no_thread_reading_its_blob(big_layer, how):
    from stowaway.ingest.streams import Limits

    raw = Watched(compressed(big_layer, how))
    outcome, running = no_hang(_open_read_close, raw, Limits(), 3 << 20)
    assert outcome == "stopped"
    assert running == []  # isal's decompressor, the hashes and the read-ahead all ended
    assert raw.reads_after_close == []


@pytest.mark.parametrize("how", ["gzip", "zstd"])
@pytest.mark.parametrize("case", ["size cap", "corrupt", "truncated", "source fails"])
def test_a_layer_that_fails_mid_stream_fails_with_its_reason_and_ends_every_thread(big_layer, how, case):
    from stowaway.ingest.streams import Limits

    blob = compressed(big_layer, how)
    limits = Limits()
    fail_at = None
    # damaged data may decompress to a damaged tar before the decompressor notices (gzip checks its CRC
    # at the end; zstandard's stream reader ends a cut frame quietly): either reason is a true one
    damaged = ("corrupt compressed data", "corrupt tar header", "truncated or corrupt tar")
    if case == "size cap":
        limits = Limits(max_layer_bytes=4 << 20)
        want: tuple = ("decompressed size exceeds the limit of 4194304 bytes",)
    elif case == "corrupt":
        middle = len(blob) // 2
        blob = blob[:middle] + bytes(b ^ 0x5A for b in blob[middle:middle + 4096]) + blob[middle + 4096:]
        want = damaged
    elif case == "truncated":
        blob = blob[: len(blob) // 2]
        want = damaged
    else:
        fail_at = len(blob) // 3
        want = ("the disk went away",)
    raw = Watched(blob, fail_at)
    outcome, running = no_hang(_open_read_close, raw, limits, None)
    assert any(w in outcome for w in want), outcome
    assert running == []
    assert raw.reads_after_close == []


def test_a_whole_layer_gives_its_digests_and_ends_every_thread(big_layer):
    from stowaway.ingest.streams import LayerStream, Limits

    blob = compressed(big_layer, "gzip") + b"\0" * 1000  # padding after the gzip member: drained by finish()

    def read_all():
        before = set(threading.enumerate())
        stream = LayerStream(io.BytesIO(blob), Limits(), "test")
        try:
            while stream.tar.read(1 << 20):
                pass
            return stream.finish()
        finally:
            stream.close()
            assert left_running(before) == []

    digests = no_hang(read_all)
    assert digests == ("sha256:" + hashlib.sha256(blob).hexdigest(), "sha256:" + hashlib.sha256(big_layer).hexdigest())


def test_reading_a_closed_read_ahead_raises_instead_of_waiting():
    from stowaway.ingest.streams import ReadAhead

    ahead = ReadAhead(io.BytesIO(b"z" * 5_000_000), chunk=1000)
    assert ahead.read(3) == b"zzz"
    ahead.close()

    def read_again():
        with pytest.raises(ValueError, match="closed"):
            ahead.read(10)
        with pytest.raises(ValueError, match="closed"):
            ahead.read()
    no_hang(read_again)


def test_a_read_ahead_whose_thread_ended_without_a_word_raises_instead_of_waiting():
    from stowaway.ingest.streams import ReadAhead

    ahead = ReadAhead(io.BytesIO(b"z" * 5_000_000), chunk=1000)
    ahead._stop.set()  # the thread stops without handing over an end or an error (as a finalizer would)
    ahead._thread.join(GUARD)

    def drain():
        while ahead.read(1000):
            pass
    with pytest.raises(ValueError, match="stopped"):
        no_hang(drain)


class _Stuck:
    """A hash whose update blocks until released: the background thread falls behind and its queue fills."""

    def __init__(self):
        self.release = threading.Event()
        self.inner = hashlib.sha256()

    def update(self, data):
        self.release.wait(GUARD)
        self.inner.update(data)


def test_dropping_a_background_hash_with_a_full_queue_does_not_block_the_collector():
    from stowaway.ingest.streams import BackgroundHash

    bh = BackgroundHash("sha256")
    stuck = _Stuck()
    bh.hash = stuck  # before the first update, which starts the thread with it
    bh.update(b"first")  # the thread takes this one and blocks in update()
    thread = bh._thread
    for _ in range(BackgroundHash.PENDING):
        bh.update(b"queued")  # fills the queue

    def drop():
        nonlocal bh
        del bh  # the finalizer runs here: it must not wait for room in the full queue
        gc.collect()
    no_hang(drop)
    stuck.release.set()
    thread.join(GUARD)
    assert not thread.is_alive()


class _Dies:
    """A hash update that ends the thread that runs it with a BaseException (not an Exception)."""

    def update(self, data):
        raise KeyboardInterrupt


def test_a_background_hash_whose_update_raises_a_base_exception_does_not_block_the_reader():
    from stowaway.ingest.streams import BackgroundHash

    bh = BackgroundHash("sha256")
    bh.hash = _Dies()  # before the first update, which starts the thread with it

    def feed():
        for _ in range(4 * BackgroundHash.PENDING):
            bh.update(b"data")
        return bh.hexdigest()
    with pytest.raises(KeyboardInterrupt):
        no_hang(feed)


def test_an_abandoned_compressed_archive_stream_leaves_no_thread(tmp_path):
    """A `docker save | gzip` archive read as a stream, abandoned after its first layer (the caller
    stopped): the outer decompressor's thread ends with the generator."""
    from imagebuilder import ImageBuilder

    from stowaway.ingest.sources import LayerBlob
    from stowaway.ingest.sources.archive import _streamed
    from stowaway.ingest.streams import Limits

    img = ImageBuilder().raw_layer(layer_tar(6 << 20, seed=2)).raw_layer(layer_tar(6 << 20, seed=3))
    path = img.write_docker_archive(tmp_path / "a.tar.gz", ref="demo:1", compress_with="gzip")

    def first_layer_then_stop():
        before = set(threading.enumerate())
        events = _streamed(f"docker-archive:{path}", "docker-archive", str(path), "", Limits())
        for event in events:
            if isinstance(event, LayerBlob):
                event.stream.read(1000)
                break
        events.close()
        return left_running(before)
    assert no_hang(first_layer_then_stop) == []


def test_a_failing_layer_in_a_compressed_archive_fails_its_image_and_the_next_image_is_scanned(tmp_path):
    """The first image's gzip layer is corrupt half-way; the archive stream goes on to the second image
    (no thread of the failed layer reads the shared archive stream after it was closed)."""
    from imagebuilder import ImageBuilder

    from stowaway.ingest.db import connect
    from stowaway.ingest.pipeline import Scanner

    good = ImageBuilder().layer({"etc/os-release": "ID=alpine\nVERSION_ID=3.19.0\n", "srv/a.txt": "a"})
    good.write_oci_layout(tmp_path / "oci", ref="demo/good:1")
    bad_layer = compressed(layer_tar(6 << 20, seed=4), "gzip")
    bad_layer = bad_layer[: len(bad_layer) // 2] + b"\xff" * 5000 + bad_layer[len(bad_layer) // 2:]
    bad = tmp_path / "bad.tar.gz"
    bad_img = ImageBuilder().raw_layer(b"")
    bad_img.layers[0] = bad_layer  # stored as it is: a gzip blob whose middle is damaged
    bad_img.write_docker_archive(bad, ref="demo/bad:1", compress_with="gzip")
    database = str(tmp_path / "s.db")

    def scan():
        before = set(threading.enumerate())
        out = Scanner(connect(database), {}, progress=False).run([f"docker-archive:{bad}", f"oci:{tmp_path / 'oci'}"])
        gc.collect()
        return out, [n for n in left_running(before) if "_decompress" in n or n.startswith("stowaway-")]
    out, running = no_hang(scan)
    assert sorted(o.status for o in out) == ["done", "failed"]
    assert running == []
    error = connect(database).execute("SELECT error FROM scans WHERE status = 'failed'").fetchone()[0]
    assert "layer.tar: corrupt" in error  # the damaged layer, named, with its reason


def test_a_ctrl_c_inside_a_threads_start_leaves_the_stream_closable(monkeypatch):
    """Ctrl-C or SIGTERM (a KeyboardInterrupt) landing inside Thread.start(), before the thread says it
    started: closing what was being built must not raise "cannot join thread before it is started" (that
    replaced the interrupt with an internal error and the scan failed instead of being interrupted)."""
    from stowaway.ingest.streams import BackgroundHash, ReadAhead, RegionHash

    def interrupted(self):
        raise KeyboardInterrupt

    h = BackgroundHash("sha256")
    monkeypatch.setattr(threading.Thread, "start", interrupted)
    with pytest.raises(KeyboardInterrupt):
        h.update(b"x" * 100)
    with pytest.raises(KeyboardInterrupt):
        ReadAhead(io.BytesIO(b"y" * 100))
    with pytest.raises(KeyboardInterrupt):
        RegionHash(0, 0, 0)
    monkeypatch.undo()
    h.close()  # the owner's cleanup after the interrupt
