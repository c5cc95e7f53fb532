"""Version ordering, one scheme per ecosystem, chosen from `SCHEMES` (Trivy's drivers, Grype's matchers).

Every scheme turns a version string into an object with a total order, or raises `InvalidVersion`:
a version that cannot be read is never compared by a neighbouring scheme's rules, because that is
how silent wrong matches happen. dpkg, Maven, PEP 440, NuGet, Composer and RubyGems use well-kept
libraries; rpm's vercmp, apk's version compare and semver are written out here from their
specifications (rpm's rpmvercmp.c, apk-tools' version.c, semver.org 2.0) since no maintained
Python library implements them faithfully.
"""
from __future__ import annotations

import functools
import re
from typing import Callable


class InvalidVersion(ValueError):
    pass


class _CmpVersion:
    """A total order from a three-way compare function (rpm and apk define theirs that way)."""

    __slots__ = ("text", "_parsed")
    _cmp: Callable

    def __init__(self, text, parsed):
        self.text = text
        self._parsed = parsed

    def __lt__(self, other):
        return self._cmp(self._parsed, other._parsed) < 0

    def __le__(self, other):
        return self._cmp(self._parsed, other._parsed) <= 0

    def __gt__(self, other):
        return self._cmp(self._parsed, other._parsed) > 0

    def __ge__(self, other):
        return self._cmp(self._parsed, other._parsed) >= 0

    def __eq__(self, other):
        return self._cmp(self._parsed, other._parsed) == 0

    def __hash__(self):
        return hash(self.text)

    def __repr__(self):
        return f"{type(self).__name__}({self.text!r})"


# --- rpm ------------------------------------------------------------------------------------------

def rpmvercmp(a: str, b: str) -> int:
    """rpm's segment compare: digits beat letters, leading zeros ignored, '~' sorts before anything
    (even the end of the string), '^' sorts after the end but before any other segment."""
    if a == b:
        return 0
    i = j = 0
    la, lb = len(a), len(b)
    while i < la or j < lb:
        while i < la and not (a[i].isascii() and a[i].isalnum()) and a[i] not in "~^":
            i += 1
        while j < lb and not (b[j].isascii() and b[j].isalnum()) and b[j] not in "~^":
            j += 1
        ca = a[i] if i < la else ""
        cb = b[j] if j < lb else ""
        if ca == "~" or cb == "~":
            if ca != "~":
                return 1
            if cb != "~":
                return -1
            i += 1
            j += 1
            continue
        if ca == "^" or cb == "^":
            if not ca:
                return -1
            if not cb:
                return 1
            if ca != "^":
                return 1
            if cb != "^":
                return -1
            i += 1
            j += 1
            continue
        if not (ca and cb):
            break
        si, sj = i, j
        if ca.isdigit():
            while i < la and a[i].isascii() and a[i].isdigit():
                i += 1
            while j < lb and b[j].isascii() and b[j].isdigit():
                j += 1
            isnum = True
        else:
            while i < la and a[i].isascii() and a[i].isalpha():
                i += 1
            while j < lb and b[j].isascii() and b[j].isalpha():
                j += 1
            isnum = False
        seg_a, seg_b = a[si:i], b[sj:j]
        if not seg_b:
            # one numeric, the other alpha: numeric segments are newer
            return 1 if isnum else -1
        if isnum:
            seg_a = seg_a.lstrip("0")
            seg_b = seg_b.lstrip("0")
            if len(seg_a) != len(seg_b):
                return 1 if len(seg_a) > len(seg_b) else -1
        if seg_a != seg_b:
            return 1 if seg_a > seg_b else -1
    if i >= la and j >= lb:
        return 0
    return 1 if i < la else -1


def split_evr(text: str) -> tuple[int, str, str]:
    """'[epoch:]version[-release]' -> (epoch, version, release); a missing epoch is 0."""
    epoch = 0
    rest = text
    if ":" in text:
        head, rest = text.split(":", 1)
        if not head.isdigit():
            raise InvalidVersion(f"rpm: bad epoch in {text!r}")
        epoch = int(head)
    version, sep, release = rest.rpartition("-")
    if not sep:
        version, release = rest, ""
    if not version:
        raise InvalidVersion(f"rpm: empty version in {text!r}")
    return epoch, version, release


def rpm_evr_cmp(a: tuple, b: tuple) -> int:
    if a[0] != b[0]:
        return 1 if a[0] > b[0] else -1
    r = rpmvercmp(a[1], b[1])
    if r:
        return r
    # rpm compares releases only when both sides have one ('1.0' matches any '1.0-x')
    if a[2] and b[2]:
        return rpmvercmp(a[2], b[2])
    return 0


class RpmVersion(_CmpVersion):
    __slots__ = ()
    _cmp = staticmethod(rpm_evr_cmp)


def parse_rpm(text: str) -> RpmVersion:
    if not text or any(c.isspace() for c in text):
        raise InvalidVersion(f"rpm: {text!r}")
    return RpmVersion(text, split_evr(text))


