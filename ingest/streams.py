"""Byte streams: digest verification while reading, and decompression with bomb limits.

Every layer blob passes through `open_layer_stream`, which sniffs the compression (gzip, zstd or
plain tar), hashes the compressed bytes (the blob digest) and the uncompressed bytes (the diff_id)
as they flow, and stops a decompression bomb by size and ratio before it fills memory or time.
"""
from __future__ import annotations

import hashlib
import io
import os
import queue
import stat
import threading
import weakref
from dataclasses import dataclass
from typing import Any

from .model import ScanError

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
CHUNK = 1 << 20


@dataclass(frozen=True)
class Limits:
    """Per-layer caps. A layer that decompresses past either is refused (ratio only past ratio_floor)."""

    max_layer_bytes: int = 16 << 30
    max_ratio: float = 250.0
    ratio_floor: int = 64 << 20
    max_file_read: int = 256 << 20  # largest single file handed to analyzers
    max_in_memory_file: int = 16 << 20  # larger files reach analyzers through an unnamed temporary file
    max_json: int = 8 << 20  # manifests, configs, index.json
    max_entries: int = 2_000_000  # tar entries in one layer: each costs memory in the file index
    max_tar_header: int = 1 << 20  # PAX, GNU long-name and sparse extension headers of one tar entry
    max_package_db: int = 128 << 20  # a dpkg status, apk installed or rpm database larger than this is not read


POLL = 0.05  # seconds: how often a thread waiting on a queue looks whether the other side is still there


def put_while(pending: queue.Queue, item, alive) -> bool:
    """Puts `item` into the bounded queue `pending`, waiting for room only while `alive()` is true.
    False: the other side is gone and nothing was put (no wait on a queue nobody empties lasts)."""
    while True:
        try:
            pending.put(item, timeout=POLL)
            return True
        except queue.Full:
            if not alive():
                return False


def _stop_hash(pending: queue.Queue, stop: threading.Event) -> None:
    """Asks a hash thread to end without ever waiting (a finalizer may run in any thread, the hash
    thread's own included): it ends at its next item, or at this None when its queue has room."""
    stop.set()
    try:
        pending.put_nowait(None)
    except queue.Full:
        pass


def _started(thread: threading.Thread) -> threading.Thread:
    """THREAD, started, to be kept only now: a signal's KeyboardInterrupt (Ctrl-C, SIGTERM) can arrive inside
    start(), before the thread says it started, and a `join` of it then raises "cannot join thread before
    it is started", which replaced the interrupt with an internal error (a scan Ctrl-C'd at that moment
    failed instead of being marked interrupted). A thread launched so is a daemon and ends by its owner's
    stop event or queue, set by close() or the owner's finalizer, registered before the thread starts."""
    thread.start()
    return thread


class BackgroundHash:
    """A hash whose updates run in a thread of their own, in order: hashlib releases the GIL on large
    buffers, so the digest of a layer is computed on another core while the tar is parsed. At most
    `PENDING` chunks wait (bounded memory; the reader waits when the hash falls behind). Only
    immutable bytes may be passed: they are hashed later.

    No call waits forever: the thread takes every chunk whatever happens to it (an error, even a
    BaseException, is kept and raised by `hexdigest`), `close()` and a dropped object end it without
    waiting for room in its queue, and the reader stops waiting once the thread has ended."""

    PENDING = 8

    def __init__(self, algo: str):
        self.hash = hashlib.new(algo)
        self._queue: queue.Queue = queue.Queue(maxsize=self.PENDING)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._errors: list[BaseException] = []

    @staticmethod
    def _run(pending: queue.Queue, hash_, errors: list, stop: threading.Event) -> None:
        # holds no reference to the BackgroundHash, so that dropping it runs its finalizer
        while not stop.is_set():
            data = pending.get()
            if data is None or stop.is_set():
                return
            if errors:
                continue  # the digest is lost already: keep taking chunks so that the reader never waits
            try:
                hash_.update(data)
            except BaseException as exc:  # noqa: BLE001 - handed to the reader's thread by hexdigest()
                errors.append(exc)

    def update(self, data: bytes) -> None:
        if self._thread is None:
            if self._stop.is_set():
                raise ValueError("update of a closed background hash")
            weakref.finalize(self, _stop_hash, self._queue, self._stop)  # a reader dropped unfinished ends it
            # kept once started: a Ctrl-C inside start() must not leave close() a thread it cannot join
            self._thread = _started(threading.Thread(target=self._run, name="stowaway-hash", daemon=True,
                                                     args=(self._queue, self.hash, self._errors, self._stop)))
        if not put_while(self._queue, data, self._thread.is_alive):
            raise ValueError("update of a closed background hash")

    def _join(self) -> None:
        if self._thread is not None:
            put_while(self._queue, None, self._thread.is_alive)
            self._thread.join()
            self._thread = None
        if self._errors:
            raise self._errors[0]

    def hexdigest(self) -> str:
        self._join()
        return self.hash.hexdigest()

    def close(self) -> None:
        """Ends the thread (after the chunk it is hashing) and waits for it; the digest is given up."""
        _stop_hash(self._queue, self._stop)
        if self._thread is not None:
            self._thread.join()


