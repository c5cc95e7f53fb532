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
from dataclasses import dataclass

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


# --- cost of one guess, read from the hash's own settings -------------------------------------------
# The unit of each scheme's cost and the default cap above which a hash is not guessed at all
# (policy [passwords] max_cost.SCHEME). At the cap one guess takes about 0.2-1 s on one core; a
# hostile hash ($2b$31$, $6$rounds=999999999$, yescrypt with N = 2^40) would take hours or terabytes.
COST_UNITS = {
    "bcrypt": "log2 rounds",
    "sha512crypt": "rounds", "sha256crypt": "rounds",
    "yescrypt": "MiB of memory x passes", "gost-yescrypt": "MiB of memory x passes", "scrypt": "MiB of memory x passes",
    "bsdicrypt": "rounds", "sha1crypt": "rounds", "sunmd5": "rounds",
}
DEFAULT_MAX_COST: dict[str, float] = {
    "bcrypt": 13,  # 2^13 rounds: ~0.4 s a guess; the usual cost is 5 to 12
    "sha512crypt": 1_000_000, "sha256crypt": 1_000_000,  # ~0.3 s a guess; the default is 5,000
    "yescrypt": 128, "gost-yescrypt": 128,  # 128 MiB (cost factor 8); the default ($y$j9T$) is 16 MiB
    "scrypt": 128,  # the default ($7$CU..../....) is 64 MiB
    "bsdicrypt": 1_000_000,  # 24-bit count, up to 16,777,215 (~3 s); the default is 725
    "sha1crypt": 1_000_000,  # the default is about 256,000
    "sunmd5": 200_000,  # 4096 + the rounds= value; the default adds up to about 80,000
}
_ITOA64 = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_ATOI64 = {c: i for i, c in enumerate(_ITOA64)}
_DIGITS = re.compile(r"\d{1,12}")


@dataclass(frozen=True)
class HashCost:
    scheme: str
    cost: float  # in COST_UNITS[scheme]
    text: str  # e.g. "bcrypt cost 31 (2^31 rounds)"


def _decode64_uint32(text: str, pos: int, minimum: int) -> tuple[int, int]:
    """yescrypt's variable-length number encoding (yescrypt-common.c, decode64_uint32): (value, next pos).
    Raises ValueError on a character outside the alphabet or a cut field."""
    start, end, chars, bits = 0, 47, 1, 0
    c = _ATOI64[text[pos]]
    pos += 1
    value = minimum
    while c > end:
        value += (end + 1 - start) << bits
        start = end + 1
        end = start + (62 - end) // 2
        chars += 1
        bits += 6
    value += (c - start) << bits
    for _ in range(chars - 1):
        c = _ATOI64[text[pos]]
        pos += 1
        bits -= 6
        value += c << bits
    return value, pos


def _fixed64(text: str, pos: int, chars: int) -> int:
    """Little-endian base-64 number of `chars` characters (scrypt's r and p, bsdicrypt's count)."""
    value = 0
    for i in range(chars):
        value |= _ATOI64[text[pos + i]] << (6 * i)
    return value


def _mib(n: int) -> float:
    return round(n / (1 << 20), 1)


def _show_mib(n: int) -> str:
    mib = n / (1 << 20)
    return f"{round(mib):,}" if mib >= 1 else f"{mib:.2g}"


HUGE = 10**12  # a count of more than 12 digits is past any cap: it is not converted whole


def _count(field: str, pos: int) -> tuple[int, str]:
    """A decimal count at `pos` (rounds=, sha1crypt's rounds) and how to show it."""
    m = _DIGITS.match(field, pos)
    if m is None:
        raise ValueError("no count")
    if field[m.end():m.end() + 1].isdigit():
        return HUGE, "more than 10^12"
    value = int(m.group())
    return value, f"{value:,}"


def cost_of(field: str) -> HashCost | None:
    """The cost of one guess against a hash, from its settings; None for fixed-cost schemes (md5crypt,
    descrypt, nthash) and settings this parser cannot read (libcrypt then decides, within the budget)."""
    scheme = scheme_of(field)
    try:
        if scheme == "bcrypt":
            exp = int(field[4:6]) if field[4:6].isdigit() else None
            return None if exp is None else HashCost(scheme, exp, f"bcrypt cost {exp} (2^{exp} rounds)")
        if scheme in ("sha512crypt", "sha256crypt"):
            rounds, shown = (5000, "5,000")
            if field.startswith("rounds=", 3):
                rounds, shown = _count(field, 10)
            return HashCost(scheme, rounds, f"{scheme} with {shown} rounds")
        if scheme in ("yescrypt", "gost-yescrypt"):
            pos = field.index("$", 1) + 1
            _, pos = _decode64_uint32(field, pos, 0)  # flavor
            n_log2, pos = _decode64_uint32(field, pos, 1)
            r, pos = _decode64_uint32(field, pos, 1)
            p, t = 1, 0
            if field[pos] != "$":
                have, pos = _decode64_uint32(field, pos, 1)
                if have & 1:
                    p, pos = _decode64_uint32(field, pos, 2)
                if have & 2:
                    t, pos = _decode64_uint32(field, pos, 1)
            work = 128 * (1 << min(n_log2, 80)) * r * p * (t + 1)
            return HashCost(scheme, _mib(work), f"{scheme} with N=2^{n_log2}, r={r}, p={p}, t={t}"
                            f" ({_show_mib(work)} MiB x passes a guess)")
        if scheme == "scrypt":
            n_log2 = _ATOI64[field[3]]
            r, p = _fixed64(field, 4, 5), _fixed64(field, 9, 5)
            work = 128 * (1 << n_log2) * r * p
            return HashCost(scheme, _mib(work), f"scrypt with N=2^{n_log2}, r={r}, p={p} ({_show_mib(work)} MiB a guess)")
        if scheme == "bsdicrypt":
            count = _fixed64(field, 1, 4)
            return HashCost(scheme, count, f"bsdicrypt with {count:,} rounds")
        if scheme == "sha1crypt":
            rounds, shown = _count(field, 6)
            return HashCost(scheme, rounds, f"sha1crypt with {shown} rounds")
        if scheme == "sunmd5":
            rounds, shown = 4096, "4,096"
            if field.startswith("$md5,rounds="):
                extra, shown = _count(field, 12)
                rounds = 4096 + extra
                shown = shown if extra == HUGE else f"{rounds:,}"
            return HashCost(scheme, rounds, f"sunmd5 with {shown} rounds")
    except (KeyError, IndexError, ValueError):
        return None
    return None


def too_costly(cost: HashCost | None, caps: dict[str, float]) -> str:
    """Why a hash is not guessed at all ('' when it is): its cost is above the policy's cap."""
    if cost is None or cost.scheme not in caps or cost.cost <= caps[cost.scheme]:
        return ""
    return (f"hash cost too high to check: {cost.text}, above [passwords] max_cost.{cost.scheme} ="
            f" {caps[cost.scheme]:g} {COST_UNITS[cost.scheme]}")