# --- apk ------------------------------------------------------------------------------------------
# apk-tools version.c: digit{.digit}...{letter}{_suffix{number}}...{~hash}{-r#}

(_INITIAL_DIGIT, _DIGIT, _LETTER, _SUFFIX, _SUFFIX_NO, _COMMIT_HASH, _REVISION_NO, _END) = range(8)
_APK_PRE = {"alpha": 1, "beta": 2, "pre": 3, "rc": 4}
_APK_SUFFIX_NONE = 5
_APK_POST = {"cvs": 6, "svn": 7, "git": 8, "hg": 9, "p": 10}
_APK_TOKEN = re.compile(r"(\d+)|\.(\d+)|([a-z])|_([a-z]*)|~([0-9a-fA-F]+)|-r(\d+)")


def _apk_tokens(text: str) -> tuple:
    m = re.match(r"\d+", text)
    if not m:
        raise InvalidVersion(f"apk: {text!r} does not start with a digit")
    tokens = [(_INITIAL_DIGIT, int(m.group(0)), m.group(0))]
    pos = m.end()
    prev = _INITIAL_DIGIT
    while pos < len(text):
        m = _APK_TOKEN.match(text, pos)
        if not m:
            raise InvalidVersion(f"apk: {text!r}: unexpected {text[pos]!r}")
        digits, dotted, letter, suffix, commit, rev = m.groups()
        if dotted is not None or digits is not None:
            value = dotted if dotted is not None else digits
            if dotted is not None and prev > _DIGIT:
                raise InvalidVersion(f"apk: {text!r}: '.' after a letter or suffix")
            if prev in (_INITIAL_DIGIT, _DIGIT) and dotted is not None:
                kind = _DIGIT
            elif prev == _SUFFIX and digits is not None:
                kind = _SUFFIX_NO
            else:
                raise InvalidVersion(f"apk: {text!r}: misplaced number")
            tokens.append((kind, int(value), value))
        elif letter is not None:
            if prev > _DIGIT:
                raise InvalidVersion(f"apk: {text!r}: misplaced letter")
            kind = _LETTER
            tokens.append((kind, ord(letter), letter))
        elif suffix is not None:
            if prev > _SUFFIX_NO:
                raise InvalidVersion(f"apk: {text!r}: misplaced suffix")
            value = _APK_PRE.get(suffix) or _APK_POST.get(suffix)
            if not value:
                raise InvalidVersion(f"apk: {text!r}: unknown suffix _{suffix}")
            kind = _SUFFIX
            tokens.append((kind, value, suffix))
        elif commit is not None:
            if prev >= _COMMIT_HASH:
                raise InvalidVersion(f"apk: {text!r}: misplaced commit hash")
            kind = _COMMIT_HASH
            tokens.append((kind, 0, commit))
        else:
            if prev >= _REVISION_NO:
                raise InvalidVersion(f"apk: {text!r}: second revision")
            kind = _REVISION_NO
            tokens.append((kind, int(rev), rev))
        prev = kind
        pos = m.end()
    return tuple(tokens)


def _apk_token_cmp(ta, tb) -> int:
    kind = ta[0]
    if kind == _DIGIT and (ta[2][0] == "0" or tb[2][0] == "0"):
        # a leading zero makes the component a string, as in Gentoo's rules: 1.05 < 1.1
        a, b = ta[2], tb[2]
    elif kind == _COMMIT_HASH:
        a, b = ta[2], tb[2]
    else:
        a, b = ta[1], tb[1]
    return (a > b) - (a < b)


def apk_cmp(a: tuple, b: tuple) -> int:
    n = min(len(a), len(b))
    for k in range(n):
        if a[k][0] != b[k][0]:
            ka, kb = a[k], b[k]
            break
        r = _apk_token_cmp(a[k], b[k])
        if r:
            return r
    else:
        ka = a[n] if n < len(a) else (_END, 0, "")
        kb = b[n] if n < len(b) else (_END, 0, "")
        if ka[0] == kb[0]:
            return 0
    # equal so far: the longer version is newer, unless what it goes on with is a pre-release suffix
    if ka[0] == _SUFFIX and ka[1] < _APK_SUFFIX_NONE:
        return -1
    if kb[0] == _SUFFIX and kb[1] < _APK_SUFFIX_NONE:
        return 1
    return -1 if ka[0] > kb[0] else 1


class ApkVersion(_CmpVersion):
    __slots__ = ()
    _cmp = staticmethod(apk_cmp)


def parse_apk(text: str) -> ApkVersion:
    return ApkVersion(text, _apk_tokens(text))


# --- semver (npm, crates.io, Go) -------------------------------------------------------------------

_SEMVER = re.compile(r"^v?(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?$")


