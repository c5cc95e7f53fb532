"""Byte streams: digest verification while reading, and decompression with bomb limits.

Every layer blob passes through `open_layer_stream`, which sniffs the compression (gzip, zstd or
plain tar), hashes the compressed bytes (the blob digest) and the uncompressed bytes (the diff_id)
as they flow, and stops a decompression bomb by size and ratio before it fills memory or time.
"""
from __future__ import annotations

import hashlib
import io
import queue
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


class BackgroundHash:
    """A hash whose updates run in a thread of their own, in order: hashlib releases the GIL on large
    buffers, so the digest of a layer is computed on another core while the tar is parsed. At most
    `PENDING` chunks wait (bounded memory; the reader waits when the hash falls behind). Only
    immutable bytes may be passed: they are hashed later."""

    PENDING = 8

    def __init__(self, algo: str):
        self.hash = hashlib.new(algo)
        self._queue: queue.Queue = queue.Queue(maxsize=self.PENDING)
        self._thread: threading.Thread | None = None
        self._errors: list[Exception] = []

    @staticmethod
    def _run(pending: queue.Queue, hash_, errors: list) -> None:  # holds no reference to the BackgroundHash
        while True:
            data = pending.get()
            if data is None:
                return
            try:
                hash_.update(data)
            except Exception as exc:  # handed to the reader's thread at the end
                errors.append(exc)

    def update(self, data: bytes) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, args=(self._queue, self.hash, self._errors),
                                            name="stowaway-hash", daemon=True)
            self._thread.start()
            weakref.finalize(self, self._queue.put, None)  # a reader dropped unfinished stops its thread
        self._queue.put(data)

    def _join(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None
        if self._errors:
            raise self._errors[0]

    def hexdigest(self) -> str:
        self._join()
        return self.hash.hexdigest()


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
    """The reading thread of a ReadAhead: chunks (then b"" at the end, or the exception) into `pending`."""
    def put(item) -> None:
        while not stop.is_set():
            try:
                pending.put(item, timeout=0.05)
                return
            except queue.Full:
                continue

    try:
        while not stop.is_set():
            data = raw.read(chunk)
            put(data)
            if not data:
                return
    except BaseException as exc:  # noqa: BLE001 - raised again in the reader's thread, where it belongs
        put(exc)


class ReadAhead:
    """Reads `raw` in `CHUNK` pieces in a thread of its own, at most `DEPTH` chunks ahead of the
    reader: the reading (pread, decompression) and the digests of a layer happen on another core
    while its tar is parsed. An error of the reading thread is raised by `read`, in the reader's
    thread. `close()` stops the thread and waits for it: nothing reads `raw` after it returns."""

    DEPTH = 4

    def __init__(self, raw, chunk: int = CHUNK):
        self._pending: queue.Queue = queue.Queue(maxsize=self.DEPTH)
        self._stop = threading.Event()
        self._left = b""
        self._ended = False
        self._thread = threading.Thread(target=_read_ahead, args=(raw, chunk, self._pending, self._stop),
                                        name="stowaway-read", daemon=True)
        self._thread.start()
        weakref.finalize(self, self._stop.set)

    def _next(self) -> bytes:
        if self._ended:
            return b""
        item = self._pending.get()
        if isinstance(item, BaseException):
            self._ended = True
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
        self._stop.set()
        self._thread.join()


class LayerStream:
    """A layer blob opened for one pass: `.tar` is the uncompressed stream to hand to tarfile."""

    def __init__(self, raw, limits: Limits, what: str):
        self.blob = HashingReader(raw, background=True)
        peek = PeekReader(self.blob)
        self.compression = compression_of(peek.peek(4))
        if self.compression == "gzip":
            inner = _gunzip(peek)
        elif self.compression == "zstd":
            import zstandard

            inner = zstandard.ZstdDecompressor().stream_reader(peek, read_across_frames=True)  # type: ignore[arg-type]
        else:
            inner = peek
        # an uncompressed blob's digest is its diff_id: hash those bytes once, not twice
        algo = None if self.compression == "none" else "sha256"
        self.uncompressed = HashingReader(BoundedDecompressor(inner, self.blob, limits, what), algo, background=True)
        # read ahead in a thread, unbuffered: the tar walker's ForwardReader takes whole chunks and keeps them
        self.tar = ReadAhead(self.uncompressed)

    def finish(self) -> tuple[str, str]:
        """Reads what tarfile left (end-of-archive padding) and returns (blob digest, diff_id)."""
        while self.tar.read(CHUNK):
            pass
        self.blob.drain()
        if self.uncompressed.hash is None:
            return self.blob.digest(), self.blob.digest()
        return self.blob.digest(), self.uncompressed.digest()

    def close(self) -> None:
        """Stops the reading thread (a layer abandoned half-way): nothing reads the blob after this."""
        self.tar.close()


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