class HashingReader(io.RawIOBase):
    """Reads from `raw`, hashing and counting every byte that passes (`background`: hashing in a thread)."""

    def __init__(self, raw, algo: str | None = "sha256", background: bool = False):
        self.raw = raw
        self.hash: Any = None  # None: count only
        if algo:
            self.hash = BackgroundHash(algo) if background else hashlib.new(algo)
        self.count = 0

    def readable(self):
        return True

    def readinto(self, b):
        data = bytes(self.raw.read(len(b)))
        n = len(data)
        b[:n] = data
        if self.hash is not None:
            self.hash.update(data)
        self.count += n
        return n

    def read(self, n=-1):
        data = self.raw.read() if n is None or n < 0 else self.raw.read(n)
        if self.hash is not None:
            self.hash.update(data if isinstance(data, bytes) else bytes(data))
        self.count += len(data)
        return data

    def drain(self):
        while self.read(CHUNK):
            pass

    def digest(self) -> str:
        if self.hash is None:
            raise ValueError("this reader only counts bytes")
        return "sha256:" + self.hash.hexdigest()


class BoundedDecompressor(io.RawIOBase):
    """Wraps a decompressing reader; refuses output past the size cap or the compression-ratio cap."""

    def __init__(self, inner, counted: HashingReader, limits: Limits, what: str):
        self.inner = inner
        self.counted = counted
        self.limits = limits
        self.what = what
        self.out = 0

    def readable(self):
        return True

    def _check(self):
        lim = self.limits
        if self.out > lim.max_layer_bytes:
            raise ScanError(f"{self.what}: decompressed size exceeds the limit of {lim.max_layer_bytes} bytes")
        if self.out > lim.ratio_floor and self.out > lim.max_ratio * max(self.counted.count, 1):
            raise ScanError(f"{self.what}: compression ratio exceeds {lim.max_ratio:g}:1 (decompression bomb?)")

    def read(self, n=-1):
        if n is None or n < 0:
            n = CHUNK
        try:
            data = self.inner.read(n)
        except (OSError, EOFError, ValueError) as exc:
            raise ScanError(f"{self.what}: corrupt compressed data ({exc})") from None
        except Exception as exc:  # zstandard raises its own ZstdError
            raise ScanError(f"{self.what}: corrupt compressed data ({exc})") from None
        self.out += len(data)
        self._check()
        return data

    def readinto(self, b):
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)

    def close(self) -> None:
        """Closes the decompressor too: isal's reader ends its thread (nothing reads the source after)."""
        if not self.closed:
            close = getattr(self.inner, "close", None)
            if close is not None:
                close()
        super().close()


