"""`docker-archive:` and `oci:` sources: a `docker save` tar (legacy or OCI-style) or an OCI layout.

Both are trees of files holding manifest.json and/or index.json plus blobs. The tree is a directory,
a seekable plain tar (random access: nothing is read that is not needed), or a compressed tar that
can only be streamed once (layers are analyzed as they pass, images matched at the end).
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import os
import posixpath
import tarfile
from typing import Iterator

from ..model import ImageSpec, LayerDescriptor, ScanError
from ..streams import CHUNK, Limits, PeekReader, compression_of, open_outer, read_json_bytes
from . import INDEX_TYPES, MANIFEST_TYPES, REF_ANNOTATION, LayerBlob, SourceFailure, shapes  # noqa: F401

MAX_INDEX_DEPTH = 4


class Tree:
    """Random access to the files of a directory or a plain tar."""

    def __init__(self, location: str, limits: Limits):
        self.location = location
        self.limits = limits
        self.dir = os.path.isdir(location)
        self.members: dict[str, tarfile.TarInfo] = {}
        self.tar = None
        if not self.dir:
            try:
                self.tar = tarfile.open(location, mode="r:")
                for m in self.tar.getmembers():
                    if m.isreg():
                        self.members[posixpath.normpath(m.name.lstrip("./") or ".")] = m
            except (tarfile.TarError, EOFError, OSError) as exc:
                raise ScanError(f"{location}: not a readable tar archive ({exc})") from None

    def exists(self, name: str) -> bool:
        name = posixpath.normpath(name)
        if self.dir:
            return os.path.isfile(self._safe(name))
        return name in self.members

    def _safe(self, name: str) -> str:
        full = os.path.realpath(os.path.join(self.location, name))
        root = os.path.realpath(self.location)
        if not full.startswith(root + os.sep):
            raise ScanError(f"{name}: path leaves the image layout")
        return full

    def size(self, name: str) -> int:
        name = posixpath.normpath(name)
        if not self.exists(name):
            raise ScanError(f"{self.location}: blob {name} is missing")
        if self.dir:
            return os.path.getsize(self._safe(name))
        return self.members[name].size

    def open(self, name: str):
        name = posixpath.normpath(name)
        if not self.exists(name):
            raise ScanError(f"{self.location}: blob {name} is missing")
        if self.dir or self.tar is None:
            return open(self._safe(name), "rb", buffering=CHUNK)
        member = self.members[name]
        fileno = getattr(self.tar.fileobj, "fileno", None)  # the archive file tarfile opened
        if member.sparse is None and fileno is not None:
            return _Region(fileno(), member.offset_data, member.size)
        return self.tar.extractfile(member)

    def read(self, name: str, limit: int) -> bytes:
        if self.size(name) > limit:
            raise ScanError(f"{name}: {self.size(name)} bytes is larger than the {limit}-byte limit for metadata")
        with self.open(name) as fh:
            return fh.read()


class _Region(io.RawIOBase):
    """A plain member of a tar file on disk, read by pread at its offset: one copy, straight from the
    page cache, and a position of its own (tarfile's file object copies each read twice more)."""

    def __init__(self, fd: int, offset: int, size: int):
        self.fd, self.offset, self.size, self.pos = fd, offset, size, 0

    def readable(self) -> bool:
        return True

    def read(self, n: int | None = -1) -> bytes:
        left = self.size - self.pos
        n = left if n is None or n < 0 else min(n, left)
        data = os.pread(self.fd, n, self.offset + self.pos) if n > 0 else b""
        self.pos += len(data)
        return data

    def readall(self) -> bytes:
        return self.read(-1)

    def region(self) -> tuple[int, int, int]:
        """(descriptor, offset, size) of what is left to read: the layer stream reads it by position."""
        return self.fd, self.offset + self.pos, self.size - self.pos

    def readinto(self, b) -> int:
        data = self.read(len(b))
        b[:len(data)] = data
        return len(data)


def _blob_path(digest: str) -> str:
    algo, _, hexd = digest.partition(":")
    if algo not in ("sha256", "sha512") or not hexd or not all(c in "0123456789abcdef" for c in hexd):
        raise ScanError(f"invalid digest {digest[:80]!r}")
    return f"blobs/{algo}/{hexd}"


def _verify(data: bytes, digest: str, what: str) -> None:
    algo, _, hexd = digest.partition(":")
    if hashlib.new(algo, data).hexdigest() != hexd:
        raise ScanError(f"{what}: digest mismatch (expected {digest})")


class Layout:
    """Finds images in a tree's manifest.json / index.json, reading JSON through `read(name)`."""

    def __init__(self, read, label: str, limits: Limits):
        self.read = read
        self.label = label
        self.limits = limits

    def json_blob(self, digest: str, what: str):
        data = self.read(_blob_path(digest))
        _verify(data, digest, what)
        return read_json_bytes(data, what), data

    def docker_images(self, manifest: list) -> Iterator[ImageSpec | SourceFailure]:
        if not isinstance(manifest, list):
            raise ScanError(f"{self.label}: manifest.json is not a list")
        for n, entry in enumerate(manifest):
            tags = entry.get("RepoTags") if isinstance(entry, dict) else None
            ref = tags[0] if isinstance(tags, list) and tags and isinstance(tags[0], str) else f"{self.label}#{n}"
            try:
                shapes.save_entry(entry, f"{ref}: manifest.json entry {n}")
                config_name = entry["Config"]
                config_bytes = self.read(config_name)
                config = shapes.config(read_json_bytes(config_bytes, f"{ref}: config {config_name}"),
                                       f"{ref}: config")
                config_digest = "sha256:" + hashlib.sha256(config_bytes).hexdigest()
                base = posixpath.basename(config_name)
                if base.removesuffix(".json") != config_digest[7:] and base != config_digest[7:]:
                    raise ScanError(f"{ref}: config {config_name} does not match its digest")
                layer_names = entry.get("Layers") or []
                layers = self._descriptors(config, [("", name, 0, "") for name in layer_names], ref)
                yield ImageSpec(reference=ref, source=self.label, manifest_digest=_docker_manifest_digest(entry, config_digest),
                                config_digest=config_digest, config=config, layers=layers,
                                platform=_platform(config), media_type="docker-save", size=0)
            except ScanError as exc:
                yield SourceFailure(ref, str(exc))

    def oci_images(self, index: dict, want_ref: str = "") -> Iterator[ImageSpec | SourceFailure]:
        if not isinstance(index, dict) or not isinstance(index.get("manifests"), list):
            raise ScanError(f"{self.label}: index.json has no manifests list")
        found = False
        for n, desc in enumerate(index["manifests"]):
            annotations = desc.get("annotations") if isinstance(desc, dict) else None
            ref = annotations.get(REF_ANNOTATION) if isinstance(annotations, dict) else ""
            ref = ref if isinstance(ref, str) else ""
            digest = desc.get("digest") if isinstance(desc, dict) else ""
            digest = digest if isinstance(digest, str) else ""
            if want_ref and not _ref_matches(ref, want_ref, digest):
                continue
            found = True
            where = ref or f"{self.label}@{digest}" if ref or digest else f"{self.label} index.json manifests[{n}]"
            yield from self._descriptor_images(desc, where, "", 0)
        if want_ref and not found:
            raise ScanError(f"{self.label}: no image {want_ref!r} in index.json")

    def _descriptor_images(self, desc: dict, ref: str, index_digest: str, depth: int):
        try:
            shapes.descriptor(desc, f"{ref}: descriptor")
            media = desc.get("mediaType") or ""
            digest = desc["digest"]
            doc, raw = self.json_blob(digest, f"{ref}: manifest {digest}")
            shapes.manifest(doc, f"{ref}: manifest")
            media = doc.get("mediaType") or media
            if media in INDEX_TYPES or "manifests" in doc:
                if depth >= MAX_INDEX_DEPTH:
                    raise ScanError(f"{ref}: image indexes nested too deep")
                for child in doc.get("manifests") or []:
                    if (child.get("platform") or {}).get("architecture") == "unknown":
                        continue  # attestation manifests (buildkit) are not images
                    yield from self._descriptor_images(child, ref, digest, depth + 1)
                return
            config_desc = doc["config"]
            config, _ = self.json_blob(config_desc["digest"], f"{ref}: config")
            shapes.config(config, f"{ref}: config")
            layers = [(d["digest"], _blob_path(d["digest"]), int(d.get("size") or 0), d.get("mediaType") or "")
                      for d in doc.get("layers") or []]
            spec = ImageSpec(reference=ref, source=self.label, manifest_digest=digest,
                             config_digest=config_desc["digest"], config=config,
                             layers=self._descriptors(config, layers, ref), platform=_platform(config, desc),
                             index_digest=index_digest, media_type=media,
                             size=len(raw) + int(config_desc.get("size") or 0) + sum(l[2] for l in layers))
            yield spec
        except ScanError as exc:
            yield SourceFailure(ref, str(exc))

    def _descriptors(self, config: dict, layers: list[tuple], ref: str) -> list[LayerDescriptor]:
        rootfs = config.get("rootfs") if isinstance(config, dict) else None
        diff_ids = (rootfs or {}).get("diff_ids") or []
        if len(diff_ids) != len(layers):
            raise ScanError(f"{ref}: config lists {len(diff_ids)} diff_ids for {len(layers)} layers")
        history = [h for h in config.get("history") or [] if not h.get("empty_layer")]
        out = []
        for i, ((digest, key, size, media), diff_id) in enumerate(zip(layers, diff_ids)):
            created_by = history[i].get("created_by", "") if i < len(history) else ""
            out.append(LayerDescriptor(index=i, digest=digest, diff_id=diff_id, media_type=media, size=size,
                                       created_by=created_by, key=key))
        return out


def _docker_manifest_digest(entry: dict, config_digest: str) -> str:
    # `docker save` writes no registry manifest; the image ID (config digest) identifies it, as in Docker
    return config_digest


def _platform(config: dict, desc: dict | None = None) -> str:
    p = (desc or {}).get("platform") or {}
    os_ = p.get("os") or config.get("os") or ""
    arch = p.get("architecture") or config.get("architecture") or ""
    variant = p.get("variant") or config.get("variant") or ""
    return "/".join(x for x in (os_, arch, variant) if x)


def _ref_matches(ref: str, want: str, digest: str) -> bool:
    return want in (ref, digest) or ref.rsplit(":", 1)[-1] == want and ":" not in want


def archive_events(text: str, transport: str, location: str, ref: str, limits: Limits, prescan: bool = False):
    """`prescan`: for a compressed archive on disk, first learn its layers' digests (one pass that
    decompresses it and keeps only the JSON) so that the layers the caller already holds are passed over
    unread in the second pass instead of being analyzed again. Worth it when a cache may hold them."""
    if os.path.isdir(location):
        return _random_access(Tree(location, limits), text, transport, ref, limits)
    with open(location, "rb") as fh:
        head = fh.read(4)
    if compression_of(head) == "none":
        return _random_access(Tree(location, limits), text, transport, ref, limits)
    return _streamed(text, transport, location, ref, limits, prescan=prescan)


def _layer_digests(text: str, transport: str, location: str, ref: str, limits: Limits) -> dict[str, str]:
    """Layer key -> diff_id, from a first pass over a compressed archive that keeps only its JSON."""
    from ..layers import ForwardReader, iter_members  # the layer walk's module: not loaded by a rescan

    files: dict[str, bytes] = {}
    with open(location, "rb", buffering=CHUNK) as raw:
        stream, _ = open_outer(raw, limits, text)
        try:
            tf = tarfile.open(fileobj=ForwardReader(stream), mode="r:")  # type: ignore[call-overload]
            for member in iter_members(tf):
                if member.isreg() and member.size <= limits.max_json:
                    name = posixpath.normpath(member.name.lstrip("./") or ".")
                    fh = tf.extractfile(member)
                    data = fh.read() if fh is not None else b""
                    if data.lstrip()[:1] in (b"{", b"["):
                        files[name] = data
        except (tarfile.TarError, EOFError, OSError):
            return {}  # the real pass says what is wrong
        finally:
            stream.close()  # ends the decompressor's thread before the file closes under it
    try:
        specs = _layout_specs(files, text, transport, ref, limits)
        return {d.key: d.diff_id for spec in specs if isinstance(spec, ImageSpec) for d in spec.layers}
    except ScanError:
        return {}


def _layout_specs(files: dict[str, bytes], text: str, transport: str, ref: str, limits: Limits):
    def read(name: str) -> bytes:
        name = posixpath.normpath(name)
        if name in files:
            return files[name]
        raise ScanError(f"{text}: blob {name} is missing")

    layout = Layout(read, text, limits)
    if transport == "docker-archive" and "manifest.json" in files:
        return layout.docker_images(read_json_bytes(files["manifest.json"], f"{text}: manifest.json"))
    if "index.json" in files:
        return layout.oci_images(read_json_bytes(files["index.json"], f"{text}: index.json"), ref)
    raise ScanError(f"{text}: neither manifest.json nor index.json found")


def _random_access(tree: Tree, text: str, transport: str, ref: str, limits: Limits):
    layout = Layout(lambda name: tree.read(name, limits.max_json), text, limits)
    if transport == "docker-archive" and tree.exists("manifest.json"):
        specs = layout.docker_images(read_json_bytes(tree.read("manifest.json", limits.max_json), f"{text}: manifest.json"))
    elif tree.exists("index.json"):
        specs = layout.oci_images(read_json_bytes(tree.read("index.json", limits.max_json), f"{text}: index.json"), ref)
    else:
        raise ScanError(f"{text}: neither manifest.json nor index.json found")
    offered: set[str] = set()
    for spec in specs:
        if isinstance(spec, SourceFailure):
            yield spec
            continue
        if ref and transport == "docker-archive" and ref not in (spec.reference, spec.manifest_digest):
            continue
        missing = [d.key for d in spec.layers if not tree.exists(d.key)]
        if missing:
            yield SourceFailure(spec.reference, f"{spec.reference}: layer blob {missing[0]} is missing")
            continue
        for d in spec.layers:
            if d.key not in offered:
                offered.add(d.key)
                yield LayerBlob(key=d.key, digest=d.digest, diff_id=d.diff_id, size=tree.size(d.key),
                                open=functools.partial(tree.open, d.key))
        yield spec


def _streamed(text: str, transport: str, location: str, ref: str, limits: Limits, fileobj=None,
              prescan: bool = False):
    """One front-to-back pass over a compressed archive: small JSON kept, layers handed on as they pass.

    `fileobj`, when given, is read instead of `location`: any forward-only stream of the archive
    (the Docker engine's `save` output). `prescan` (a file only): a first pass learns the layers'
    digests, so a layer is offered with its diff_id and one the caller holds is passed over."""
    from ..layers import ForwardReader, iter_members

    files: dict[str, bytes] = {}
    layer_keys: set[str] = set()
    digests = _layer_digests(text, transport, location, ref, limits) if prescan and fileobj is None else {}
    with (open(location, "rb", buffering=CHUNK) if fileobj is None else contextlib.nullcontext(fileobj)) as raw:
        stream, _ = open_outer(raw, limits, text)
        try:
            tf = tarfile.open(fileobj=ForwardReader(stream), mode="r:")  # type: ignore[call-overload]
            for member in iter_members(tf):
                if not member.isreg():
                    continue
                name = posixpath.normpath(member.name.lstrip("./") or ".")
                fh = tf.extractfile(member)
                peek = PeekReader(fh)
                head = peek.peek(512)
                is_tar = len(head) >= 262 and head[257:262] == b"ustar"
                if compression_of(head) != "none" or is_tar or name.endswith("layer.tar"):
                    layer_keys.add(name)
                    # an uncompressed blob named by its digest (docker save of Docker 25+) names its diff_id:
                    # a layer the database already holds is then passed over instead of analyzed again
                    known = ""
                    if compression_of(head) == "none" and name.startswith("blobs/sha256/"):
                        known = "sha256:" + name.rsplit("/", 1)[1]
                    diff_id = known or digests.get(name, "")  # from the first pass: checked when read
                    yield LayerBlob(key=name, size=member.size, stream=peek, digest=known, diff_id=diff_id)
                elif head.lstrip()[:1] in (b"{", b"[") and member.size <= limits.max_json:
                    files[name] = peek.read()
                # anything else (VERSION, legacy json) is not needed
        except ScanError:
            raise
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise ScanError(f"{text}: truncated or corrupt archive ({exc})") from None
        finally:
            # also when the caller stops early (the generator is closed): the decompressor's thread
            # ends here, before the file closes under it
            stream.close()

    for spec in _layout_specs(files, text, transport, ref, limits):
        if isinstance(spec, ImageSpec):
            if ref and transport == "docker-archive" and ref not in (spec.reference, spec.manifest_digest):
                continue
            missing = [d.key for d in spec.layers if d.key not in layer_keys]
            if missing:
                yield SourceFailure(spec.reference, f"{spec.reference}: layer blob {missing[0]} is missing")
                continue
        yield spec
