"""The built-in secret catalogue: every rule with a positive and a negative sample, masking, entropy,
overlaps and the keyword prefilter. Token-shaped samples are generated, never real."""
import base64
import random

import pytest

from stowaway.analyzers.secrets.rules import BUILTIN, Catalogue, entropy, mask

UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
ALNUM = UPPER + UPPER.lower() + "0123456789"
B64 = ALNUM + "+/"


def tok(alphabet: str, n: int, seed: int = 1) -> str:
    rnd = random.Random(seed)
    return "".join(rnd.choice(alphabet) for _ in range(n))


def pem(kind: str) -> str:
    body = "\n".join(tok(B64, 64, i) for i in range(5))
    label = f"{kind} PRIVATE KEY" + (" BLOCK" if kind == "PGP" else "")
    return f"-----BEGIN {label.strip()}-----\n{body}\n-----END {label.strip()}-----\n".replace("BEGIN  ", "BEGIN ")


AUTH = base64.b64encode(b"deploy:" + tok(ALNUM, 16).encode()).decode()
CATALOGUE = Catalogue(list(BUILTIN))

# (rule id, path, text that must be reported under that rule, path, text that must not)
CASES = [
    ("private-key", "/k", pem("RSA"), "/k", "-----BEGIN RSA PRIVATE KEY-----\n...\n-----END RSA PRIVATE KEY-----"),
    ("private-key", "/k", pem("EC"), "/k", "-----BEGIN PUBLIC KEY-----\n" + tok(B64, 200) + "\n-----END PUBLIC KEY-----"),
    ("private-key", "/k", pem("OPENSSH"), "/k", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI" + tok(B64, 40) + " me@host"),
    ("private-key", "/k", pem("PGP"), "/k", "-----BEGIN PGP PUBLIC KEY BLOCK-----\n" + tok(B64, 200) + "\n-----END PGP PUBLIC KEY BLOCK-----"),
    ("private-key", "/k", pem("DSA"), "/k", "BEGIN PRIVATE KEY"),
    ("private-key", "/k", pem(""), "/k", "private key handling is documented elsewhere"),
    ("private-key", "/k", pem("ENCRYPTED"), "/k", "-----BEGIN CERTIFICATE-----\n" + tok(B64, 200) + "\n-----END CERTIFICATE-----"),
    ("aws-access-key-id", "/a", "key=AKIA" + tok(UPPER + "0123456789", 16), "/a", "key=AKIAIOSFODNN7EXAMPLE"),
    ("aws-access-key-id", "/a", '"ASIA' + tok(UPPER + "0123456789", 16, 2) + '"', "/a", "AKIA" + tok(UPPER, 10)),
    ("aws-secret-access-key", "/a", "aws_secret_access_key = " + tok(B64, 40), "/a", "some_value = " + tok(B64, 40)),
    ("aws-secret-access-key", "/a", '{"aws.secretAccessKey": "' + tok(B64, 40, 3) + '"}', "/a", "aws_secret_access_key=" + "A" * 40),
    ("github-pat", "/g", "GITHUB_TOKEN=ghp_" + tok(ALNUM, 36), "/g", "ghp_" + tok(ALNUM, 20)),
    ("github-fine-grained-pat", "/g", "github_pat_" + tok(ALNUM + "_", 82), "/g", "github_pat_" + tok(ALNUM, 30)),
    ("github-oauth", "/g", "gho_" + tok(ALNUM, 36), "/g", "gho_" + tok(ALNUM, 35)),
    ("github-app-token", "/g", "ghs_" + tok(ALNUM, 36), "/g", "ghx_" + tok(ALNUM, 36)),
    ("github-refresh-token", "/g", "ghr_" + tok(ALNUM, 36), "/g", "ghr_" + tok(ALNUM, 12)),
    ("gitlab-pat", "/g", "glpat-" + tok(ALNUM + "_-", 20), "/g", "glpat-" + tok(ALNUM, 10)),
    ("gitlab-pipeline-trigger-token", "/g", "glptt-" + tok("0123456789abcdef", 40), "/g", "glptt-" + tok("0123456789abcdef", 20)),
    ("gitlab-runner-token", "/g", "glrt-" + tok(ALNUM, 20), "/g", "glrt-short"),
    ("gitlab-deploy-token", "/g", "gldt-" + tok(ALNUM, 20), "/g", "gldt-short"),
    ("slack-bot-token", "/s", f"xoxb-{tok('0123456789', 12)}-{tok('0123456789', 13)}-{tok(ALNUM, 24)}", "/s", "xoxb-123-456"),
    ("slack-user-token", "/s", f"xoxp-{tok('0123456789', 11)}-{tok('0123456789', 11)}-{tok('0123456789', 12)}-{tok(ALNUM, 32)}",
     "/s", "xoxp-1234"),
    ("slack-app-token", "/s", f"xapp-1-A{tok(UPPER, 10)}-{tok('0123456789', 13)}-{tok('0123456789abcdef', 64)}", "/s", "xapp-"),
    ("slack-webhook-url", "/s", "https://hooks.slack.com/services/T01234567/B01234567/" + tok(ALNUM, 24), "/s",
     "https://hooks.slack.com/services/"),
    ("stripe-secret-key", "/p", "STRIPE_KEY=sk_live_" + tok(ALNUM, 24), "/p", "sk_live_" + tok(ALNUM, 10)),
    ("stripe-test-key", "/p", "sk_test_" + tok(ALNUM, 24), "/p", "sk_tests_" + tok(ALNUM, 24)),
    ("google-api-key", "/c", "key: AIza" + tok(ALNUM + "_-", 35), "/c", "AIza" + tok(ALNUM, 20)),
    ("azure-storage-account-key", "/c", "DefaultEndpointsProtocol=https;AccountName=x;AccountKey=" + tok(B64, 86) + "==;",
     "/c", "AccountKey=short=="),
    ("azure-sas-token", "/c", "https://x.blob.core.windows.net/c?sv=2021-08-06&sig=" + tok(ALNUM, 43) + "%3D", "/c",
     "https://x.blob.core.windows.net/c?sig=" + "a" * 43 + "%3D"),
    ("npm-access-token", "/n", "npm_" + tok(ALNUM, 36), "/n", "npm_install_" + tok(ALNUM, 10)),
    ("pypi-upload-token", "/y", "pypi-AgEIcHlwaS5vcmc" + tok(ALNUM + "_-", 70), "/y", "pypi-AgEIcHlwaS5vcmc" + tok(ALNUM, 20)),
    ("jwt", "/j", "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0." + tok(ALNUM + "_-", 43),
     "/j", "eyJhbGciOiJIUzI1NiJ9 only a header"),
    ("docker-config-auth", "/root/.docker/config.json", '{"auths": {"registry.example": {"auth": "' + AUTH + '"}}}',
     "/root/.docker/config.json", '{"auths": {"r": {"auth": "' + base64.b64encode(b"no-colon-here").decode() + '"}}}'),
    ("npmrc-auth", "/root/.npmrc", "//registry.npmjs.org/:_authToken=" + tok("0123456789abcdef-", 36), "/root/.npmrc",
     "//registry.npmjs.org/:_authToken=${NPM_TOKEN}"),
    ("npmrc-auth", "/app/.npmrc", "_auth=" + AUTH, "/app/notes.txt", "_auth=" + AUTH),
    ("pypirc-password", "/root/.pypirc", "[pypi]\nusername = __token__\npassword = Vq7" + tok(ALNUM, 12) + "\n",
     "/root/.pypirc", "[pypi]\npassword = ${PYPI_PASSWORD}\n"),
    ("password-in-url", "/e", "DATABASE_URL=postgres://shop:" + tok(ALNUM, 20) + "@db:5432/shop", "/e",
     "DATABASE_URL=postgres://user:password@localhost/db"),
    ("password-in-url", "/e", "amqp://guest:Xy7pQ2rT9@rabbit:5672/", "/e", "https://user:${DB_PASS}@db.example/"),
    ("generic-secret", "/etc/app.conf", "db.password = Zq8rT2vLp9xW", "/etc/app.conf", 'password = "changeme"'),
    ("generic-secret", "/etc/app.conf", 'client_secret: "' + tok(ALNUM, 24) + '"', "/x.js", "tokenize = Sizzle.tokenize"),
    ("generic-secret", "/etc/app.conf", "API_KEY=" + tok(ALNUM, 32), "/x.js", "var token = tokens.length;"),
]


@pytest.mark.parametrize("rule, pos_path, positive, neg_path, negative", CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_builtin_rule(rule, pos_path, positive, neg_path, negative):
    found = CATALOGUE.scan(positive.encode(), pos_path)
    assert rule in {h.rule.id for h in found}, positive[:120]
    assert rule not in {h.rule.id for h in CATALOGUE.scan(negative.encode(), neg_path)}, negative[:120]


def test_every_builtin_rule_has_cases():
    assert {r.id for r in BUILTIN} == {c[0] for c in CASES}


def test_line_numbers_and_secret_boundaries():
    token = "ghp_" + tok(ALNUM, 36)
    data = f"a=1\nb=2\nGITHUB_TOKEN={token}\n".encode()
    [hit] = CATALOGUE.scan(data, "/x")
    assert (hit.rule.id, hit.line, hit.secret) == ("github-pat", 3, token.encode())


def test_overlapping_matches_go_to_the_specific_rule():
    token = "ghp_" + tok(ALNUM, 36)
    hits = CATALOGUE.scan(f'token = "{token}"\n'.encode(), "/x")
    assert [h.rule.id for h in hits] == ["github-pat"]


def test_keyword_prefilter_selects_rules():
    plain = CATALOGUE.candidates(b"nothing to see here")
    assert plain == []
    chosen = {r.id for r in CATALOGUE.candidates(b"export X=GHP_abc")}  # keywords match case-insensitively
    assert "github-pat" in chosen and "stripe-secret-key" not in chosen


def test_mask_keeps_only_the_ends():
    token = "ghp_Y5" + "x" * 30 + "uXov"
    assert mask(token) == "ghp_…uXov"
    assert mask("S3cr3tP4ss") == "S3…s"
    assert mask("short") == "…"
    assert mask(pem("RSA"), whole_body=True, label="RSA private key") == "[RSA private key: body masked]"
    for value in (token, "AKIA" + tok(UPPER, 16), tok(B64, 40)):
        head, tail = mask(value).split("…")
        assert len(head) <= 4 and len(tail) <= 4 and len(head + tail) <= len(value) // 3


def test_entropy():
    assert entropy(b"") == 0 and entropy(b"aaaa") == 0
    assert entropy(b"abcd") == pytest.approx(2.0)
    assert entropy(tok(B64, 40).encode()) > 4.0
