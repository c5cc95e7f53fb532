"""ClamAV as a second malware engine: a running clamd (unix or TCP socket, INSTREAM), or clamscan with
the user's own signature database. Optional: without either configured, nothing here runs.

Policy, section `[malware]`:

    clamd = "/run/clamav/clamd.ctl"     # a unix socket path, "unix:/path", "tcp://host:port" or "host:port"
    clamscan = "clamscan"               # instead of clamd: the clamscan program, run once per file
    clamav_database = "/var/lib/clamav" # clamscan's -d; with clamd, only folded into the cache key
    clamav_timeout = 60                 # seconds per file
    clamav_max_bytes = 26214400         # larger files are not sent (clamd's StreamMaxLength default, 25 MiB)

clamd reads archives itself, so each image file is sent whole; a hit names the file and ClamAV's
signature. The protocol (INSTREAM: a command, then chunks each led by its 4-byte big-endian length,
ended by a zero length; the reply `stream: NAME FOUND`, `stream: OK` or `... ERROR`) is clamd's, as
its manual page clamd(8) documents.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import socket
import struct
import subprocess
from dataclasses import dataclass

CHUNK = 1 << 16
MAX_BYTES = 25 << 20  # clamd's StreamMaxLength default
TIMEOUT = 60.0
MAX_REPLY = 64 << 10


class ClamAVError(Exception):
    """ClamAV could not check a file (unreachable, refused, timed out); the message says why."""


@dataclass(frozen=True)
class ClamAV:
    clamd: str = ""  # socket address
    clamscan: str = ""  # program
    database: str = ""
    timeout: float = TIMEOUT
    max_bytes: int = MAX_BYTES

    @classmethod
    def from_policy(cls, conf: dict) -> "ClamAV | None":
        clamd = conf.get("clamd") or ""
        clamscan = conf.get("clamscan") or ""
        if not clamd and not clamscan:
            return None
        if clamd and clamscan:
            raise ValueError("malware.clamd and malware.clamscan: choose one ClamAV engine")
        for key, value in (("clamd", clamd), ("clamscan", clamscan), ("clamav_database", conf.get("clamav_database"))):
            if value is not None and value != "" and not isinstance(value, str):
                raise ValueError(f"malware.{key}: expected a string")
        database = os.path.expanduser(conf.get("clamav_database") or "")
        if clamscan:
            program = shutil.which(os.path.expanduser(clamscan))
            if program is None:
                raise ValueError(f"malware.clamscan: {clamscan}: no such program")
            clamscan = program
            if database and not os.path.exists(database):
                raise ValueError(f"malware.clamav_database: {database}: no such file or directory")
        try:
            timeout = float(conf.get("clamav_timeout", TIMEOUT))
            max_bytes = int(conf.get("clamav_max_bytes", MAX_BYTES))
        except (TypeError, ValueError):
            raise ValueError("malware.clamav_timeout / clamav_max_bytes: expected numbers") from None
        if timeout <= 0 or max_bytes <= 0:
            raise ValueError("malware.clamav_timeout / clamav_max_bytes: must be positive")
        return cls(clamd, clamscan, database, timeout, max_bytes)

    @property
    def where(self) -> str:
        return f"clamd at {self.clamd}" if self.clamd else f"{self.clamscan}" + (f" -d {self.database}" if self.database else "")

    # -- clamd -------------------------------------------------------------------------------------

    def _connect(self) -> socket.socket:
        address = self.clamd
        try:
            if address.startswith("tcp://") or (":" in address and not address.startswith(("unix:", "/"))):
                host, _, port = address.removeprefix("tcp://").rpartition(":")
                sock = socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=self.timeout)
            else:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(self.timeout)
                sock.connect(address.removeprefix("unix:"))
        except (OSError, ValueError) as exc:
            raise ClamAVError(f"cannot connect to clamd at {address} ({_reason(exc)})") from None
        return sock

    def _command(self, command: bytes, payload: bytes | None = None) -> str:
        sock = self._connect()
        try:
            sock.sendall(b"z" + command + b"\0")
            if payload is not None:
                view = memoryview(payload)
                for start in range(0, len(view), CHUNK):
                    chunk = view[start:start + CHUNK]
                    sock.sendall(struct.pack(">I", len(chunk)) + chunk)
                sock.sendall(struct.pack(">I", 0))
            reply = b""
            while not reply.endswith(b"\0") and len(reply) < MAX_REPLY:
                more = sock.recv(4096)
                if not more:
                    break
                reply += more
        except OSError as exc:
            raise ClamAVError(f"clamd at {self.clamd} did not answer ({_reason(exc)})") from None
        finally:
            sock.close()
        return reply.rstrip(b"\0").decode("utf-8", "replace").strip()

    def version(self) -> str:
        """The engine and signature versions, for the cache key: new signatures re-scan the layers."""
        if self.clamd:
            return self._command(b"VERSION")
        try:
            out = subprocess.run([self.clamscan, "--version"], capture_output=True, timeout=self.timeout, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ClamAVError(f"{self.clamscan} --version failed ({_reason(exc)})") from None
        return out.stdout.decode("utf-8", "replace").strip()

    def database_key(self) -> str:
        """Names, sizes and times of the signature files: the user's own database changes the cache key."""
        if not self.database:
            return ""
        digest = hashlib.sha256()
        paths = [self.database] if os.path.isfile(self.database) else sorted(
            os.path.join(d, f) for d, _, files in os.walk(self.database) for f in files)
        for path in paths:
            try:
                st = os.stat(path)
            except OSError:
                continue
            digest.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        return digest.hexdigest()[:16]

    def scan(self, data: bytes) -> list[str]:
        """ClamAV's signature names for `data` (empty: clean); ClamAVError when it could not tell."""
        if len(data) > self.max_bytes:
            raise ClamAVError(f"larger than {self.max_bytes} bytes (malware.clamav_max_bytes); not sent to ClamAV")
        if self.clamd:
            return parse_reply(self._command(b"INSTREAM", data), "stream")
        command = [self.clamscan, "--no-summary", "--stdout"] + (["-d", self.database] if self.database else []) + ["-"]
        try:
            out = subprocess.run(command, input=data, capture_output=True, timeout=self.timeout, check=False)
        except subprocess.TimeoutExpired:
            raise ClamAVError(f"clamscan took longer than {self.timeout:g} s (malware.clamav_timeout)") from None
        except OSError as exc:
            raise ClamAVError(f"cannot run {self.clamscan} ({_reason(exc)})") from None
        if out.returncode not in (0, 1):
            err = (out.stderr or out.stdout).decode("utf-8", "replace").strip().splitlines()
            raise ClamAVError(f"clamscan failed (exit {out.returncode}: {err[-1][:200] if err else 'no message'})")
        names: list[str] = []
        for line in out.stdout.decode("utf-8", "replace").splitlines():
            names += parse_reply(line, "stdin")
        return names


def parse_reply(reply: str, source: str) -> list[str]:
    """`stream: Eicar-Signature FOUND` -> ['Eicar-Signature']; `stream: OK` -> []; an ERROR raises."""
    out: list[str] = []
    for line in reply.replace("\0", "\n").splitlines():
        line = line.strip()
        if not line:
            continue
        body = line.split(": ", 1)[1] if line.startswith(f"{source}:") or line.startswith("stream:") else line
        if body.endswith(" FOUND"):
            out.append(body[: -len(" FOUND")].strip())
        elif body.endswith("ERROR"):
            raise ClamAVError(f"ClamAV refused the file: {body[:200]}")
        elif body != "OK":
            raise ClamAVError(f"unexpected ClamAV reply: {line[:200]}")
    return out


def _reason(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc) or exc.__class__.__name__
