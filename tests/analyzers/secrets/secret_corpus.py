"""A precision corpus for the secret scanner, built in code: files that are full of secret-shaped text that
is not secret (lockfile integrity hashes, minified JS, base64 images and fonts, UUIDs, git SHAs,
checksums, documented example keys, public endpoints), with a few real (randomly generated) secrets
planted among them. Shared by the precision test and tests/bench/bench_secret_precision.py.

A finding is true when its value overlaps a planted secret, false otherwise.
"""
from __future__ import annotations

import base64
import hashlib
import json
import random
import uuid
from dataclasses import dataclass

UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
ALNUM = UPPER + UPPER.lower() + "0123456789"
B64 = ALNUM + "+/"
HEX = "0123456789abcdef"


@dataclass(frozen=True)
class Doc:
    category: str
    path: str
    text: str
    planted: tuple[str, ...] = ()  # the real secrets in it


def _tok(rnd: random.Random, alphabet: str, n: int) -> str:
    return "".join(rnd.choice(alphabet) for _ in range(n))


def _sri(rnd: random.Random) -> str:
    return "sha512-" + base64.b64encode(rnd.randbytes(64)).decode()


def _pem(rnd: random.Random, kind: str = "RSA") -> tuple[str, str]:
    body = "\n".join(base64.b64encode(rnd.randbytes(48)).decode() for _ in range(8))
    return f"-----BEGIN {kind} PRIVATE KEY-----\n{body}\n-----END {kind} PRIVATE KEY-----\n", body.splitlines()[0]


