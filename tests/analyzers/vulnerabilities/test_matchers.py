from collections import Counter

import pytest
from osv_fixtures import osv

from stowaway.analyzers.vulnerabilities.importer import import_records
from stowaway.analyzers.vulnerabilities.matchers import Matcher, affected_by
from stowaway.analyzers.vulnerabilities.versions import InvalidVersion

TWO_INTERVALS = [{"introduced": "1.0"}, {"fixed": "1.5"}, {"introduced": "2.0"}, {"fixed": "2.5"}]


@pytest.mark.parametrize("version,fixed", [("0.9", None), ("1.0", "1.5"), ("1.4.9", "1.5"), ("1.5", None),
                                           ("1.9", None), ("2.0", "2.5"), ("2.4", "2.5"), ("2.5", None), ("3.0", None)])
def test_two_intervals(version, fixed):
    hit = affected_by("semver", version, [{"type": "SEMVER", "events": TWO_INTERVALS}], None)
    if fixed is None:
        assert hit is None
    else:
        assert hit.fixed == fixed and hit.why == f"introduced {'1.0' if fixed == '1.5' else '2.0'}, fixed {fixed}"


def test_events_in_any_order_are_sorted_by_the_ecosystem():
    shuffled = [{"fixed": "2.5"}, {"introduced": "2.0"}, {"fixed": "1.5"}, {"introduced": "1.0"}]
    assert affected_by("semver", "2.1", [{"type": "SEMVER", "events": shuffled}], None).fixed == "2.5"
    assert affected_by("semver", "1.7", [{"type": "SEMVER", "events": shuffled}], None) is None


def test_last_affected_is_inclusive_and_limit_exclusive():
    last = [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"last_affected": "2.0.0-RC1"}]}]
    assert affected_by("maven", "2.0.0-RC1", last, None).fixed is None
    assert affected_by("maven", "2.0.0-beta1", last, None) is not None
    assert affected_by("maven", "2.0.0", last, None) is None  # RC1 < release in Maven's order
    limit = [{"type": "ECOSYSTEM", "events": [{"introduced": "1.0"}, {"limit": "1.2"}]}]
    assert affected_by("pep440", "1.1", limit, None).fixed is None
    assert affected_by("pep440", "1.2", limit, None) is None


def test_unfixed_range_and_versions_list():
    open_range = [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}]}]
    hit = affected_by("dpkg", "1:4.1.7-4ubuntu0.1", open_range, None)
    assert hit.fixed is None and hit.why == "introduced 0, no fixed version above it"
    listed = affected_by("pep440", "1.17", None, frozenset({"1.17", "1.18"}))
    assert listed.why == "listed in versions" and affected_by("pep440", "1.19", None, frozenset({"1.17"})) is None


def test_pre_releases_by_scheme():
    r = [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "2.0.0"}]}]
    assert affected_by("maven", "2.0.0-RC1", r, None) is not None
    assert affected_by("pep440", "2.0.0rc1", r, None) is not None
    assert affected_by("pep440", "2.0.0.post1", r, None) is None
    assert affected_by("dpkg", "2.0.0~rc1-1", r, None) is not None
    assert affected_by("dpkg", "2.0.0-1", r, None) is None


def test_unreadable_event_skips_only_that_range_and_is_counted():
    warnings = Counter()
    ranges = [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "not a version!"}]},
              {"type": "ECOSYSTEM", "events": [{"introduced": "1.0"}, {"fixed": "3.0"}]}]
    hit = affected_by("pep440", "2.0", ranges, None, warnings)
    assert hit.fixed == "3.0"
    assert sum(warnings.values()) == 1 and "not a version!" in next(iter(warnings))


def test_unreadable_installed_version_raises():
    with pytest.raises(InvalidVersion):
        affected_by("apk", "1.2A", [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}]}], None)


def test_matcher_looks_up_by_ecosystem_release_and_name(db):
    import_records(db, [
        osv("DSA-1", "Debian:11", "openssl", [{"introduced": "0"}, {"fixed": "1.1.1n-0+deb11u4"}]),
        osv("DSA-2", "Debian:12", "openssl", [{"introduced": "0"}, {"fixed": "3.0.11-1~deb12u1"}]),
        osv("PYSEC-1", "PyPI", "Jinja2", [{"introduced": "0"}, {"fixed": "2.10.1"}]),
    ])
    m = Matcher(db.conn)
    assert [x.candidate.advisory_id for x in m.match("Debian", "11", "openssl", "1.1.1n-0+deb11u3")] == ["DSA-1"]
    assert m.match("Debian", "11", "openssl", "1.1.1n-0+deb11u4") == []
    assert m.match("Debian", "10", "openssl", "1.1.1d-0+deb10u1") == []
    assert [x.hit.fixed for x in m.match("PyPI", "", "jinja2", "2.10")] == ["2.10.1"]
    # the same question twice is answered from the cache: the store is not asked again
    m.conn = None
    assert [x.hit.fixed for x in m.match("PyPI", "", "jinja2", "2.10")] == ["2.10.1"]


