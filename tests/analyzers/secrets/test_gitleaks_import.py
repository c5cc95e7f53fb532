"""gitleaks-format rule files: Go-regex translation, allowlists, path rules, reporting of what cannot be
imported, and the real gitleaks catalogue from ../shared."""
import re
import warnings

import pytest
import tomllib
from conftest import SHARED

from stowaway.analyzers.secrets import gitleaks
from stowaway.analyzers.secrets.gitleaks import Untranslatable, translate
from stowaway.analyzers.secrets.rules import Catalogue

GITLEAKS = SHARED / "rules" / "secrets" / "gitleaks" / "gitleaks.toml"
real_catalogue = pytest.mark.skipif(not GITLEAKS.exists(), reason="../shared/rules/secrets/gitleaks not present")


@pytest.mark.parametrize("go, python", [
    (r"\b(p8e-(?i)[a-z0-9]{32})", r"\b(p8e-(?i:[a-z0-9]{32}))"),
    (r"a(?i)b|c", r"a(?i:b)|(?i:c)"),
    (r"(?i)abc", r"(?i)abc"),
    (r"x(?-i:ATL|[Aa]tl)y", r"x(?-i:ATL|[Aa]tl)y"),
    (r"pat[[:alnum:]]{14}", r"pat[a-zA-Z0-9]{14}"),
    (r"end\z", r"end\Z"),
    (r"\Qa.b\E+", r"a\.b+"),
    (r"(?<name>x)", r"(?P<name>x)"),
    (r"[[]x", r"[\[]x"),
])
def test_translate(go, python):
    assert translate(go) == python
    re.compile(python)


@pytest.mark.parametrize("go", [r"\p{L}+", r"[\p{Greek}]", r"(?U)a+", r"(unbalanced", r"[[:bogus:]]"])
def test_untranslatable(go):
    with pytest.raises(Untranslatable):
        translate(go)


def test_mid_pattern_flag_keeps_its_meaning():
    rx = gitleaks.compile_go(r"\b(p8e-(?i)[a-z0-9]{4})\b")
    assert rx.search(b"p8e-AbCd") and not rx.search(b"P8E-abcd")
    alt = gitleaks.compile_go(r"^a(?i)b|c$")
    assert alt.search(b"aB") and alt.search(b"C") and not alt.search(b"AB")


RULES = r"""
[allowlist]
paths = ['''(?:^|/)fixtures/''']
stopwords = ["example"]

[[rules]]
id = "acme-token"
description = "ACME token"
regex = '''\b(acme_(?i)[a-z0-9]{20})\b'''
keywords = ["acme_"]
entropy = 3

[[rules]]
id = "acme-unicode"
regex = '''\p{L}{4}_key'''

[[rules]]
id = "acme-keystore"
path = '''\.p12$'''

[[rules]]
id = "acme-secret"
regex = '''(?i)acme_secret\s*=\s*"([^"]{8,})"'''
secretGroup = 1
keywords = ["acme_secret"]
[[rules.allowlists]]
regexTarget = "line"
regexes = ['''# nosecret''']
"""


@pytest.fixture
def custom(tmp_path):
    path = tmp_path / "custom.toml"
    path.write_text(RULES)
    return str(path)


def test_load_reports_and_skips_untranslatable_rules(custom):
    rules, global_allow, skipped = gitleaks.load(custom)
    assert [r.id for r in rules] == ["acme-token", "acme-keystore", "acme-secret"]
    assert len(skipped) == 1 and skipped[0].startswith("acme-unicode:") and "\\p" in skipped[0]
    assert len(global_allow) == 1


def test_imported_rules_find_and_allow(custom):
    rules, global_allow, _ = gitleaks.load(custom)
    cat = Catalogue(rules, {custom: global_allow})
    token = b"acme_" + b"Q7w2E9r4T1y6U3i8O5p0"
    assert [(h.rule.id, h.secret) for h in cat.scan(b"x = " + token, "/app/conf")] == [("acme-token", token)]
    assert cat.scan(b"x = " + token, "/app/fixtures/conf") == []  # the file's global path allowlist
    assert cat.scan(b"x = acme_" + b"a" * 20, "/app/conf") == []  # below the rule's entropy
    assert cat.scan(b"x = acme_example7w2E9r4T1y6U3i8", "/app/conf") == []  # a global stopword
    assert [h.secret for h in cat.scan(b'ACME_SECRET = "hunter2hunter2"', "/c")] == [b"hunter2hunter2"]
    assert cat.scan(b'acme_secret = "hunter2hunter2"  # nosecret', "/c") == []  # line-target allowlist
    assert [h.rule.id for h in cat.scan(b"\x30\x82binary", "/certs/client.p12")] == ["acme-keystore"]
    assert cat.scan(b"\x30\x82binary", "/certs/client.pem") == []


def test_unreadable_or_invalid_file_is_one_clear_error(tmp_path):
    from stowaway.ingest.model import ScanError

    with pytest.raises(ScanError, match="cannot read"):
        gitleaks.load(str(tmp_path / "missing.toml"))
    bad = tmp_path / "bad.toml"
    bad.write_text("[[rules]\nid=")
    with pytest.raises(ScanError, match="invalid TOML"):
        gitleaks.load(str(bad))


@real_catalogue
def test_real_gitleaks_catalogue_imports():
    rules, global_allow, skipped = gitleaks.load(str(GITLEAKS))
    declared = tomllib.loads(GITLEAKS.read_text())["rules"]
    assert len(rules) + len(skipped) == len(declared)
    assert len(rules) >= 200, skipped
    assert global_allow
    # translation is what makes some of them load: Python refuses these patterns as written
    needed = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Python warns about RE2's '[[' as a possible nested set
        for raw in declared:
            try:
                re.compile(raw.get("regex", "").encode())
            except re.error:
                needed += 1
    assert needed > 0
    assert needed - len(skipped) > 0


@real_catalogue
def test_real_gitleaks_rules_find_real_token_formats():
    rules, global_allow, _ = gitleaks.load(str(GITLEAKS))
    cat = Catalogue(rules, {str(GITLEAKS): global_allow})
    ghp = b"ghp_" + b"Y5ptHhXczqe8A0Cr1KKQkVHvgZXb76tS0000"
    stripe = b"sk_live_" + b"nTKeR7IhFWxCYbsJqQaF0000"
    found = {h.rule.id for h in cat.scan(b"GITHUB_TOKEN=" + ghp + b"\nSTRIPE=" + stripe + b"\n", "/opt/app/.env")}
    assert {"github-pat", "stripe-access-token"} <= found
    # the catalogue's own path allowlist: nothing under node_modules
    assert not cat.scan(b"GITHUB_TOKEN=" + ghp, "/opt/app/node_modules/x/index.js")
