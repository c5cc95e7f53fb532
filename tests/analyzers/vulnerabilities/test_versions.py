"""Each ecosystem's version order against hand-checked tables (the answers of dpkg --compare-versions,
rpmdev-vercmp, apk version -t, Maven's ComparableVersion, pip and semver.org's precedence list)."""
import pytest

from stowaway.analyzers.vulnerabilities.versions import InvalidVersion, compare, parse, rpmvercmp

LESS = [
    # dpkg: epochs, tildes, revisions
    ("dpkg", "1:1.2~rc1-1", "1:1.2-1"),
    ("dpkg", "1.2-1", "1:0.1-1"),
    ("dpkg", "1.2~~", "1.2~"),
    ("dpkg", "1.2~", "1.2"),
    ("dpkg", "1.2", "1.2+b1"),
    ("dpkg", "1.2-1", "1.2-1+deb11u1"),
    ("dpkg", "1.1.1n-0+deb11u3", "1.1.1n-0+deb11u4"),
    ("dpkg", "2.17.1-1~deb11u1", "2.17.1-1~deb11u2"),
    ("dpkg", "7.91+dfsg1+really7.80+dfsg1-2", "7.91+dfsg1+really7.80+dfsg1-2+deb11u1"),
    ("dpkg", "1.0-9", "1.0-10"),
    # rpm: epochs, tildes, carets, alpha vs numeric, leading zeros
    ("rpm", "1.0-1", "1:0.5-1"),
    ("rpm", "0:1.0-1", "1.0-2"),
    ("rpm", "1.0~rc1-1", "1.0-1"),
    ("rpm", "1.0", "1.0^git1"),
    ("rpm", "1.0^git1", "1.0.1"),
    ("rpm", "1.0~rc1", "1.0~rc1^git1"),
    ("rpm", "1.0a", "1.0.1"),
    ("rpm", "2.a", "2.0"),
    ("rpm", "1.0-1.el8", "1.0-1.el8_2"),
    ("rpm", "1.0-1.el7", "1.0-1.el8"),
    ("rpm", "1.9", "1.10"),
    ("rpm", "3.0.7-24.el9", "1:3.0.7-25.el9_3"),
    # apk: revisions, pre/post suffixes, letters, leading zeros as strings
    ("apk", "1.2.3-r0", "1.2.3-r1"),
    ("apk", "1.2_rc1-r0", "1.2-r0"),
    ("apk", "1.2_alpha1", "1.2_beta1"),
    ("apk", "1.2", "1.2_p1"),
    ("apk", "1.2", "1.2a"),
    ("apk", "1.2", "1.2.1"),
    ("apk", "1.05", "1.1"),
    ("apk", "0.9.13", "1.2.3-r4"),
    ("apk", "1.2.4-r2", "1.2.4-r3"),
    ("apk", "3.0.8-r0", "3.0.10-r0"),
    # Maven ComparableVersion
    ("maven", "2.0.0-RC1", "2.0.0"),
    ("maven", "2.0.0-alpha1", "2.0.0-beta1"),
    ("maven", "2.0.0-beta1", "2.0.0-RC1"),
    ("maven", "2.0.0-SNAPSHOT", "2.0.0"),
    ("maven", "2.0.0", "2.0.0-sp1"),
    ("maven", "2.14.1", "2.15.0"),
    ("maven", "2.9.8", "2.9.10.8"),
    ("maven", "1.2.24", "1.2.83"),
    ("maven", "5.3.17", "5.3.18"),
    # PEP 440: dev < pre < release < post
    ("pep440", "1.0.dev1", "1.0a1"),
    ("pep440", "1.0a1", "1.0b1"),
    ("pep440", "1.0b1", "1.0rc1"),
    ("pep440", "1.0rc1", "1.0"),
    ("pep440", "1.0", "1.0.post1"),
    ("pep440", "1.24.1", "1.24.2"),
    ("pep440", "2.10", "2.10.1"),
    ("pep440", "1!0.5", "1!1.0"),
    ("pep440", "2.0", "1!0.1"),
    # semver precedence (semver.org §11)
    ("semver", "1.0.0-alpha", "1.0.0-alpha.1"),
    ("semver", "1.0.0-alpha.1", "1.0.0-alpha.beta"),
    ("semver", "1.0.0-alpha.beta", "1.0.0-beta"),
    ("semver", "1.0.0-beta.2", "1.0.0-beta.11"),
    ("semver", "1.0.0-rc.1", "1.0.0"),
    ("semver", "4.17.15", "4.17.21"),
    ("semver", "3.4.1", "3.5.0"),
    ("go", "0.0.0-20210101000000-abcdef012345", "0.1.0"),
    ("go", "v1.2.3", "1.2.4"),
]

