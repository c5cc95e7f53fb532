"""Version ordering, one scheme per ecosystem, chosen from `SCHEMES` (Trivy's drivers, Grype's matchers).

Every scheme turns a version string into an object with a total order, or raises `InvalidVersion`:
a version that cannot be read is never compared by a neighbouring scheme's rules, because that is
how silent wrong matches happen. PEP 440, NuGet, Composer and RubyGems use well-kept libraries;
dpkg, rpm's vercmp, apk's version compare, Maven's ComparableVersion and semver are written out here
from their specifications (dpkg's verrevcmp, rpm's rpmvercmp.c, apk-tools' version.c, Maven's
version order specification, semver.org 2.0): no maintained Python library implements them
faithfully (univers' Maven order differs from Maven's on 48 of its own test lines) or fast enough.

No text can make a comparison raise or run long: versions over MAX_LENGTH characters are refused,
and digit runs are compared by length and then lexically, never converted to int.
"""
from __future__ import annotations

import functools
import re
import unicodedata
from typing import Callable


class InvalidVersion(ValueError):
    pass


# a version string longer than this is refused by every scheme before it is parsed: no real version is
# near it, and libraries that turn digit runs into ints pay quadratic time for long ones
MAX_LENGTH = 256


def _num(digits: str) -> tuple[int, str]:
    """A digit run as an ordering key: length without leading zeros, then the digits (never an int)."""
    stripped = digits.lstrip("0")
    return len(stripped), stripped


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


def split_evr(text: str) -> tuple[tuple[int, str], str, str]:
    """'[epoch:]version[-release]' -> (epoch, version, release); a missing epoch is 0."""
    epoch = _num("0")
    rest = text
    if ":" in text:
        head, rest = text.split(":", 1)
        if not head.isdigit():
            raise InvalidVersion(f"rpm: bad epoch in {text!r}")
        epoch = _num(head)
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
    tokens: list[tuple] = [(_INITIAL_DIGIT, _num(m.group(0)), m.group(0))]
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
            tokens.append((kind, _num(value), value))
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
            tokens.append((kind, _num(rev), rev))
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
        self.release = (_num(m.group(1)), _num(m.group(2) or "0"), _num(m.group(3) or "0"))
        pre = m.group(4)
        self.pre = tuple((0, _num(p), "") if p.isdigit() else (1, (0, ""), p) for p in pre.split(".")) if pre else None

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
_DPKG_END = ((0,), (0, ""))


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
        pairs.append((tuple(_dpkg_char(c) for c in letters) + (0,), _num(digits)))
    # the end of the string compares as a part of its own: above '~', below letters and everything else
    pairs.append(_DPKG_END)
    return tuple(pairs)


def parse_dpkg(text: str) -> tuple:
    m = _DPKG.match(text) if text and text.isascii() else None
    if not m or (":" in m.group(2) and m.group(1) is None):
        raise InvalidVersion(f"dpkg: {text!r}")
    return (_num(m.group(1) or "0"), _dpkg_part_key(m.group(2)), _dpkg_part_key(m.group(3) or "0"))


# --- Maven ---------------------------------------------------------------------------------------------
# Maven's ComparableVersion ordering (the rules of maven-artifact 3.9/4.0, "Version Order Specification"
# in the POM reference), written here from its specification and tested against Maven's own
# ComparableVersionTest vectors (tests/analyzers/vulnerabilities/data/maven_comparable_version.json).
# A version is a list of items: numbers, qualifiers, qualifier+number combinations ('rc1', 'sp-2'),
# and nested lists opened by '-' or by a digit/letter transition. Numbers are digit runs compared
# by length and then lexically, never converted to int.

MAVEN_MAX_LENGTH = 256  # Maven itself refuses longer version strings
_M_NUM, _M_STR, _M_COMB, _M_LIST = range(4)
_MAVEN_QUALIFIERS = {"alpha": "0", "beta": "1", "milestone": "2", "rc": "3", "cr": "3", "snapshot": "4",
                     "": "5", "ga": "5", "final": "5", "release": "5", "sp": "6"}
