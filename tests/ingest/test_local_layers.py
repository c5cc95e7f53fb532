"""An uncompressed layer in a local file (a `docker save` member, an OCI layout's blob) is read by position.

Its digest is computed apart from the tar walk, over every byte of the blob, and the walk moves past
content no analyzer wants without reading it. These tests check what must not change with it: a layer
changed anywhere, even inside a file nobody reads, fails its image; the entries and digests are those
of the general (streamed) path; the size cap holds; and no thread of a layer outlives its stream.
"""
from __future__ import annotations

import hashlib
import io
import os
import threading

import pytest
from imagebuilder import File, ImageBuilder, layer_tar
from test_stream_threads import left_running, no_hang


def _image() -> ImageBuilder:
    # /usr/ is excluded by the secrets analyzer: with --risk secrets its content is passed over unread
    return ImageBuilder().layer({
        "etc/os-release": "ID=alpine\nVERSION_ID=3.18.4\n",
        "usr/share/big.bin": File(b"u" * 300_000),
        "app/config.env": "AWS_ACCESS_KEY_ID=AKIAQYLPMN5HFIQR7XYA\n",
    })


def _flip_in_skipped_file(path, marker: bytes = b"u" * 4096) -> None:
    """Changes one byte inside /usr/share/big.bin's content, in place (same size, same names)."""
    data = bytearray(open(path, "rb").read())
    at = data.find(marker) + 1000
    assert at > 1000
    data[at] ^= 0x01
    with open(path, "wb") as fh:
        fh.write(bytes(data))


@pytest.mark.parametrize("layout", ["legacy", "oci"])
def test_a_byte_changed_in_content_no_analyzer_reads_still_fails_the_image(tmp_path, scan, layout):
    path = _image().write_docker_archive(tmp_path / "t.tar", ref="tamper:1", layout=layout)
    _flip_in_skipped_file(path)
    _, outcomes = scan(f"docker-archive:{path}", risks=["secrets"])
    assert outcomes[0].status == "failed"
    assert "digest mismatch" in outcomes[0].error, outcomes[0].error


def test_an_oci_layout_blob_changed_in_unread_content_fails_the_image(tmp_path, scan):
    _image().write_oci_layout(tmp_path / "oci", ref="tamper:2", layer_compression="none")
    blobs = tmp_path / "oci" / "blobs" / "sha256"
    layer = next(p for p in blobs.iterdir() if p.read_bytes()[257:262] == b"ustar")
    _flip_in_skipped_file(layer)
    _, outcomes = scan(f"oci:{tmp_path / 'oci'}", risks=["secrets"])
    assert outcomes[0].status == "failed"
    assert "digest mismatch" in outcomes[0].error, outcomes[0].error


def test_the_untampered_image_is_scanned_and_its_secret_found(tmp_path, scan):
    path = _image().write_docker_archive(tmp_path / "t.tar", ref="clean:1")
    database, outcomes = scan(f"docker-archive:{path}", risks=["secrets"])
    assert outcomes[0].status == "done", outcomes[0].error
    rows = database.execute("SELECT path FROM findings WHERE kind = 'secret'").fetchall()
    assert ("/app/config.env",) in rows


def _region_file(tmp_path, data: bytes, pad: int = 1536):
    """`data` stored at an offset inside a larger file, as a layer lies inside a `docker save` archive."""
    from stowaway.ingest.sources.archive import _Region

    path = tmp_path / "outer.bin"
    path.write_bytes(b"\x5a" * pad + data + b"\x5a" * 777)
    fd = os.open(path, os.O_RDONLY)
    return fd, _Region(fd, pad, len(data))


def _walk(stream, analyzers=()):
    from stowaway.ingest.layers import walk
    from stowaway.ingest.streams import Limits

    return walk(stream.tar, 0, list(analyzers), Limits(), "test: layer 0")


def test_a_local_region_gives_the_same_entries_and_digests_as_the_streamed_path(tmp_path):
    from stowaway.ingest.streams import LayerStream, Limits, RegionReader

    layer = layer_tar({f"usr/lib/f{i}": b"x" * (i * 97 % 3000) for i in range(400)} | {"etc/hosts": b"h"})
    fd, region = _region_file(tmp_path, layer)
    try:
        before = set(threading.enumerate())
        local = LayerStream(region, Limits(), "test")
        try:
            assert isinstance(local.tar, RegionReader)  # read by position, not through the read-ahead
            got = _walk(local)
            digests = local.finish()
            sizes = local.sizes
        finally:
            local.close()
        assert left_running(before) == []
        streamed = LayerStream(io.BytesIO(layer), Limits(), "test")
        try:
            want = _walk(streamed)
            want_digests = streamed.finish()
        finally:
            streamed.close()
    finally:
        os.close(fd)
    assert got.entries == want.entries and len(got.entries) == 401
    assert digests == want_digests == ("sha256:" + hashlib.sha256(layer).hexdigest(),) * 2
    assert sizes == (len(layer), len(layer))