def test_matcher_counts_invalid_installed_versions(db):
    import_records(db, [osv("ALPINE-1", "Alpine:v3.18", "musl", [{"introduced": "0"}, {"fixed": "1.2.4-r3"}])])
    m = Matcher(db.conn)
    assert m.match("Alpine", "3.18", "musl", "garbage") == []
    assert len(m.warnings) == 1 and "'garbage' is not a valid apk version" in next(iter(m.warnings))
    assert m.match("Alpine", "3.18", "musl", "1.2.4-r2")[0].hit.fixed == "1.2.4-r3"


def test_records_sharing_a_range_text_match_alike_and_load_together(db):
    events = [{"introduced": "0"}, {"fixed": "1.1.1n-0+deb11u4"}]
    import_records(db, [osv("DSA-1", "Debian:11", "openssl", events, aliases=["CVE-2022-1"]),
                        osv("DEBIAN-CVE-2022-2", "Debian:11", "openssl", events),
                        osv("DSA-3", "Debian:11", "zlib", events)])
    m = Matcher(db.conn)
    m.prefetch([("Debian", "11", "openssl"), ("Debian", "11", "zlib")])
    hits = m.match("Debian", "11", "openssl", "1.1.1n-0+deb11u3")
    assert sorted(x.candidate.advisory_id for x in hits) == ["DEBIAN-CVE-2022-2", "DSA-1"]
    assert {x.hit.fixed for x in hits} == {"1.1.1n-0+deb11u4"}
    assert m.match("Debian", "11", "openssl", "1.1.1n-0+deb11u4") == []
    # the first record asked for brings every matched one: the second is answered without the store
    assert m.advisory("DSA-1").cves == ("CVE-2022-1",)
    m.conn = None
    assert m.advisory("DEBIAN-CVE-2022-2").id == "DEBIAN-CVE-2022-2"
    with pytest.raises(AttributeError):
        m.advisory("DSA-3")  # never matched, so never loaded


def test_an_installed_version_known_only_as_a_range_is_matched_conservatively(db):
    """A library found by its classes may be '>=1.2.5' or '>=4.3.0, <5.0.0': an advisory overlapping that
    range is a possible hit (never dropped), one covering all of it a certain hit, one below it no hit."""
    import_records(db, [
        osv("GHSA-old", "Maven", "org.apache.shiro:shiro-core", [{"introduced": "0"}, {"fixed": "1.2.5"}]),
        osv("GHSA-later", "Maven", "org.apache.shiro:shiro-core", [{"introduced": "0"}, {"fixed": "1.4.2"}]),
        osv("GHSA-open", "Maven", "org.apache.shiro:shiro-core", [{"introduced": "1.3.0"}]),
        osv("GHSA-listed", "Maven", "org.apache.shiro:shiro-core", versions=["1.2.3", "1.6.0"]),
        osv("GHSA-s1", "Maven", "org.springframework:spring-core",
            [{"introduced": "4.0.0"}, {"fixed": "4.3.29"}, {"introduced": "5.0.0"}, {"fixed": "5.2.9"}]),
        osv("GHSA-s2", "Maven", "org.springframework:spring-core", [{"introduced": "3.0.0"}, {"fixed": "5.2.20"}]),
        osv("GHSA-s3", "Maven", "org.springframework:spring-core", [{"introduced": "5.0.0"}, {"fixed": "5.3.0"}]),
        osv("GHSA-s4", "Maven", "org.springframework:spring-core",
            [{"introduced": "4.2.0"}, {"last_affected": "4.3.0"}]),
    ])
    m = Matcher(db.conn)
    got = {x.candidate.advisory_id: x.hit for x in m.match("Maven", "", "org.apache.shiro:shiro-core", ">=1.2.5")}
    assert set(got) == {"GHSA-later", "GHSA-open", "GHSA-listed"}  # fixed in 1.2.5: not affected at all
    assert got["GHSA-later"].possible and got["GHSA-later"].fixed == "1.4.2"
    assert "overlaps >=1.2.5 (exact version unknown)" in got["GHSA-later"].why
    assert got["GHSA-open"].possible and got["GHSA-open"].fixed is None  # 1.2.5-1.2.x are not affected
    assert got["GHSA-listed"].possible
    got = {x.candidate.advisory_id: x.hit for x in
           m.match("Maven", "", "org.springframework:spring-core", ">=4.3.0, <5.0.0")}
    assert set(got) == {"GHSA-s1", "GHSA-s2", "GHSA-s4"}
    assert got["GHSA-s1"].possible and got["GHSA-s1"].fixed == "4.3.29"  # 4.3.29 and later are fixed
    assert not got["GHSA-s2"].possible and got["GHSA-s2"].why.endswith("all of >=4.3.0, <5.0.0")
    assert got["GHSA-s4"].possible  # only 4.3.0 itself
    assert not m.warnings
    # the same texts as plain versions still match as before
    assert [x.candidate.advisory_id for x in m.match("Maven", "", "org.apache.shiro:shiro-core", "1.2.5")] == \
        ["GHSA-later"]
    assert m.match("Maven", "", "org.apache.shiro:shiro-core", ">=banana, <") == []
    assert any("not a valid maven version" in w for w in m.warnings)