_MAVEN_RELEASE = "5"
_MAVEN_SHORT = {"a": "alpha", "b": "beta", "m": "milestone"}


def _is_unicode_digit(c: str) -> bool:
    return unicodedata.category(c) == "Nd"


def _digits(text: str) -> str:
    """A digit run without its leading zeros, as ASCII ('' is zero)."""
    if not text.isascii():
        text = "".join(str(unicodedata.digit(c, 0)) for c in text)
    return text.lstrip("0")


def _mq(value: str) -> str:
    """Sort key of a qualifier: the well-known ones by rank, then any other lexically after them."""
    rank = _MAVEN_QUALIFIERS.get(value)
    return rank if rank is not None else "7-" + value


def _m_string(value: str, followed_by_digit: bool) -> tuple:
    if followed_by_digit and len(value) == 1:
        value = _MAVEN_SHORT.get(value, value)
    return (_M_STR, "rc" if value == "cr" else value)


def _m_item(combination: bool, digit: bool, text: str) -> tuple:
    if combination:
        text = text.replace("-", "")
        cut = next((i for i, c in enumerate(text) if _is_unicode_digit(c)), 0)
        return (_M_COMB, _m_string(text[:cut], True), (_M_NUM, _digits(text[cut:])))
    if digit:
        return (_M_NUM, _digits(text))
    return _m_string(text, False)


def _m_null(item) -> bool:
    kind = item[0]
    if kind == _M_NUM or kind == _M_STR:
        return item[1] == ""
    if kind == _M_COMB:
        return False
    return not item[1]


def _m_normalize(items: list) -> None:
    for i in range(len(items) - 1, -1, -1):
        if not _m_null(items[i]):
            continue
        if i == len(items) - 1 or items[i + 1][0] == _M_STR:
            del items[i]
        elif items[i + 1][0] == _M_LIST and items[i + 1][1] and items[i + 1][1][0][0] in (_M_STR, _M_COMB):
            del items[i]
    if len(items) == 1 and items[0][0] == _M_LIST:
        items[:] = items[0][1]


def maven_items(text: str) -> tuple:
    """The parsed item list of a Maven version (lists as (_M_LIST, [items]))."""
    s = text.lower()
    root: list = []
    current = root
    opened = [root]
    digit = combination = False
    start = 0
    n = len(s)

    def open_list():
        nonlocal current
        if current:
            new: list = []
            current.append((_M_LIST, new))
            current = new
            opened.append(new)

    i = 0
    while i < n:
        c = s[i]
        if c == ".":
            current.append((_M_NUM, "") if i == start else _m_item(combination, digit, s[start:i]))
            combination = False
            start = i + 1
        elif c == "-":
            if i == start:
                current.append((_M_NUM, ""))
            else:
                if not digit and i != n - 1 and _is_unicode_digit(s[i + 1]):
                    combination = True  # 'sp-1' reads as 'sp1'
                    i += 1
                    continue
                current.append(_m_item(combination, digit, s[start:i]))
            start = i + 1
            open_list()
            combination = False
        elif "0" <= c <= "9":
            if not digit and i > start:
                combination = True  # letters then digits: 'rc1'
                open_list()
            digit = True
        else:
            if digit and i > start:
                current.append(_m_item(combination, True, s[start:i]))
                start = i
                new_list: list = []
                current.append((_M_LIST, new_list))
                current = new_list
                opened.append(new_list)
                combination = False
            digit = False
        i += 1
    if n > start:
        if not digit:
            open_list()  # '1.0.0.X1' orders as '1.0.0-X1'
        current.append(_m_item(combination, digit, s[start:]))
    for items in reversed(opened):
        _m_normalize(items)
    return (_M_LIST, root)