class PeekReader(io.RawIOBase):
    """Lets the first bytes be looked at without losing them (streams cannot seek back)."""

    def __init__(self, raw):
        self.raw = raw
        self.head = b""

    def peek(self, n: int) -> bytes:
        while len(self.head) < n:
            more = self.raw.read(n - len(self.head))
            if not more:
                break
            self.head += more
        return self.head[:n]

    def readable(self):
        return True

    def read(self, n=-1):
        if self.head:
            if n is None or n < 0:
                data, self.head = self.head + self.raw.read(), b""
                return data
            data, self.head = self.head[:n], self.head[n:]
            if len(data) < n:
                data += self.raw.read(n - len(data))
            return data
        return self.raw.read() if n is None or n < 0 else self.raw.read(n)

    def readinto(self, b):
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)


def _gunzip(fileobj):
    """isal's threaded reader: decompression runs in its own thread, beside the tar parsing."""
    from isal import igzip_threaded

    return igzip_threaded.open(fileobj, "rb", threads=1)


def compression_of(head: bytes) -> str:
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if head.startswith(ZSTD_MAGIC):
        return "zstd"
    return "none"


def _read_ahead(raw, chunk: int, pending: queue.Queue, stop: threading.Event) -> None:
    """The reading thread of a ReadAhead: chunks (then b"" at the end, or the exception) into `pending`,
    each waiting for room only until the reader stops it."""
    def wanted() -> bool:
        return not stop.is_set()

    try:
        while not stop.is_set():
            data = raw.read(chunk)
            if not put_while(pending, data, wanted) or not data:
                return
    except BaseException as exc:  # noqa: BLE001 - raised again in the reader's thread, where it belongs
        put_while(pending, exc, wanted)


class ReadAhead:
    """Reads `raw` in `CHUNK` pieces in a thread of its own, at most `DEPTH` chunks ahead of the
    reader: the reading (pread, decompression) and the digests of a layer happen on another core
    while its tar is parsed. An error of the reading thread is raised by `read`, in the reader's
    thread, and by every read after it. `close()` stops the thread and waits for it: nothing reads
    `raw` after it returns, and a read after it raises instead of waiting."""

    DEPTH = 4

    def __init__(self, raw, chunk: int = CHUNK):
        self._pending: queue.Queue = queue.Queue(maxsize=self.DEPTH)
        self._stop = threading.Event()
        self._left = b""
        self._ended = False
        self._error: BaseException | None = None
        self._closed = False
        weakref.finalize(self, self._stop.set)
        self._thread = _started(threading.Thread(target=_read_ahead, args=(raw, chunk, self._pending, self._stop),
                                                 name="stowaway-read", daemon=True))

    def _get(self):
        while True:
            try:
                return self._pending.get(timeout=POLL)
            except queue.Empty:
                if not self._thread.is_alive():
                    try:
                        return self._pending.get_nowait()  # handed over just before the thread ended
                    except queue.Empty:
                        raise ValueError("the read-ahead thread stopped without an end or an error") from None

    def _next(self) -> bytes:
        if self._error is not None:
            raise self._error
        if self._ended:
            return b""
        if self._closed:
            raise ValueError("read of a closed read-ahead stream")
        item = self._get()
        if isinstance(item, BaseException):
            self._error = item
            raise item
        if not item:
            self._ended = True
            self._thread.join()
        return item

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            parts = [self._left]
            self._left = b""
            while chunk := self._next():
                parts.append(chunk)
            return b"".join(parts)
        if not self._left:
            self._left = self._next()
        data, self._left = self._left[:n], self._left[n:]
        return data

    def close(self) -> None:
        """Stops the thread and waits for it (it ends after the read it is in: `raw` is finite)."""
        self._closed = True
        self._stop.set()
        while True:  # room in the queue: a thread waiting to put sees the stop at once
            try:
                self._pending.get_nowait()
            except queue.Empty:
                break
        self._thread.join()
        self._left = b""


def local_region(raw) -> tuple[int, int, int] | None:
    """(descriptor, offset, size) when `raw` is a stretch of a local regular file that can be read by
    position (a member of a `docker save` or OCI archive, a blob of an OCI layout directory), else None."""
    region = getattr(raw, "region", None)
    if callable(region):
        return region()
    if isinstance(raw, io.BufferedReader) and isinstance(raw.raw, io.FileIO):
        try:
            fd = raw.fileno()
            st = os.fstat(fd)
            pos = raw.tell()
        except (OSError, ValueError):
            return None
        if stat.S_ISREG(st.st_mode) and st.st_size >= pos:
            return fd, pos, st.st_size - pos
    return None


