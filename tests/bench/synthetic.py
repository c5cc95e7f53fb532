"""A large synthetic image, generated in code, for the scale and memory benchmarks (issue 16).

Defaults match the issue's image: about 570 MB uncompressed, 125,000 files, 3,000 npm packages,
200 jars and four 100 MB executables (ELF, one of them a Go binary with build info). The layer tar is
streamed straight to disk, so generating it costs little memory; `scale` shrinks everything for a
quick run.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import random
import tarfile
import zipfile
from pathlib import Path

GO_MAGIC = b"\xff Go buildinf:"


def _add(tf: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    ti = tarfile.TarInfo(name)
    ti.size, ti.mode, ti.mtime = len(data), mode, 1700000000
    tf.addfile(ti, io.BytesIO(data))


def _add_stream(tf: tarfile.TarFile, name: str, size: int, chunk: bytes, head: bytes = b"", tail: bytes = b"") -> None:
    """A big file written without holding it: `head`, then `chunk` repeated, then `tail`."""
    ti = tarfile.TarInfo(name)
    ti.size, ti.mode, ti.mtime = size, 0o755, 1700000000

    class Filler:
        """read(n) is all tarfile.addfile needs."""

        def __init__(self):
            self.buf = bytearray(head)
            self.body = size - len(head) - len(tail)
            self.tail_added = False

        def read(self, n: int) -> bytes:
            while len(self.buf) < n and (self.body > 0 or not self.tail_added):
                if self.body > 0:
                    piece = chunk[:min(len(chunk), self.body)]
                    self.body -= len(piece)
                    self.buf += piece
                else:
                    self.buf += tail
                    self.tail_added = True
            out = bytes(self.buf[:n])
            del self.buf[:n]
            return out

    tf.addfile(ti, Filler())


def _elf_go(size: int, module: str) -> tuple[bytes, bytes]:
    """ELF header bytes and a Go build-info blob at the end (Go 1.18+ inline string format)."""
    header = b"\x7fELF\x02\x01\x01" + b"\0" * 9
    def varint(n):
        out = bytearray()
        while True:
            b = n & 0x7F
            n >>= 7
            out.append(b | (0x80 if n else 0))
            if not n:
                return bytes(out)
    version = b"go1.21.5"
    mod = (f"path\t{module}\nmod\t{module}\t(devel)\t\n"
           "dep\tgolang.org/x/text\tv0.3.7\th1:abc=\n"
           "dep\tgithub.com/gin-gonic/gin\tv1.7.0\th1:def=\n").encode()
    mod = b"0w\xaf\x0c\x92t\x08\x02A\xe1\xc1\x07\xe6\xd6\x18\xe6" + mod + b"\xf92C1\x86\x18 r\x00\x82B\x10A\x16\xd8\xf2"
    info = GO_MAGIC + bytes([8, 2]) + b"\0" * 16 + varint(len(version)) + version + varint(len(mod)) + mod
    info += b"\0" * (-len(info) % 16)  # the file size is a multiple of 16: the header starts 16-aligned
    return header, info


def _jar(i: int) -> bytes:
    buf = io.BytesIO()
    group, artifact, version = f"com.example.g{i % 20}", f"lib{i}", f"1.{i % 10}.{i % 7}"
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("META-INF/MANIFEST.MF", f"Manifest-Version: 1.0\nImplementation-Title: {artifact}\n"
                                           f"Implementation-Version: {version}\n")
        z.writestr(f"META-INF/maven/{group}/{artifact}/pom.properties",
                   f"groupId={group}\nartifactId={artifact}\nversion={version}\n")
        for c in range(40):
            z.writestr(f"com/example/{artifact}/C{c}.class", b"\xca\xfe\xba\xbe" + os.urandom(600))
    return buf.getvalue()


def write_synthetic(path: str | Path, scale: float = 1.0, ref: str = "synthetic/big:1", seed: int = 7) -> dict:
    """Writes a `docker save` tar (legacy layout, one layer per kind of content) and returns its figures."""
    rnd = random.Random(seed)
    path = Path(path)
    work = path.parent / (path.name + ".layers")
    work.mkdir(parents=True, exist_ok=True)
    n_files, n_npm, n_jars, n_exe = int(125_000 * scale), int(3_000 * scale), int(200 * scale), 4
    exe_size = int(100 * (1 << 20) * scale) // 16 * 16
    counts = {"files": 0, "npm": n_npm, "jars": n_jars, "executables": n_exe}

    layers = []

    def layer(name, fill):
        p = work / f"{name}.tar"
        with open(p, "wb") as fh, tarfile.open(fileobj=fh, mode="w", format=tarfile.PAX_FORMAT) as tf:
            fill(tf)
        layers.append(p)

    def base(tf):
        _add(tf, "etc/os-release", b"ID=debian\nVERSION_ID=12\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n")
        stanza = "Package: pkg{n}\nStatus: install ok installed\nVersion: 1.{n}-1\nArchitecture: amd64\n\n"
        _add(tf, "var/lib/dpkg/status", "".join(stanza.format(n=n) for n in range(300)).encode())
        _add(tf, "etc/passwd", b"root:x:0:0:root:/root:/bin/bash\napp:x:1000:1000::/home/app:/bin/sh\n")
        _add(tf, "etc/shadow", b"root:*:19000:0:99999:7:::\napp:!:19000:0:99999:7:::\n")
        _add(tf, "etc/ssh/sshd_config", b"PermitRootLogin yes\nPasswordAuthentication yes\n")

    def many(tf):
        words = [bytes(rnd.choice(b"abcdefghijklmnop ") for _ in range(60)) for _ in range(64)]
        for i in range(n_files - n_npm - n_jars - n_exe - 5):
            _add(tf, f"usr/share/data/d{i // 500}/f{i}.txt", words[i % 64] * (1 + i % 20))

    def npm(tf):
        for i in range(n_npm):
            _add(tf, f"app/node_modules/pkg-{i}/package.json",
                 json.dumps({"name": f"pkg-{i}", "version": f"1.{i % 30}.{i % 9}", "license": "MIT"}).encode())

    def jars(tf):
        for i in range(n_jars):
            _add(tf, f"opt/app/lib/lib{i}.jar", _jar(i))

    def executables(tf):
        chunk = hashlib.sha256(b"x").digest() * 4096 + os.urandom(1 << 16)
        for i in range(n_exe):
            head, tail = _elf_go(exe_size, f"example.com/app{i}")
            _add_stream(tf, f"usr/local/bin/app{i}", exe_size, chunk, head, tail)

    for name, fill in (("base", base), ("many", many), ("npm", npm), ("jars", jars), ("exe", executables)):
        layer(name, fill)
    counts["files"] = n_files
    _docker_save(path, layers, ref)
    for p in layers:
        p.unlink()
    work.rmdir()
    counts["bytes"] = path.stat().st_size
    return counts


def _sha256_file(p: Path) -> str:
    h = hashlib.sha256()
    with open(p, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return "sha256:" + h.hexdigest()


def _docker_save(path: Path, layers: list[Path], ref: str) -> None:
    diff_ids = [_sha256_file(p) for p in layers]
    config = json.dumps({"architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z",
                         "config": {"Env": ["PATH=/usr/bin"], "Cmd": ["/bin/sh"]},
                         "rootfs": {"type": "layers", "diff_ids": diff_ids},
                         "history": [{"created_by": f"COPY {p.stem} /"} for p in layers]}).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    names = [f"{d[7:]}/layer.tar" for d in diff_ids]
    manifest = json.dumps([{"Config": config_name, "RepoTags": [ref], "Layers": names}]).encode()
    with tarfile.open(path, "w") as tf:
        _add(tf, config_name, config)
        for p, name in zip(layers, names):
            tf.add(str(p), arcname=name)
        _add(tf, "manifest.json", manifest)