def test_content_passed_over_is_not_read_by_the_walk(tmp_path, monkeypatch):
    from stowaway.ingest import streams
    from stowaway.ingest.streams import LayerStream, Limits

    layer = layer_tar({"usr/bin/huge": b"\0" * (8 << 20), "etc/hosts": b"h"})
    fd, region = _region_file(tmp_path, layer)
    read = []
    real = streams.RegionReader.read

    def counting(self, n=-1):
        data = real(self, n)
        read.append(len(data))
        return data

    monkeypatch.setattr(streams.RegionReader, "read", counting)
    try:
        stream = LayerStream(region, Limits(), "test")
        try:
            result = _walk(stream)
            digest = stream.finish()[1]
        finally:
            stream.close()
    finally:
        os.close(fd)
    assert [e[0] for e in result.entries] == ["/usr/bin/huge", "/etc/hosts"]
    assert sum(read) < (2 << 20)  # the 8 MiB file was skipped by position; headers only were read
    assert digest == "sha256:" + hashlib.sha256(layer).hexdigest()  # yet every byte is in the digest


def test_a_region_longer_than_its_file_gives_a_digest_that_does_not_match(tmp_path):
    """The archive was cut after it was listed: the walk fails or the digest says so, and nothing hangs."""
    from stowaway.ingest.model import ScanError
    from stowaway.ingest.sources.archive import _Region
    from stowaway.ingest.streams import LayerStream, Limits

    layer = layer_tar({f"srv/f{i}": b"y" * 5000 for i in range(50)})
    path = tmp_path / "cut.bin"
    path.write_bytes(layer[: len(layer) // 2])
    fd = os.open(path, os.O_RDONLY)

    def read():
        stream = LayerStream(_Region(fd, 0, len(layer)), Limits(), "test")
        try:
            try:
                _walk(stream)
            except ScanError as exc:
                return str(exc)
            return stream.finish()
        finally:
            stream.close()

    try:
        before = set(threading.enumerate())
        outcome = no_hang(read)
        assert left_running(before) == []
    finally:
        os.close(fd)
    assert "truncated" in outcome if isinstance(outcome, str) else \
        outcome[1] != "sha256:" + hashlib.sha256(layer).hexdigest()


def test_a_layer_over_the_size_cap_is_still_refused_at_the_cap(tmp_path):
    from stowaway.ingest.model import ScanError
    from stowaway.ingest.streams import LayerStream, Limits

    layer = layer_tar({f"srv/f{i}": b"z" * 100_000 for i in range(60)})
    fd, region = _region_file(tmp_path, layer)
    limits = Limits(max_layer_bytes=1 << 20)
    try:
        stream = LayerStream(region, limits, "test")
        try:
            with pytest.raises(ScanError, match="decompressed size exceeds the limit of 1048576 bytes"):
                from stowaway.ingest.layers import walk

                walk(stream.tar, 0, [], limits, "test")
                stream.finish()
        finally:
            stream.close()
    finally:
        os.close(fd)


def test_a_local_layer_abandoned_half_way_leaves_no_thread(tmp_path):
    from stowaway.ingest.streams import LayerStream, Limits

    layer = layer_tar({f"srv/f{i}": b"w" * 400_000 for i in range(60)})
    fd, region = _region_file(tmp_path, layer)

    def stop_early():
        before = set(threading.enumerate())
        stream = LayerStream(region, Limits(), "test")
        try:
            assert stream.tar.read(1 << 16)
        finally:
            stream.close()
        with pytest.raises(ValueError, match="closed"):
            stream.tar.read(10)
        return left_running(before)

    try:
        assert no_hang(stop_early) == []
    finally:
        os.close(fd)


def test_a_blob_file_of_an_oci_layout_is_read_by_position(tmp_path):
    from stowaway.ingest.streams import local_region

    path = tmp_path / "blob"
    path.write_bytes(b"0123456789")
    with open(path, "rb", buffering=1 << 20) as fh:
        assert local_region(fh) == (fh.fileno(), 0, 10)
    assert local_region(io.BytesIO(b"abc")) is None  # a stream of no file: the general path
    r, w = os.pipe()
    try:
        with os.fdopen(r, "rb") as pipe:
            assert local_region(pipe) is None  # not a regular file
    finally:
        os.close(w)



@pytest.mark.parametrize("cut", ["in a skipped file", "past the blob"])
def test_a_layer_cut_inside_content_the_walk_passes_over_is_truncated(tmp_path, cut):
    """Content passed over by position must end where a stream would: a tar whose last file is cut short
    (or whose file ends before the blob it was listed with) fails as truncated, not as a shorter layer."""
    from stowaway.ingest.layers import walk
    from stowaway.ingest.model import ScanError
    from stowaway.ingest.sources.archive import _Region
    from stowaway.ingest.streams import LayerStream, Limits

    layer = layer_tar({"etc/hosts": b"h", "usr/share/blob": b"b" * (3 << 20)})
    if cut == "in a skipped file":
        data, size = layer[: 2 << 20], 2 << 20  # the blob itself ends inside /usr/share/blob
    else:
        data, size = layer[: 2 << 20], len(layer)  # the archive was listed whole, then cut on disk
    path = tmp_path / "cut.tar"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        stream = LayerStream(_Region(fd, 0, size), Limits(), "test")
        try:
            with pytest.raises(ScanError, match="truncated"):
                walk(stream.tar, 0, [], Limits(), "test")
        finally:
            stream.close()
    finally:
        os.close(fd)


def test_a_layer_index_is_stored_as_the_same_json_whichever_encoder_writes_it():
    """pack_entries (orjson) writes the bytes pack (the standard json module) writes, and unpack reads them;
    an entry orjson refuses (a size past 64 bits, from a base-256 tar header) is still written."""
    from stowaway.ingest.cache import _zstd, pack, pack_entries, unpack

    entries = [("/etc/hosts", "file", 12, 0o644, 0, 0, ""), ("/usr/bin/vi", "symlink", 0, 0o777, 0, 0, "vim"),
               ("/srv/ünï\u2603 \"q\"\\", "file", 3, 0o600, 1000, 1000, "")]
    assert _zstd()[1].decompress(pack_entries(entries)) == _zstd()[1].decompress(pack(entries))
    assert unpack(pack_entries(entries)) == [list(e) for e in entries]
    huge = [("/big", "file", 1 << 70, 0o644, 0, 0, "")]
    assert unpack(pack_entries(huge)) == [["/big", "file", 1 << 70, 0o644, 0, 0, ""]]


@pytest.mark.parametrize("count, fails", [(3000, True), (2400, False)])
def test_the_entry_cap_holds_for_entries_indexed_in_bulk(tmp_path, scan, count, fails):
    """Files no analyzer reads (/usr under --risk secrets) are indexed a chunk at a time: the cap on
    entries in one layer still stops the layer at its limit, and a layer under it is read whole."""
    img = ImageBuilder().layer({f"usr/share/doc/f{i}": "x" for i in range(count)})
    path = img.write_docker_archive(tmp_path / "many.tar", ref="cap:1")
    database, outcomes = scan(f"docker-archive:{path}", risks=["secrets"], policy={"limits": {"max_entries": 2500}})
    if fails:  # past the first chunk (about 1,000 of these entries each): the cap is met in bulk indexing's reach
        assert outcomes[0].status == "failed" and "more than 2500 entries" in outcomes[0].error
    else:
        assert outcomes[0].status == "done", outcomes[0].error
        assert database.execute("SELECT entries FROM layers").fetchone() == (count,)


def test_objects_made_during_a_gc_pause_go_to_the_oldest_generation_and_are_still_collected():
    """gc_paused moves what was made during it to the oldest generation (the first collection after a
    layer's walk no longer walks every entry made during it), and a full collection still frees cyclic
    garbage made during the pause: nothing is frozen for good (the database connection is closed at exit)."""
    import gc
    import weakref

    from stowaway.ingest.layers import gc_paused

    class Node:
        pass

    gc.collect()
    with gc_paused():
        assert not gc.isenabled()
        cycle = Node()
        cycle.me = cycle  # type: ignore[attr-defined]
        gone = weakref.ref(cycle)
    assert gc.isenabled() and gc.get_freeze_count() == 0
    assert any(o is cycle for o in gc.get_objects(generation=2))
    del cycle
    gc.collect(1)  # the young generations: it is not there
    assert gone() is not None
    gc.collect()
    assert gone() is None


@pytest.mark.parametrize("processes", ["1", "2"])
def test_a_layer_whose_digest_is_settled_after_the_next_walk_is_still_checked(tmp_path, scan, monkeypatch,
                                                                              processes):
    """A layer's digest is computed while the next layer is walked: a changed first layer of three still
    fails the image, and the untouched image's layers are all stored with their digests."""
    from stowaway.ingest import parallel

    monkeypatch.setenv("STOWAWAY_LAYER_PROCESSES", processes)
    monkeypatch.setattr(parallel.threading, "active_count", lambda: 1)  # pytest's idle threads
    img = _image().layer({"srv/b": "b" * 5000}).layer({"srv/c": "c" * 5000})
    good = img.write_docker_archive(tmp_path / "good.tar", ref="three:1")
    bad = img.write_docker_archive(tmp_path / "bad.tar", ref="three:2")
    _flip_in_skipped_file(bad)
    # the changed archive first: none of its layers is in the cache yet, each is walked and hashed
    database, outcomes = scan(f"docker-archive:{bad}", f"docker-archive:{good}", risks=["secrets"])
    assert outcomes[0].status == "failed" and "digest mismatch" in outcomes[0].error, outcomes[0].error
    assert outcomes[1].status == "done", outcomes[1].error
    stored = {r[0] for r in database.execute("SELECT diff_id FROM layers")}
    assert stored == {"sha256:" + hashlib.sha256(layer).hexdigest() for layer in img.layers}