EQUAL = [
    ("dpkg", "0:1.0-1", "1.0-1"),
    ("rpm", "0:1.0-1", "1.0-1"),
    ("rpm", "1.0", "1.0-5"),  # rpm compares releases only when both sides have one
    ("rpm", "1.01", "1.1"),
    ("apk", "1.2.3-r0", "1.2.3-r0"),
    ("maven", "1.0", "1.0.0"),
    ("maven", "1.0.Final", "1.0"),
    ("pep440", "2.10", "2.10.0"),
    ("semver", "1.0.0+build.1", "1.0.0"),
    ("semver", "2.0", "2.0.0"),
]


@pytest.mark.parametrize("scheme,a,b", LESS)
def test_less(scheme, a, b):
    assert compare(scheme, a, b) == -1
    assert compare(scheme, b, a) == 1


@pytest.mark.parametrize("scheme,a,b", EQUAL)
def test_equal(scheme, a, b):
    assert compare(scheme, a, b) == 0


def test_rpmvercmp_segments():
    # straight from rpm's own test table (tests/rpmvercmp.at)
    table = [("1.0", "1.0", 0), ("1.0", "2.0", -1), ("2.0.1", "2.0.1a", -1), ("5.5p1", "5.5p2", -1),
             ("5.5p10", "5.5p1", 1), ("10xyz", "10.1xyz", -1), ("xyz10", "xyz10.1", -1), ("xyz.4", "8", -1),
             ("1.0aa", "1.0a", 1), ("1b.fc17", "1.fc17", -1), ("1.0~rc1", "1.0~rc2", -1), ("1.0~rc1~git123", "1.0~rc1", -1),
             ("1.0^", "1.0", 1), ("1.0^git1", "1.0^git2", -1), ("1.0^git1~pre", "1.0^git1", -1),
             ("1.0", "1.0~rc1", 1), ("a+", "a_", 0), ("+a", "_a", 0)]
    for a, b, want in table:
        assert rpmvercmp(a, b) == want, (a, b)


@pytest.mark.parametrize("scheme,text", [
    ("dpkg", "a:1.0"), ("dpkg", "1.0 beta"), ("dpkg", ""),
    ("rpm", "x:1.0"), ("rpm", "1.0 1"),
    ("apk", "1.2A"), ("apk", "abc"), ("apk", "1.2_foo"), ("apk", "1.2-r1-r2"), ("apk", "1.2a3"),
    ("maven", "1.0 beta"),
    ("pep440", "not a version"),
    ("semver", "1.x"), ("semver", "latest"),
])
def test_invalid_versions_raise(scheme, text):
    with pytest.raises(InvalidVersion):
        parse(scheme, text)


def test_dpkg_key_orders_as_python_debian_does():
    """The dpkg scheme is a native sort key (for speed); python-debian is the reference it must agree with."""
    import random

    from debian.debian_support import Version

    rnd = random.Random(1)

    def gen():
        epoch = f"{rnd.randint(0, 2)}:" if rnd.random() < 0.2 else ""
        upstream = str(rnd.randint(0, 9)) + "".join(rnd.choice("0123456789.~+abzZ") for _ in range(rnd.randint(0, 6)))
        revision = "-" + "".join(rnd.choice("0123456789.~+abz") for _ in range(rnd.randint(1, 5))) if rnd.random() < 0.7 else ""
        return epoch + upstream + revision

    checked = 0
    for _ in range(20000):
        a, b = gen(), gen()
        try:
            want = (Version(a) > Version(b)) - (Version(a) < Version(b))
        except ValueError:
            continue
        assert compare("dpkg", a, b) == want, (a, b)
        checked += 1
    assert checked > 15000