def _hash_region(fd: int, offset: int, size: int, hash_, stop: threading.Event, done: list, errors: list) -> None:
    """The thread of a RegionHash: large positional reads into one buffer, each hashed where it lies. Both
    calls release the GIL; with few, large chunks the thread rarely waits for it while the tar is parsed."""
    buf = bytearray(RegionHash.CHUNK)
    view = memoryview(buf)
    count = 0
    try:
        while count < size and not stop.is_set():
            n = os.preadv(fd, [view[:min(len(buf), size - count)]], offset + count)
            if n <= 0:
                break  # the file is shorter than it was: the digest then says the layer is not what was named
            hash_.update(view[:n])
            count += n
    except BaseException as exc:  # noqa: BLE001 - raised by digest() in the reader's thread
        errors.append(exc)
    finally:
        view.release()
        done.append(count)


class RegionHash:
    """The sha256 of a stretch of a local file, computed in a thread of its own straight from the file
    (no copy passes through the reader's thread, no queue): a layer's digest is checked in full whatever
    part of it the tar walk reads. `close()` stops the thread and waits for it: nothing reads the file
    after it returns."""

    CHUNK = 4 << 20

    def __init__(self, fd: int, offset: int, size: int):
        self.hash = hashlib.sha256()
        self._stop = threading.Event()
        self._done: list[int] = []
        self._errors: list[BaseException] = []
        self._thread = _started(threading.Thread(target=_hash_region, name="stowaway-hash", daemon=True,
                                                 args=(fd, offset, size, self.hash, self._stop, self._done,
                                                       self._errors)))

    @property
    def count(self) -> int:
        """Bytes hashed (known once the hash has ended)."""
        self._thread.join()
        return self._done[0] if self._done else 0

    def digest(self) -> str:
        self._thread.join()
        if self._errors:
            raise self._errors[0]
        if self._stop.is_set():
            raise ValueError("digest of a closed region hash")
        return "sha256:" + self.hash.hexdigest()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


class RegionReader:
    """The uncompressed tar of a local, uncompressed blob, read by position (`os.pread`) in the reader's
    own thread: from the page cache a read costs less than handing a chunk over from another thread.
    `skip_to` moves forward without reading: a file's content no analyzer wants is never copied
    (the layer's digest is computed apart, by a RegionHash)."""

    def __init__(self, fd: int, offset: int, size: int):
        self.fd, self.offset, self.size, self.pos = fd, offset, size, 0
        self.closed = False

    def read(self, n: int = -1) -> bytes:
        if self.closed:
            raise ValueError("read of a closed layer stream")
        left = self.size - self.pos
        n = left if n is None or n < 0 else min(n, left)
        data = os.pread(self.fd, n, self.offset + self.pos) if n > 0 else b""
        if n > 0 and not data:  # the file is shorter than the blob it held: cut, as a stream would end
            raise EOFError("unexpected end of data")
        self.pos += len(data)
        return data

    def skip_to(self, pos: int) -> None:
        """The next read starts at `pos` (never before the current position, never past the blob's end)."""
        if pos < self.pos:
            raise OSError("cannot seek backwards in a stream")
        if pos > self.size:
            self.pos = self.size
            raise EOFError("unexpected end of data")
        self.pos = pos

    def close(self) -> None:
        self.closed = True