@functools.total_ordering
class SemverVersion:
    """semver.org 2.0 precedence; build metadata ignored; a missing minor or patch reads as 0
    (advisories write '2.0' where registries publish '2.0.0')."""

    __slots__ = ("text", "release", "pre")

    def __init__(self, text: str):
        m = _SEMVER.match(text.strip())
        if not m:
            raise InvalidVersion(f"semver: {text!r}")
        self.text = text
        self.release = (int(m.group(1)), int(m.group(2) or 0), int(m.group(3) or 0))
        pre = m.group(4)
        self.pre = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in pre.split(".")) if pre else None

    def _key(self):
        # a release sorts after all of its pre-releases
        return (self.release, 1 if self.pre is None else 0, self.pre or ())

    def __eq__(self, other):
        return self._key() == other._key()

    def __lt__(self, other):
        return self._key() < other._key()

    def __hash__(self):
        return hash(self._key())

    def __repr__(self):
        return f"SemverVersion({self.text!r})"


def parse_semver(text: str) -> tuple:
    # the ordering key itself: tuples compare natively, and a rematch compares millions of times
    return SemverVersion(text)._key()


# --- dpkg -----------------------------------------------------------------------------------------------
# dpkg's verrevcmp as a sort key, so that comparisons run as native tuple comparisons (python-debian's
# Version compares in Python, and a rematch of a thousand images makes millions of comparisons; the
# tests check this key against python-debian on generated versions).

_DPKG = re.compile(r"^(?:(\d+):)?([0-9][A-Za-z0-9.+~:-]*?)(?:-([A-Za-z0-9.+~]+))?$")
_DPKG_PARTS = re.compile(r"([^0-9]*)([0-9]*)")
_DPKG_END = ((0,), 0)


def _dpkg_char(c: str) -> int:
    # '~' sorts before the end of a part, the end before letters, letters before everything else
    if c == "~":
        return -1
    if c.isalpha():
        return ord(c)
    return ord(c) + 256


def _dpkg_part_key(text: str) -> tuple:
    pairs = []
    for letters, digits in _DPKG_PARTS.findall(text):
        if not letters and not digits:
            continue
        pairs.append((tuple(_dpkg_char(c) for c in letters) + (0,), int(digits) if digits else 0))
    # the end of the string compares as a part of its own: above '~', below letters and everything else
    pairs.append(_DPKG_END)
    return tuple(pairs)


def parse_dpkg(text: str) -> tuple:
    m = _DPKG.match(text) if text and text.isascii() else None
    if not m or (":" in m.group(2) and m.group(1) is None):
        raise InvalidVersion(f"dpkg: {text!r}")
    return (int(m.group(1) or 0), _dpkg_part_key(m.group(2)), _dpkg_part_key(m.group(3) or "0"))


# --- library-backed schemes --------------------------------------------------------------------------

def parse_pep440(text: str):
    from packaging.version import InvalidVersion as _Invalid
    from packaging.version import Version

    try:
        return Version(text)
    except _Invalid:
        raise InvalidVersion(f"PEP 440: {text!r}") from None


def parse_maven(text: str):
    # univers ports Maven's ComparableVersion (2.0.0-RC1 < 2.0.0, 1.0.Final == 1.0)
    from univers import maven

    if not text or any(c.isspace() for c in text):
        raise InvalidVersion(f"Maven: {text!r}")
    try:
        return maven.Version(text)
    except (ValueError, TypeError):
        raise InvalidVersion(f"Maven: {text!r}") from None


def _univers(cls_name: str, label: str):
    def parse(text: str):
        import univers.versions as uv

        try:
            return getattr(uv, cls_name)(text)
        except (ValueError, TypeError, uv.InvalidVersion):
            raise InvalidVersion(f"{label}: {text!r}") from None

    return parse


def parse_go(text: str) -> tuple:
    # Go module versions are semver with a 'v'; OSV writes them without it. '+incompatible' is build metadata.
    return SemverVersion(text)._key()


# scheme name -> parser; ecosystems.SCHEME_OF maps OSV ecosystems onto these
SCHEMES: dict[str, Callable[[str], object]] = {
    "dpkg": parse_dpkg,
    "rpm": parse_rpm,
    "apk": parse_apk,
    "maven": parse_maven,
    "pep440": parse_pep440,
    "semver": parse_semver,
    "go": parse_go,
    "nuget": _univers("NugetVersion", "NuGet"),
    "composer": _univers("ComposerVersion", "Composer"),
    "rubygems": _univers("RubygemsVersion", "RubyGems"),
}


@functools.lru_cache(maxsize=262144)
def parse(scheme: str, text: str):
    """Cached: the same few thousand version strings recur across every image and advisory."""
    if not isinstance(text, str) or not text:
        raise InvalidVersion(f"{scheme}: empty version")
    return SCHEMES[scheme](text)


def compare(scheme: str, a: str, b: str) -> int:
    va, vb = parse(scheme, a), parse(scheme, b)
    return -1 if va < vb else 1 if va > vb else 0
