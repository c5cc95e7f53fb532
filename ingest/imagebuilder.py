"""Builds small container images in code, in every layout Stowaway reads (the demo and the tests use it).

    img = ImageBuilder()
    img.layer({"etc/os-release": "ID=debian\\nVERSION_ID=11\\n", "bin/sh": File(b"\\x7fELF", mode=0o755)})
    img.layer({"etc/.wh.motd": WHITEOUT, "opt/app/.wh..wh..opq": WHITEOUT, "etc/link": Symlink("/etc/x")})
    img.write_docker_archive(tmp_path / "a.tar.gz", ref="demo:1", compress="gzip")
    img.write_oci_layout(tmp_path / "oci", ref="demo:1", layer_compression="zstd")

Hostile images are built with the same pieces plus `raw_layer(bytes)` for hand-made tars.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
import zipfile
from dataclasses import dataclass, field
from typing import Any

import zstandard


@dataclass
class File:
    data: bytes | str = b""
    mode: int = 0o644
    uid: int = 0
    gid: int = 0


@dataclass
class Symlink:
    target: str


@dataclass
class Hardlink:
    target: str


@dataclass
class Dir:
    mode: int = 0o755


@dataclass
class Device:
    kind: str = "char"  # char | block | fifo


WHITEOUT = object()  # the content of a '.wh.NAME' or '.wh..wh..opq' entry


def tar_of(members: dict, mode: str = "w") -> bytes:
    """A plain archive of {name: bytes} (mode "w:gz", "w:bz2", "w:xz" compress it): archive members for tests."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tf:  # type: ignore[call-overload]
        for name, data in members.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def zip_of(members: dict, method: int = zipfile.ZIP_DEFLATED) -> bytes:
    """A zip (jar, war, ...) of {name: bytes}."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def layer_tar(entries: dict) -> bytes:
    """A layer tar from {path: File|bytes|str|Symlink|Hardlink|Dir|Device|WHITEOUT}, in the given order."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, spec in entries.items():
            ti = tarfile.TarInfo(name)
            ti.mtime = 1700000000
            data = None
            if spec is WHITEOUT:
                ti.size = 0
                data = b""
            elif isinstance(spec, (bytes, str)):
                spec = File(spec)
            if isinstance(spec, File):
                data = spec.data.encode() if isinstance(spec.data, str) else spec.data
                ti.size, ti.mode, ti.uid, ti.gid = len(data), spec.mode, spec.uid, spec.gid
            elif isinstance(spec, Symlink):
                ti.type, ti.linkname = tarfile.SYMTYPE, spec.target
            elif isinstance(spec, Hardlink):
                ti.type, ti.linkname = tarfile.LNKTYPE, spec.target
            elif isinstance(spec, Dir):
                ti.type, ti.mode = tarfile.DIRTYPE, spec.mode
            elif isinstance(spec, Device):
                ti.type = {"char": tarfile.CHRTYPE, "block": tarfile.BLKTYPE, "fifo": tarfile.FIFOTYPE}[spec.kind]
                ti.devmajor, ti.devminor = 1, 3
            tf.addfile(ti, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def compress(data: bytes, how: str) -> bytes:
    if how == "gzip":
        return gzip.compress(data, compresslevel=1, mtime=0)
    if how == "zstd":
        return zstandard.ZstdCompressor().compress(data)
    return data


@dataclass
class ImageBuilder:
    layers: list[bytes] = field(default_factory=list)  # uncompressed layer tars
    created_by: list[str] = field(default_factory=list)
    env: list[str] = field(default_factory=lambda: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"])
    user: str = ""
    healthcheck: dict | None = None
    labels: dict = field(default_factory=dict)
    cmd: list[str] = field(default_factory=lambda: ["/bin/sh"])
    architecture: str = "amd64"
    extra_history: list[dict] = field(default_factory=list)

    def layer(self, entries: dict, created_by: str = "") -> "ImageBuilder":
        return self.raw_layer(layer_tar(entries), created_by)

    def raw_layer(self, tar_bytes: bytes, created_by: str = "") -> "ImageBuilder":
        self.layers.append(tar_bytes)
        self.created_by.append(created_by or f"/bin/sh -c #(nop) layer {len(self.layers) - 1}")
        return self

    def config(self, diff_ids: list[str] | None = None) -> dict:
        history = [{"created": "2024-01-01T00:00:00Z", "created_by": c} for c in self.created_by] + self.extra_history
        runtime = {"Env": self.env, "Cmd": self.cmd, "User": self.user, "Labels": self.labels or None}
        if self.healthcheck:
            runtime["Healthcheck"] = self.healthcheck
        return {
            "architecture": self.architecture, "os": "linux", "created": "2024-01-01T00:00:00Z",
            "config": runtime,
            "rootfs": {"type": "layers", "diff_ids": diff_ids or [sha256(l) for l in self.layers]},
            "history": history,
        }

    # --- docker save ------------------------------------------------------------------------------
    def write_docker_archive(self, path, ref: str = "test/image:1", compress_with: str = "none",
                             layout: str = "legacy", diff_ids: list[str] | None = None,
                             manifest_override=None, skip_layers: tuple = ()) -> str:
        """`docker save` as Docker 20.10 (legacy) or 25+ (layout='oci') writes it."""
        files: dict[str, bytes] = {}
        config = json.dumps(self.config(diff_ids)).encode()
        config_hex = sha256(config)[7:]
        layer_names = []
        for i, layer in enumerate(self.layers):
            if layout == "legacy":
                lid = hashlib.sha256(f"{i}{sha256(layer)}".encode()).hexdigest()
                name = f"{lid}/layer.tar"
                files[f"{lid}/VERSION"] = b"1.0"
                files[f"{lid}/json"] = json.dumps({"id": lid}).encode()
            else:
                name = f"blobs/sha256/{sha256(layer)[7:]}"
            layer_names.append(name)
            if i not in skip_layers:
                files[name] = layer
        config_name = f"{config_hex}.json" if layout == "legacy" else f"blobs/sha256/{config_hex}"
        files[config_name] = config
        manifest = [{"Config": config_name, "RepoTags": [ref] if ref else None, "Layers": layer_names}]
        if layout == "oci":
            oci_manifest = self._oci_manifest(sha256(config), len(config), [(sha256(l), len(l), "none") for l in self.layers])
            files[f"blobs/sha256/{sha256(oci_manifest)[7:]}"] = oci_manifest
            files["index.json"] = json.dumps({"schemaVersion": 2, "manifests": [
                {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": sha256(oci_manifest),
                 "size": len(oci_manifest), "annotations": {"io.containerd.image.name": ref,
                                                           "org.opencontainers.image.ref.name": ref.rsplit(":", 1)[-1]}}]}).encode()
            files["oci-layout"] = b'{"imageLayoutVersion":"1.0.0"}'
        files["manifest.json"] = manifest_override if manifest_override is not None else json.dumps(manifest).encode()
        data = _tar(files)
        with open(path, "wb") as fh:
            fh.write(compress(data, compress_with))
        return str(path)

    # --- OCI layout -------------------------------------------------------------------------------
    @staticmethod
    def _oci_manifest(config_digest, config_size, layers) -> bytes:
        media = {"none": "application/vnd.oci.image.layer.v1.tar", "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
                 "zstd": "application/vnd.oci.image.layer.v1.tar+zstd"}
        return json.dumps({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_size},
            "layers": [{"mediaType": media[c], "digest": d, "size": s} for d, s, c in layers],
        }).encode()

    def oci_blobs(self, layer_compression: str = "gzip") -> tuple[dict[str, bytes], str, int]:
        """The blobs of this image; returns (blobs by digest, manifest digest, manifest size)."""
        blobs: dict[str, bytes] = {}
        described = []
        for layer in self.layers:
            blob = compress(layer, layer_compression)
            blobs[sha256(blob)] = blob
            described.append((sha256(blob), len(blob), layer_compression))
        config = json.dumps(self.config()).encode()
        blobs[sha256(config)] = config
        manifest = self._oci_manifest(sha256(config), len(config), described)
        blobs[sha256(manifest)] = manifest
        return blobs, sha256(manifest), len(manifest)

    def write_oci_layout(self, path, ref: str = "test/image:1", layer_compression: str = "gzip",
                         platforms: dict | None = None, as_tar: bool = False, append: bool = False) -> str:
        """An OCI image layout directory (or tar). `platforms` {'linux/arm64': builder} makes an index."""
        path = str(path)
        files: dict[str, bytes] = {}
        index: dict[str, Any] = {"schemaVersion": 2, "manifests": []}
        if append and os.path.exists(os.path.join(path, "index.json")):
            index = json.load(open(os.path.join(path, "index.json")))
        if platforms:
            entries = []
            for plat, builder in platforms.items():
                os_, arch = plat.split("/")[:2]
                builder.architecture = arch
                blobs, mdigest, msize = builder.oci_blobs(layer_compression)
                files.update({f"blobs/sha256/{d[7:]}": b for d, b in blobs.items()})
                entries.append({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": mdigest,
                                "size": msize, "platform": {"os": os_, "architecture": arch}})
            idx = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                              "manifests": entries}).encode()
            files[f"blobs/sha256/{sha256(idx)[7:]}"] = idx
            index["manifests"].append({"mediaType": "application/vnd.oci.image.index.v1+json", "digest": sha256(idx),
                                       "size": len(idx), "annotations": {"org.opencontainers.image.ref.name": ref}})
        else:
            blobs, mdigest, msize = self.oci_blobs(layer_compression)
            files.update({f"blobs/sha256/{d[7:]}": b for d, b in blobs.items()})
            index["manifests"].append({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": mdigest,
                                       "size": msize, "annotations": {"org.opencontainers.image.ref.name": ref}})
        files["index.json"] = json.dumps(index).encode()
        files["oci-layout"] = b'{"imageLayoutVersion":"1.0.0"}'
        if as_tar:
            with open(path, "wb") as fh:
                fh.write(_tar(files))
            return path
        for name, data in files.items():
            full = os.path.join(path, name)
            os.makedirs(os.path.dirname(full), exist_ok=True)
            with open(full, "wb") as fh:
                fh.write(data)
        return path


def _tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            ti.mtime = 1700000000
            tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()
