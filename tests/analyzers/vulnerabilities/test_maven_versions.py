"""Maven's own ComparableVersionTest vectors (data/maven_comparable_version.json, Apache-2.0) against
Stowaway's ComparableVersion implementation, plus the pairs from real feeds where univers differed."""
import json
import pathlib

import pytest

from stowaway.analyzers.vulnerabilities.versions import InvalidVersion, compare, maven_compare, parse

DATA = json.loads((pathlib.Path(__file__).parent / "data" / "maven_comparable_version.json").read_text())


def test_vector_file_names_its_source_and_licence():
    assert "apache/maven" in DATA["source"] and DATA["licence"].startswith("Apache-2.0")


@pytest.mark.parametrize("versions", DATA["ordered"], ids=["qualifiers", "numbers"])
def test_ordered_lists(versions):
    for i, low in enumerate(versions):
        for high in versions[i + 1:]:
            assert maven_compare(low, high) < 0, (low, high)
            assert maven_compare(high, low) > 0, (high, low)


@pytest.mark.parametrize("low,high", DATA["less"])
def test_less(low, high):
    assert maven_compare(low, high) < 0
    assert maven_compare(high, low) > 0


@pytest.mark.parametrize("a,b", DATA["equal"] + DATA["same_order"])
def test_equal(a, b):
    assert maven_compare(a, b) == 0
    assert maven_compare(b, a) == 0


@pytest.mark.parametrize("group", DATA["equal_groups"])
def test_leading_zeroes(group):
    for a in group:
        for b in group:
            assert maven_compare(a, b) == 0


@pytest.mark.parametrize("low,high", [
    # pairs from the feeds where univers' order differed from Maven 3.8.7+ (issue 15)
    ("9.0.0.M1", "9.0.0-M11"), ("10.0.0.M1", "10.0.0-M5"), ("6.0.beta16", "6.0.0rc0"),
])
def test_feed_pairs(low, high):
    assert compare("maven", low, high) < 0


def test_release_qualifier_orders_as_release():
    assert compare("maven", "4.3.30.RELEASE", "4.3.30") == 0
    assert compare("maven", "5.2.22.RELEASE", "5.2.22") == 0


def test_huge_digit_runs_compare_without_ints():
    a, b = "1." + "9" * 200, "1." + "1" + "0" * 200
    assert maven_compare(a, b) < 0
    with pytest.raises(InvalidVersion):
        parse("maven", "1." + "9" * 5000)