def build(seed: int = 18) -> list[Doc]:
    rnd = random.Random(seed)
    docs: list[Doc] = []

    # -- lockfiles: integrity hashes, resolved URLs with tokens-in-name packages
    names = ["js-tokens", "safe-buffer", "jsonwebtoken", "passport-local", "@auth0/auth0-spa-js", "keygrip",
             "secure-password", "token-stream", "api-key-validator", "secret-handshake"]
    pkgs = {f"node_modules/{n}": {"version": f"{rnd.randint(1, 9)}.{rnd.randint(0, 20)}.{rnd.randint(0, 9)}",
                                  "resolved": f"https://registry.npmjs.org/{n}/-/{n.split('/')[-1]}-1.0.0.tgz",
                                  "integrity": _sri(rnd)} for n in names}
    docs.append(Doc("lockfile", "/app/package-lock.json",
                    json.dumps({"name": "app", "lockfileVersion": 3, "packages": pkgs}, indent=2)))
    docs.append(Doc("lockfile", "/app/yarn.lock", "\n".join(
        f'"{n}@^1.0.0":\n  version "1.0.0"\n  resolved "https://registry.yarnpkg.com/{n}/-/{n.split("/")[-1]}-1.0.0.tgz'
        f'#{_tok(rnd, HEX, 40)}"\n  integrity {_sri(rnd)}\n' for n in names)))
    docs.append(Doc("lockfile", "/app/poetry.lock", "\n".join(
        f'[[package]]\nname = "{n}"\nversion = "2.0.1"\nfiles = [\n    {{file = "{n}-2.0.1.tar.gz", hash = "sha256:'
        f'{_tok(rnd, HEX, 64)}"}},\n]\n' for n in ("keyring", "secretstorage", "pyjwt", "passlib", "itsdangerous"))
        + f'\n[metadata]\ncontent-hash = "{_tok(rnd, HEX, 64)}"\n'))
    docs.append(Doc("lockfile", "/app/Pipfile.lock", json.dumps({"_meta": {"hash": {"sha256": _tok(rnd, HEX, 64)}},
                    "default": {n: {"hashes": [f"sha256:{_tok(rnd, HEX, 64)}"], "version": "==1.2.3"}
                                for n in ("keyring", "oauthlib", "python-jose")}}, indent=4)))
    docs.append(Doc("lockfile", "/src/go.sum", "\n".join(
        f"golang.org/x/{m} v0.1.0 h1:{base64.b64encode(rnd.randbytes(32)).decode()}\n"
        f"golang.org/x/{m} v0.1.0/go.mod h1:{base64.b64encode(rnd.randbytes(32)).decode()}"
        for m in ("oauth2", "crypto", "term"))))
    docs.append(Doc("lockfile", "/app/composer.lock", json.dumps({"content-hash": _tok(rnd, HEX, 32), "packages": [
        {"name": "firebase/php-jwt", "version": "v6.4.0",
         "dist": {"type": "zip", "url": "https://api.github.com/repos/firebase/php-jwt/zipball/" + _tok(rnd, HEX, 40),
                  "reference": _tok(rnd, HEX, 40), "shasum": ""}}]}, indent=4)))
    docs.append(Doc("lockfile", "/app/Cargo.lock", "\n".join(
        f'[[package]]\nname = "{n}"\nversion = "0.9.0"\nsource = "registry+https://github.com/rust-lang/crates.io-index"\n'
        f'checksum = "{_tok(rnd, HEX, 64)}"\n' for n in ("jsonwebtoken", "secrecy", "ring"))))
    docs.append(Doc("lockfile", "/usr/local/lib/python3.11/site-packages/keyring-24.3.0.dist-info/RECORD".replace(
        "/usr/local", "/opt/venv"), "\n".join(
        f"keyring/{f}.py,sha256={base64.urlsafe_b64encode(rnd.randbytes(32)).decode().rstrip('=')},{rnd.randint(100, 9000)}"
        for f in ("credentials", "backend", "core", "passwords"))))

    # -- minified JS: every keyword, no secret
    js = (
        'var t=e.token||"",n=r.apiKey,o=function(e){return e.password=i.password,e};'
        'const passwordRegex=/^(?=.*[a-z])(?=.*[A-Z]).{8,}$/;tokenType:"Bearer",'
        'e.secret=t.clientSecret;window.__APP__={apiKeyHeader:"X-Api-Key",csrfTokenName:"csrfmiddlewaretoken"};'
        '{key:"componentDidMount",value:function(){this.setState({password:this.props.password})}},'
        'authKeyPrefix:"Bearer ",token:n.accessToken,secretKeyRef:o.secretKeyRef,credentials:"same-origin",'
        'passwordField:"userPassword",tokenize:Sizzle.tokenize,TOKEN_EXPIRY_SECONDS=3600,'
        f'sourceMappingURL=data:application/json;base64,{base64.b64encode(rnd.randbytes(300)).decode()}'
    )
    docs.append(Doc("minified-js", "/app/static/js/main.3f2a1c.js", js * 3))
    docs.append(Doc("minified-js", "/app/static/js/vendor.js",
                    'function(e,t){var n={};n.access_key=t.access_key,n.api_key=t["api_key"],n.secret_key=e.secretKey;'
                    f'var s="{_tok(rnd, ALNUM, 64)}";return n.token=e.token,n}}'
                    f';e.exports={{version:"5.2.1",hash:"{_tok(rnd, HEX, 20)}",chunkhash:"{_tok(rnd, HEX, 8)}"}};'))

    # -- base64 images and fonts, inline in CSS and HTML
    png = base64.b64encode(b"\x89PNG\r\n\x1a\n" + rnd.randbytes(1500)).decode()
    woff = base64.b64encode(b"wOF2" + rnd.randbytes(3000)).decode()
    docs.append(Doc("base64-image", "/app/static/css/app.css",
                    f".icon-key{{background-image:url(data:image/png;base64,{png})}}\n"
                    f"@font-face{{font-family:Secret;src:url(data:font/woff2;base64,{woff}) format('woff2')}}\n"))
    docs.append(Doc("base64-image", "/app/templates/login.html",
                    f'<label for="password">Password</label><input type="password" name="password">\n'
                    f'<img alt="token" src="data:image/png;base64,{png[:900]}">\n'))

    # -- UUIDs: ids, correlation ids, keys of resources
    u = [str(uuid.UUID(bytes=rnd.randbytes(16), version=4)) for _ in range(8)]
    docs.append(Doc("uuid", "/app/config/tenants.json", json.dumps({
        "tenant_id": u[0], "client_id": u[1], "subscription_id": u[2], "request_id": u[3],
        "keyId": u[4], "tokenId": u[5], "secretName": "app-tls-secret-v2", "passwordPolicyId": u[6]}, indent=2)))
    docs.append(Doc("uuid", "/app/.env.example", f"CORRELATION_ID={u[7]}\nTOKEN_ID={u[0]}\nAPI_KEY=\nSECRET=\n"))

    # -- documented example values (the published examples of each vendor's documentation)
    docs.append(Doc("docs-example", "/app/README.md",
                    "## Configure AWS\n\n```\n[default]\naws_access_key_id = AKIAIOSFODNN7EXAMPLE\n"
                    "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n```\n\n"
                    "Export `AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE` before running.\n"))
    docs.append(Doc("docs-example", "/app/docs/payments.md",
                    "```sh\ncurl https://api.stripe.com/v1/charges -u sk_test_4eC39HqLyjWDarjtT1zdp7dc:\n```\n"
                    "Publishable key: `pk_test_TYooMQauvdEDq54NiTphI7jx`\n"
                    'stripe.api_key = "sk_test_4eC39HqLyjWDarjtT1zdp7dc"\n'))
    docs.append(Doc("docs-example", "/app/docs/auth.md",
                    "Send the token: `Authorization: Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3"
                    "ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c`\n"))
    docs.append(Doc("docs-example", "/app/docs/azure.md",
                    "Azurite: `DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=Eby8vdM02xNOcqFl"
                    "qUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;BlobEndpoint=http://127.0.0"
                    ".1:10000/devstoreaccount1;`\n"))
    docs.append(Doc("docs-example", "/app/docs/slack.md",
                    '```json\n{"ok": true, "access_token": "xoxb-17653672481-19874698323-pdFZKVeTuE8sk7oOcBrzbqgy",'
                    ' "token_type": "bot"}\n```\nWebhook: https://hooks.slack.com/services/T00000000/B00000000/'
                    "XXXXXXXXXXXXXXXXXXXXXXXX\n"))

    # -- public endpoints and URLs next to keywords (and the service-account JSON of issue 18)
    sa_key, sa_body_line = _pem(rnd, "")
    sa_key = sa_key.replace("BEGIN  PRIVATE", "BEGIN PRIVATE").replace("END  PRIVATE", "END PRIVATE")
    docs.append(Doc("public-endpoint", "/app/secrets/service-account.json", json.dumps({
        "type": "service_account", "project_id": "shop-prod-123", "private_key_id": _tok(rnd, HEX, 40),
        "private_key": sa_key, "client_email": "shop@shop-prod-123.iam.gserviceaccount.com",
        "client_id": str(rnd.randint(10 ** 20, 10 ** 21)), "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": "https://oauth2.googleapis.com/token",
        "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
        "client_x509_cert_url": "https://www.googleapis.com/robot/v1/metadata/x509/shop%40shop-prod-123.iam."
                                "gserviceaccount.com"}, indent=2), planted=(sa_body_line,)))
    docs.append(Doc("public-endpoint", "/app/config/oauth.yaml",
                    "oauth:\n  token_url: https://github.com/login/oauth/access_token\n"
                    "  tokenEndpoint: https://login.microsoftonline.com/common/oauth2/v2.0/token\n"
                    "  password_reset_url: https://accounts.example.com/password/reset\n"
                    "  secret_manager: https://secretmanager.googleapis.com/v1/projects\n"
                    "  api_key_docs: https://developers.google.com/maps/documentation/javascript/get-api-key\n"))

    # -- git SHAs and checksums
    docs.append(Doc("git-sha", "/app/.git/packed-refs", "\n".join(f"{_tok(rnd, HEX, 40)} refs/heads/{b}"
                                                                   for b in ("main", "token-refresh", "secret-rotation"))))
    docs.append(Doc("git-sha", "/app/node_modules/jsonwebtoken/package.json", json.dumps(
        {"name": "jsonwebtoken", "version": "9.0.2", "gitHead": _tok(rnd, HEX, 40),
         "_shasum": _tok(rnd, HEX, 40), "_integrity": _sri(rnd)}, indent=2)))
    docs.append(Doc("checksum", "/opt/tools/SHA256SUMS", "\n".join(
        f"{hashlib.sha256(n.encode()).hexdigest()}  {n}" for n in ("vault_1.15.0_linux_amd64.zip",
                                                                  "secret-tool.tar.gz", "token-cli"))))
    docs.append(Doc("checksum", "/app/config/assets.yml",
                    f"assets:\n  app.js:\n    sha256: {_tok(rnd, HEX, 64)}\n  keys.js:\n    md5: {_tok(rnd, HEX, 32)}\n"
                    f"password_hash_algorithm: argon2id\nsecret_checksum: sha1:{_tok(rnd, HEX, 40)}\n"))

    # -- configuration that names a secret without holding one
    docs.append(Doc("reference", "/app/config/settings.py",
                    'SECRET_KEY = os.environ["SECRET_KEY"]\nDB_PASSWORD = os.getenv("DB_PASSWORD", "")\n'
                    "PASSWORD_MIN_LENGTH = 12\nTOKEN_TTL_SECONDS = 86400\napi_key = settings.API_KEY\n"
                    'password_hasher = "django.contrib.auth.hashers.Argon2PasswordHasher"\n'))
    docs.append(Doc("reference", "/app/deploy/values.yaml",
                    "db:\n  password: {{ .Values.db.password }}\n  passwordSecretRef: db-credentials-v2\n"
                    "  secretName: postgres-credentials\n  tokenFile: /var/run/secrets/kubernetes.io/serviceaccount/token\n"
                    "  credentialsPath: /etc/app/credentials.json\n"))
    docs.append(Doc("reference", "/app/locales/en.json", json.dumps(
        {"password_too_short": "PasswordMustBeAtLeast8Characters", "token_expired": "YourSessionHasExpired",
         "secret_question": "WhatWasYourFirstPetsName"}, indent=2)))
    docs.append(Doc("reference", "/app/templates/account.html",
                    '<form><input type="password" name="password" autocomplete="new-password">\n'
                    '<label for="token">AccessToken</label><input name="apiKey" value="{{ form.api_key }}">\n'
                    '<span class="secret">SecretQuestion</span></form>\n'))
    docs.append(Doc("reference", "/app/src/Auth.java",
                    'String password = request.getParameter("password");\n'
                    'authService.login(username, password, rememberMeToken);\n'
                    'setPassword(password, confirmPassword);\nvar token string = os.Getenv("TOKEN")\n'))
    docs.append(Doc("reference", "/app/conf/server.xml",
                    "<datasource>\n  <password>${DB_PASSWORD}</password>\n  <token>{{ token }}</token>\n"
                    "  <secretKeyRef>app-secrets</secretKeyRef>\n</datasource>\n"))
    docs.append(Doc("public-key", "/root/.ssh/authorized_keys",
                    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI" + _tok(rnd, B64, 43) + " deploy@ci\n"))

    # -- real secrets among the noise (they must still be found)
    aws_id = "AKIA" + _tok(rnd, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16)
    aws_secret = _tok(rnd, B64, 40)
    ghp = "ghp_" + _tok(rnd, ALNUM, 36)
    db_pass = "K8s" + _tok(rnd, ALNUM, 13)
    docs.append(Doc("planted", "/app/.env",
                    f"AWS_ACCESS_KEY_ID={aws_id}\nAWS_SECRET_ACCESS_KEY={aws_secret}\nGITHUB_TOKEN={ghp}\n"
                    f"DB_PASSWORD={db_pass}\nTOKEN_URL=https://oauth2.googleapis.com/token\n",
                    planted=(aws_id, aws_secret, ghp, db_pass)))
    stripe = "sk_live_" + _tok(rnd, ALNUM, 24)
    docs.append(Doc("planted", "/app/static/js/checkout.min.js",
                    js + f';var stripeKey="{stripe}";' + js, planted=(stripe,)))
    pem, first = _pem(rnd, "EC")
    docs.append(Doc("planted", "/etc/app/tls.key", pem, planted=(first,)))
    return docs


def is_true(secret: bytes, doc: Doc) -> bool:
    text = secret.decode("utf-8", "replace")
    return any(p in text or (len(text) >= 8 and text in p) for p in doc.planted)
