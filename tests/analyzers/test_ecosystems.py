"""The one place per ecosystem: every surface reads the same facts from analyzers/ecosystems.py."""
from stowaway.analyzers import ecosystems
from stowaway.analyzers.inventory._app import purl_of
from stowaway.analyzers.vulnerabilities import ecosystems as vuln
from stowaway.analyzers.vulnerabilities.versions import SCHEMES


def test_every_entry_has_a_version_scheme_and_application_entries_an_osv_name():
    for e in ecosystems.ECOSYSTEMS:
        assert e.scheme in SCHEMES, e
        assert (e.osv is None) == e.os, e
        assert vuln.SCHEME_OF.get(e.osv, e.scheme) == e.scheme


def test_os_package_types_are_not_distribution_ecosystems():
    # two different things, named apart: 'deb' is a package type, 'Debian' an advisory ecosystem
    assert ecosystems.OS_PACKAGE_TYPES == ("deb", "rpm", "apk")
    assert set(ecosystems.OS_PACKAGE_TYPES).isdisjoint(vuln.DISTRIBUTION_ECOSYSTEMS)
    assert {"Debian", "Red Hat", "Alpine"} <= vuln.DISTRIBUTION_ECOSYSTEMS


def test_names_and_purls_come_from_the_registry():
    assert vuln.normalize_name("PyPI", "Jinja2_Ext.Foo") == ecosystems.get("pypi").normalize("Jinja2_Ext.Foo") \
        == "jinja2-ext-foo"
    assert vuln.normalize_name("Maven", "Org.Foo:Bar") == "org.foo:bar"
    assert vuln.normalize_name("npm", "@Scope/Pkg") == "@Scope/Pkg"
    assert ecosystems.get("golang") is ecosystems.get("go") and ecosystems.purl_type("go") == "golang"
    assert purl_of("go", "github.com/a/b", "v1.0.0") == "pkg:golang/github.com/a/b@v1.0.0"
    assert vuln.package_target("cargo", "serde", "1.0.0", "", "", None) == ("crates.io", "", "serde", "1.0.0")