class LayerStream:
    """A layer blob opened for one pass: `.tar` is the uncompressed stream to hand to tarfile.

    Up to four threads serve it: the blob's hash, isal's gzip decompression, the uncompressed bytes'
    hash and the read-ahead. `close()` ends them all, on every path (finished, failed, abandoned):
    nothing reads the blob after it returns, which matters when the blob is a member of a larger
    stream that is read on (a compressed `docker save`)."""

    def __init__(self, raw, limits: Limits, what: str):
        self._gzip = None
        self._region: RegionHash | None = None
        self.tar: ReadAhead | RegionReader
        region = local_region(raw)
        if region is not None and 0 < region[2] <= limits.max_layer_bytes:
            fd, offset, size = region
            if compression_of(os.pread(fd, 4, offset)) == "none":
                # an uncompressed blob in a local file (the usual `docker save`): read by position, the
                # digest computed apart from the walk over the whole blob (a blob over the size cap takes
                # the general path below, which refuses it at the cap)
                self.compression = "none"
                self._region = RegionHash(fd, offset, size)
                self.tar = RegionReader(fd, offset, size)
                return
        self.blob = HashingReader(raw, background=True)
        try:
            peek = PeekReader(self.blob)
            self.compression = compression_of(peek.peek(4))
            if self.compression == "gzip":
                inner = self._gzip = _gunzip(peek)
            elif self.compression == "zstd":
                import zstandard

                inner = zstandard.ZstdDecompressor().stream_reader(peek, read_across_frames=True)  # type: ignore[arg-type]
            else:
                inner = peek
            # an uncompressed blob's digest is its diff_id: hash those bytes once, not twice
            algo = None if self.compression == "none" else "sha256"
            self.uncompressed = HashingReader(BoundedDecompressor(inner, self.blob, limits, what), algo,
                                              background=True)
            # read ahead in a thread, unbuffered: the tar walker's ForwardReader takes whole chunks and keeps them
            self.tar = ReadAhead(self.uncompressed)
        except BaseException:
            self.close()
            raise

    @property
    def deferrable(self) -> bool:
        """Whether the digest is computed in a thread of its own, whatever the walk reads (`finish` may then
        be called later, while another layer is walked)."""
        return self._region is not None

    @property
    def sizes(self) -> tuple[int, int]:
        """(blob bytes, uncompressed bytes) read, once `finish` returned."""
        if self._region is not None:
            return self._region.count, self._region.count
        return self.blob.count, self.uncompressed.count

    def finish(self) -> tuple[str, str]:
        """Reads what tarfile left (end-of-archive padding) and returns (blob digest, diff_id)."""
        if self._region is not None:
            digest = self._region.digest()
            return digest, digest
        while self.tar.read(CHUNK):
            pass
        if self._gzip is not None:
            self._gzip.close()  # its thread has ended (it handed over the end): the blob is this thread's alone
            self._gzip = None
        self.blob.drain()
        if self.uncompressed.hash is None:
            return self.blob.digest(), self.blob.digest()
        return self.blob.digest(), self.uncompressed.digest()

    def close(self) -> None:
        """Ends every thread of the stream (a layer finished, failed or abandoned half-way), in the
        order of the data: the read-ahead, then the decompressor, then the hashes they fed."""
        tar: ReadAhead | RegionReader | None = getattr(self, "tar", None)  # None: __init__ failed before it
        if tar is not None:
            tar.close()
        if self._region is not None:
            self._region.close()
            return
        if self._gzip is not None:
            self._gzip.close()  # sets isal's worker to stop, empties its queue and joins it
            self._gzip = None
        for reader in (getattr(self, "uncompressed", None), self.blob):
            if reader is not None and isinstance(reader.hash, BackgroundHash):
                reader.hash.close()


def open_outer(fileobj, limits: Limits, what: str):
    """An archive file (docker save output) that may itself be gzip or zstd compressed."""
    peek = PeekReader(fileobj)
    kind = compression_of(peek.peek(4))
    if kind == "none":
        return peek, kind
    counted = HashingReader(peek)
    if kind == "gzip":
        inner = _gunzip(counted)
    else:
        import zstandard

        inner = zstandard.ZstdDecompressor().stream_reader(counted, read_across_frames=True)  # type: ignore[arg-type]
    outer_limits = Limits(max_layer_bytes=limits.max_layer_bytes * 8, max_ratio=limits.max_ratio,
                          ratio_floor=limits.ratio_floor)
    return io.BufferedReader(BoundedDecompressor(inner, counted, outer_limits, what), buffer_size=CHUNK), kind


def read_json_bytes(data: bytes, what: str):
    import json

    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ScanError(f"{what}: invalid JSON ({str(exc)[:120]})") from None
    except RecursionError:
        raise ScanError(f"{what}: JSON nested too deeply") from None