def _m_cmp(a, b) -> int:
    """Three-way compare of two items; b may be None (the end of the other list)."""
    kind = a[0]
    if kind == _M_NUM:
        if b is None:
            return 1 if a[1] else 0
        if b[0] != _M_NUM:
            return 1
        x, y = a[1], b[1]
        if len(x) != len(y):
            return 1 if len(x) > len(y) else -1
        return (x > y) - (x < y)
    if kind == _M_STR:
        if b is None:
            x, y = _mq(a[1]), _MAVEN_RELEASE
            return (x > y) - (x < y)
        other = b[0]
        if other == _M_NUM:
            return -1
        if other == _M_STR:
            x, y = _mq(a[1]), _mq(b[1])
            return (x > y) - (x < y)
        if other == _M_COMB:
            r = _m_cmp(a, b[1])
            if r == 0:
                return -_m_cmp(b[2], None) if _m_cmp(a, None) == 0 else -1
            return r
        return -_m_cmp(b, a)
    if kind == _M_COMB:
        if b is None:
            r = _m_cmp(a[1], None)
            return _m_cmp(a[2], None) if r == 0 else r
        other = b[0]
        if other == _M_NUM:
            return -1
        if other == _M_STR:
            r = _m_cmp(a[1], b)
            if r == 0:
                return _m_cmp(a[2], None) if _m_cmp(a[1], None) == 0 else 1
            return r
        if other == _M_LIST:
            return -_m_cmp(b, a)
        r = _m_cmp(a[1], b[1])
        return _m_cmp(a[2], b[2]) if r == 0 else r
    items = a[1]
    if b is None:
        for item in items:
            r = _m_cmp(item, None)
            if r:
                return r
        return 0
    other = b[0]
    if other == _M_NUM:
        return -1
    if other in (_M_STR, _M_COMB):
        r = -_m_cmp(b, None) if not items else _m_cmp(items[0], b)
        k = 1
        while r == 0 and k < len(items):
            r = _m_cmp(items[k], None)
            k += 1
        return r
    right = b[1]
    for k in range(max(len(items), len(right))):
        left_item = items[k] if k < len(items) else None
        right_item = right[k] if k < len(right) else None
        if left_item is None:
            r = 0 if right_item is None else -_m_cmp(right_item, None)
        else:
            r = _m_cmp(left_item, right_item)
        if r:
            return r
    return 0


def maven_compare(a: str, b: str) -> int:
    return _m_cmp(maven_items(a), maven_items(b))


class MavenVersion(_CmpVersion):
    __slots__ = ()
    _cmp = staticmethod(_m_cmp)


def parse_maven(text: str) -> MavenVersion:
    if not text or len(text) > MAVEN_MAX_LENGTH or any(c.isspace() for c in text):
        raise InvalidVersion(f"Maven: {text[:40]!r}")
    return MavenVersion(text, maven_items(text))


# --- library-backed schemes --------------------------------------------------------------------------

def parse_pep440(text: str):
    from packaging.version import InvalidVersion as _Invalid
    from packaging.version import Version

    try:
        return Version(text)
    except (_Invalid, ValueError):
        raise InvalidVersion(f"PEP 440: {text!r}") from None


def _univers(cls_name: str, label: str):
    def parse(text: str):
        import univers.versions as uv

        try:
            return getattr(uv, cls_name)(text)
        except (ValueError, TypeError, RecursionError, uv.InvalidVersion):
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
    if len(text) > MAX_LENGTH:
        raise InvalidVersion(f"{scheme}: a version of {len(text):,} characters ({text[:20]}…) is longer than"
                             f" {MAX_LENGTH}")
    return SCHEMES[scheme](text)


def compare(scheme: str, a: str, b: str) -> int:
    va, vb = parse(scheme, a), parse(scheme, b)
    return -1 if va < vb else 1 if va > vb else 0
