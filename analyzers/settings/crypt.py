"""Password hash verification through the system's libcrypt (libxcrypt), by ctypes.

libxcrypt implements every scheme an /etc/shadow holds (yescrypt, gost-yescrypt, scrypt, bcrypt,
sha512crypt, sha256crypt, md5crypt, descrypt, bsdicrypt, ...). `crypt_rn` is reentrant and returns
NULL instead of a failure token, and ctypes releases the GIL during the call, so threads verify in
parallel.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import hmac
import re
import threading

CRYPT_DATA_SIZE = 32768  # sizeof(struct crypt_data) in libxcrypt
GLIBC_CRYPT_DATA_SIZE = 131232  # the older glibc libcrypt's struct
MAX_PASSPHRASE = 512

SCHEMES = (
    ("$y$", "yescrypt"), ("$gy$", "gost-yescrypt"), ("$7$", "scrypt"), ("$6$", "sha512crypt"),
    ("$5$", "sha256crypt"), ("$1$", "md5crypt"), ("$2b$", "bcrypt"), ("$2a$", "bcrypt"), ("$2y$", "bcrypt"),
    ("$2x$", "bcrypt"), ("$sha1$", "sha1crypt"), ("$md5", "sunmd5"), ("$3$", "nthash"), ("_", "bsdicrypt"),
)
DESCRYPT = re.compile(r"^[./0-9A-Za-z]{13}$")


class CryptUnavailable(Exception):
    pass


def scheme_of(field: str) -> str:
    """The hashing scheme of a password field; 'empty', 'locked' or 'unknown' when it is no hash."""
    if field == "":
        return "empty"
    if field[0] in "!*":
        return "locked"
    for prefix, name in SCHEMES:
        if field.startswith(prefix):
            return name
    if DESCRYPT.match(field):
        return "descrypt"
    return "unknown"


class LibCrypt:
    def __init__(self, name: str | None = None):
        path = name or ctypes.util.find_library("crypt") or "libcrypt.so.1"
        try:
            lib = ctypes.CDLL(path)
        except OSError as exc:
            raise CryptUnavailable(f"cannot load libcrypt ({exc})") from None
        self._local = threading.local()
        if hasattr(lib, "crypt_rn"):
            fn = lib.crypt_rn
            fn.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_int]
            self._size = CRYPT_DATA_SIZE
        elif hasattr(lib, "crypt_r"):
            fn = lib.crypt_r
            fn.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p]
            self._size = GLIBC_CRYPT_DATA_SIZE
        else:
            raise CryptUnavailable(f"{path} has neither crypt_rn nor crypt_r")
        fn.restype = ctypes.c_char_p
        self._fn = fn
        self._rn = fn.__name__ == "crypt_rn"
        self._gensalt = getattr(lib, "crypt_gensalt_rn", None)
        if self._gensalt is not None:
            self._gensalt.restype = ctypes.c_char_p
            self._gensalt.argtypes = [ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                                      ctypes.c_int]

    def _buffer(self):
        buf = getattr(self._local, "buf", None)
        if buf is None:
            buf = self._local.buf = ctypes.create_string_buffer(self._size)
        return buf

    def crypt(self, password: bytes, setting: str) -> str | None:
        """The hash of `password` under `setting` (a salt or a whole hash); None when the scheme is unsupported."""
        if b"\0" in password or len(password) >= MAX_PASSPHRASE:
            return None
        buf = self._buffer()
        args = (password, setting.encode("ascii", "replace"), buf) + ((self._size,) if self._rn else ())
        out = self._fn(*args)
        if not out or out.startswith(b"*"):  # glibc's crypt_r signals failure with a '*0' token
            return None
        return out.decode("ascii", "replace")

    def verify(self, password: bytes, stored: str) -> bool:
        got = self.crypt(password, stored)
        # bytes: compare_digest refuses str with non-ASCII characters, and a shadow file may hold any
        return got is not None and hmac.compare_digest(got.encode("utf-8", "surrogateescape"),
                                                       stored.encode("utf-8", "surrogateescape"))

    def gensalt(self, prefix: str, rounds: int = 0) -> str:
        """A fresh setting for a scheme ('$y$', '$6$', '$2b$', '' for descrypt; None would mean the default scheme)."""
        if self._gensalt is None:
            raise CryptUnavailable("libcrypt has no crypt_gensalt_rn")
        out = ctypes.create_string_buffer(256)
        got = self._gensalt(prefix.encode(), rounds, None, 0, out, 256)
        if not got:
            raise CryptUnavailable(f"libcrypt cannot make a {prefix or 'descrypt'} salt")
        return got.decode()


_LIB: LibCrypt | None = None
_LIB_ERROR: str = ""


def libcrypt() -> LibCrypt:
    global _LIB, _LIB_ERROR
    if _LIB is None and not _LIB_ERROR:
        try:
            _LIB = LibCrypt()
        except CryptUnavailable as exc:
            _LIB_ERROR = str(exc)
    if _LIB is None:
        raise CryptUnavailable(_LIB_ERROR)
    return _LIB
