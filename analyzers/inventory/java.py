"""Java archives (jar, war, ear, par, ...), nested libraries included, read in memory with zipfile.

Identity comes from `META-INF/maven/**/pom.properties`, then `MANIFEST.MF`, then the file name, as
Syft and Trivy do. Nested archives come from the shared resolver (stowaway.ingest.archives): a jar in
a jar (Spring Boot `BOOT-INF/lib`, WAR `WEB-INF/lib`), in a tar.gz, a zip or any mix of them is
reported as `OUTER!/INNER`; its own pom.properties belong to it, not to the archive around it. The
`[archives]` limits bound depth, member size, total bytes and compression ratio, and an archive that
contains an ancestor of itself is not opened again: a zip bomb or a zip quine costs a warning, never
the memory or the scan.
"""
from __future__ import annotations

import hashlib
import io
import json
import lzma
import re
import struct
import zipfile
import zlib

from stowaway.ingest.archives import ARCHIVE_SUFFIXES, ArchiveLimits, Member, MemberConsumer, analyze_alone
from stowaway.ingest.failures import plain
from stowaway.ingest.model import ScanError

from ..base import Analyzer, register
from . import _classprints as classprints
from ._app import collect_packages, package, warning

SUFFIXES = (".jar", ".war", ".ear", ".par", ".jpi", ".hpi", ".sar")
MAX_METADATA = 1 << 20  # MANIFEST.MF, pom.properties
MAX_CENTRAL_DIRECTORY = 16 << 20  # about 200k entries: zipfile keeps one object per entry
# what zipfile raises on damaged archives: its own errors and those of the decompressors below it
READ_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError, NotImplementedError,
               RuntimeError, struct.error, zlib.error, lzma.LZMAError)

# Where only a manifest or a file name speaks, the Maven group of well-known artifacts.
# Longest prefix wins; an entry ending in '-' matches that prefix, any other only the exact name.
GROUPS = {
    "log4j-": "org.apache.logging.log4j", "log4j": "log4j",
    "fastjson": "com.alibaba", "fastjson2": "com.alibaba.fastjson2", "druid": "com.alibaba",
    "druid-spring-boot-starter": "com.alibaba", "nacos-": "com.alibaba.nacos", "dubbo": "org.apache.dubbo",
    "spring-": "org.springframework", "spring-boot": "org.springframework.boot",
    "spring-boot-": "org.springframework.boot", "spring-security-": "org.springframework.security",
    "spring-data-": "org.springframework.data", "spring-cloud-": "org.springframework.cloud",
    "spring-kafka": "org.springframework.kafka", "spring-amqp": "org.springframework.amqp",
    "spring-rabbit": "org.springframework.amqp", "spring-integration-": "org.springframework.integration",
    "spring-batch-": "org.springframework.batch", "spring-session-": "org.springframework.session",
    "spring-webflow": "org.springframework.webflow", "spring-ldap-": "org.springframework.ldap",
    "shiro-": "org.apache.shiro", "struts2-": "org.apache.struts", "struts-": "org.apache.struts",
    "xwork-core": "org.apache.struts.xwork", "tomcat-": "org.apache.tomcat",
    "tomcat-embed-": "org.apache.tomcat.embed", "catalina": "org.apache.tomcat",
    "commons-collections": "commons-collections", "commons-collections4": "org.apache.commons",
    "commons-lang": "commons-lang", "commons-lang3": "org.apache.commons", "commons-io": "commons-io",
    "commons-codec": "commons-codec", "commons-logging": "commons-logging", "commons-logging-": "commons-logging", "commons-beanutils": "commons-beanutils",
    "commons-fileupload": "commons-fileupload", "commons-httpclient": "commons-httpclient",
    "commons-dbcp": "commons-dbcp", "commons-pool": "commons-pool", "commons-net": "commons-net",
    "commons-cli": "commons-cli", "commons-digester": "commons-digester", "commons-validator": "commons-validator",
    "commons-": "org.apache.commons",
    "mysql-connector-java": "mysql", "mysql-connector-j": "com.mysql", "postgresql": "org.postgresql",
    "h2": "com.h2database", "ojdbc8": "com.oracle.database.jdbc",
    "jackson-databind": "com.fasterxml.jackson.core", "jackson-core": "com.fasterxml.jackson.core",
    "jackson-annotations": "com.fasterxml.jackson.core", "jackson-dataformat-": "com.fasterxml.jackson.dataformat",
    "jackson-datatype-": "com.fasterxml.jackson.datatype", "jackson-module-": "com.fasterxml.jackson.module",
    "jackson-mapper-asl": "org.codehaus.jackson", "jackson-core-asl": "org.codehaus.jackson",
    "netty-": "io.netty", "netty-all": "io.netty", "guava": "com.google.guava", "gson": "com.google.code.gson",
    "protobuf-java": "com.google.protobuf", "slf4j-": "org.slf4j", "logback-": "ch.qos.logback",
    "hibernate-core": "org.hibernate", "hibernate-validator": "org.hibernate.validator",
    "xstream": "com.thoughtworks.xstream", "snakeyaml": "org.yaml", "httpclient": "org.apache.httpcomponents",
    "httpcore": "org.apache.httpcomponents", "httpmime": "org.apache.httpcomponents",
    "httpcore-nio": "org.apache.httpcomponents", "httpasyncclient": "org.apache.httpcomponents",
    "mybatis": "org.mybatis", "mybatis-spring": "org.mybatis", "jsch": "com.jcraft", "bcprov-": "org.bouncycastle",
    "bcpkix-": "org.bouncycastle", "quartz": "org.quartz-scheduler", "freemarker": "org.freemarker",
    "velocity": "org.apache.velocity", "velocity-engine-core": "org.apache.velocity", "poi": "org.apache.poi",
    "poi-": "org.apache.poi", "xercesImpl": "xerces", "dom4j": "org.dom4j", "jetty-": "org.eclipse.jetty",
    "undertow-": "io.undertow", "kafka-clients": "org.apache.kafka", "zookeeper": "org.apache.zookeeper",
    "groovy": "org.codehaus.groovy", "groovy-": "org.codehaus.groovy", "ognl": "ognl", "xalan": "xalan",
    "hutool-": "cn.hutool", "jjwt": "io.jsonwebtoken", "jjwt-": "io.jsonwebtoken", "activemq-": "org.apache.activemq",
    "elasticsearch": "org.elasticsearch", "c3p0": "com.mchange", "jython": "org.python", "bsh": "org.beanshell",
    "xmlbeans": "org.apache.xmlbeans", "axis": "org.apache.axis", "cxf-": "org.apache.cxf",
    "jersey-": "org.glassfish.jersey.core", "thymeleaf": "org.thymeleaf", "thymeleaf-": "org.thymeleaf",
    "mongo-java-driver": "org.mongodb", "mongodb-driver": "org.mongodb", "mongodb-driver-": "org.mongodb",
    "bson": "org.mongodb", "lightcouch": "org.lightcouch", "fluent-hc": "org.apache.httpcomponents",
    "httpclient-": "org.apache.httpcomponents", "jcl-over-slf4j": "org.slf4j", "jul-to-slf4j": "org.slf4j",
    "log4j-over-slf4j": "org.slf4j",
}
_PREFIXES = sorted((k for k in GROUPS if k.endswith("-")), key=len, reverse=True)


def group_of(artifact: str) -> str:
    if artifact in GROUPS:
        return GROUPS[artifact]
    for prefix in _PREFIXES:
        if artifact.startswith(prefix):
            return GROUPS[prefix]
    return ""


def split_file_name(base: str) -> tuple[str, str]:
    """'log4j-1.2-api-2.17.1.jar' -> ('log4j-1.2-api', '2.17.1'): the last dash-part starting with a digit."""
    stem = base.rsplit(".", 1)[0]
    parts = stem.split("-")
    for i in range(len(parts) - 1, 0, -1):
        if parts[i][:1].isdigit():
            return "-".join(parts[:i]), "-".join(parts[i:])
    return stem, ""


def parse_properties(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#!":
            continue
        m = re.match(r"([^=:\s]+)\s*[=:]\s*(.*)", line)
        if m:
            out[m.group(1)] = m.group(2).strip()
    return out


def parse_manifest(text: str) -> dict[str, str]:
    """The main section of a MANIFEST.MF; continuation lines start with one space."""
    fields: dict[str, str] = {}
    key = None
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break
            continue
        if line.startswith(" ") and key:
            fields[key] += line[1:]
            continue
        name, sep, value = line.partition(":")
        if sep:
            key = name.strip()
            fields[key] = value.strip()
    return fields


def _central_directory_size(data: bytes) -> int | None:
    """From the end-of-central-directory record, before zipfile builds an object per entry."""
    tail = data[-(65535 + 22):]
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or at + 22 > len(tail):
        return None
    return struct.unpack_from("<I", tail, at + 12)[0]


class _Walk:
    def __init__(self, outer: str):
        self.outer = outer
        self.records: list[dict] = []
        self.inflated = 0
        self.opened = 0

    def warn(self, message: str) -> None:
        self.records.append(warning(self.outer, message))


def _read_small(z: zipfile.ZipFile, info: zipfile.ZipInfo, walk: _Walk, where: str) -> str | None:
    if info.file_size > MAX_METADATA:
        walk.warn(f"{where}!/{info.filename}: {info.file_size} bytes, larger than {MAX_METADATA}; ignored")
        return None
    try:
        with z.open(info) as fh:
            return fh.read(MAX_METADATA + 1).decode("utf-8", "replace")
    except READ_ERRORS as exc:
        walk.warn(f"{where}!/{info.filename}: unreadable ({plain(exc)})")
        return None


def identify(z: zipfile.ZipFile, infos: list[zipfile.ZipInfo], path: str, walk: _Walk) -> list[dict]:
    base = path.rsplit("/", 1)[-1]
    file_artifact, file_version = split_file_name(base)
    poms = []
    manifest: dict[str, str] = {}
    for info in infos:
        name = info.filename
        if name.startswith("META-INF/maven/") and name.endswith("/pom.properties"):
            text = _read_small(z, info, walk, path)
            if text is None:
                continue
            props = parse_properties(text)
            group, artifact, version = props.get("groupId", ""), props.get("artifactId", ""), props.get("version", "")
            if not (group and artifact and version):
                parts = name.split("/")  # META-INF/maven/<group>/<artifact>/pom.properties
                group = group or (parts[2] if len(parts) == 5 else "")
                artifact = artifact or (parts[3] if len(parts) == 5 else "")
            if group and artifact and version:
                poms.append((group, artifact, version))
        elif name.upper() == "META-INF/MANIFEST.MF":
            text = _read_small(z, info, walk, path)
            if text is not None:
                manifest = parse_manifest(text)
    licenses = [manifest["Bundle-License"]] if manifest.get("Bundle-License") else []
    out = []
    own = [p for p in poms if p[1] == file_artifact] or (poms if len(poms) == 1 else [])
    for group, artifact, version in poms:
        if (group, artifact, version) in own:
            out.append(package("maven", f"{group}:{artifact}", version, path, licenses=licenses,
                               metadata={"source": "pom.properties"}))
        else:  # another project's classes bundled (shaded) into this archive; the manifest is not theirs
            out.append(package("maven", f"{group}:{artifact}", version, path,
                               metadata={"source": "pom.properties", "shaded_in": base}))
    if not own:
        ident = from_manifest(manifest, file_artifact, file_version)
        if ident:
            group, artifact, version, source = ident
            out.append(package("maven", f"{group}:{artifact}", version, path, licenses=licenses,
                               metadata={"source": source}))
    # libraries whose classes are here without their metadata (shaded, relocated): _classprints.py
    known = {r["name"].split(":", 1)[-1] for r in out}
    out += [package("maven", name, version, path, metadata=meta)
            for name, version, meta in classprints.fingerprint(z, infos, known)]
    return out


def from_manifest(manifest: dict[str, str], file_artifact: str, file_version: str):
    """(group, artifact, version, source) from MANIFEST.MF and the file name, or None."""
    symbolic = manifest.get("Bundle-SymbolicName", "").split(";")[0].strip()
    title = manifest.get("Implementation-Title") or manifest.get("Specification-Title") or ""
    version = (manifest.get("Implementation-Version") or manifest.get("Bundle-Version")
               or manifest.get("Specification-Version") or "")
    source = "MANIFEST.MF" if version else "file name"
    version = version or file_version
    artifact = file_artifact if file_version else ""
    if not artifact:
        if title and re.fullmatch(r"[\w.\-]+", title):
            artifact = title
        elif symbolic:
            artifact = symbolic.rsplit(".", 1)[-1]
        else:
            artifact = file_artifact
    if not (artifact and version):
        return None
    group = group_of(artifact) or manifest.get("Implementation-Vendor-Id", "")
    if not group and symbolic and "." in symbolic:
        # 'org.apache.foo.bar' for artifact 'foo-bar' -> 'org.apache.foo'
        head, _, last = symbolic.rpartition(".")
        group = head if last.lower() in artifact.lower().replace("-", ".").split(".") else symbolic
    return group or artifact, artifact, version, source


def identify_archive(data, path: str, walk: _Walk) -> None:
    """The packages of one jar/war/ear (its own pom.properties and manifest; nested archives are the
    resolver's). `data`: its bytes, or a seekable file (a large jar stays in its spool)."""
    if isinstance(data, (bytes, bytearray)):
        tail, source = bytes(data[-(65535 + 22):]), io.BytesIO(data)
    else:
        size = data.seek(0, io.SEEK_END)
        data.seek(max(0, size - (65535 + 22)))
        tail, source = data.read(), data
        data.seek(0)
    cds = _central_directory_size(tail)
    if cds is not None and cds > MAX_CENTRAL_DIRECTORY:
        walk.warn(f"{path}: central directory of {cds} bytes, too many entries; not opened")
        return
    try:
        z = zipfile.ZipFile(source)
        infos = z.infolist()
    except READ_ERRORS as exc:
        walk.warn(f"{path}: not a readable zip archive ({plain(exc)})")
        return
    with z:
        try:
            for record in identify(z, infos, path, walk):
                if path != walk.outer:
                    record["file"] = walk.outer  # the image file whose visibility decides
                walk.records.append(record)
        except READ_ERRORS as exc:
            walk.warn(f"{path}: unreadable metadata ({plain(exc)})")


def _is_java(name: str) -> bool:
    return name.lower().endswith(SUFFIXES)


@register
class JavaArchives(MemberConsumer, Analyzer):
    name = "java-archive"
    version = 5  # 5: spring-core and struts2 fingerprints, open version ranges, cpio and rpm members
    risk = "software"
    consumes = ("owned_files",)
    produces = ("packages",)

    def __init__(self, policy=None):
        super().__init__(policy)
        try:
            self.limits = ArchiveLimits.from_policy(self.policy)
        except ValueError as exc:
            raise ScanError(str(exc)) from None
        self.member_limits = self.limits
        self.member_sniff = False  # only members named like archives are looked into: jars are

    def fingerprint(self):
        return hashlib.sha256(json.dumps(self.limits.key()).encode()).hexdigest()[:16]

    def required(self, path, info):
        return path.lower().endswith(ARCHIVE_SUFFIXES)

    def analyze(self, file):
        return analyze_alone(self, file)

    def analyze_outer(self, file):
        if not _is_java(file.path):
            return []
        walk = _Walk(file.path)
        # a large file stays in its spool: zipfile seeks in it
        source = file.open() if file.spooled else file.data
        try:
            identify_archive(source, file.path, walk)
        finally:
            if file.spooled:
                source.close()
        return walk.records

    def analyze_member(self, member: Member) -> list[dict]:
        # jars nested in jars, wars and ears, and in tars, zips and compressed files of any depth
        if not _is_java(member.name):
            return []
        data = member.read()
        if data is None:
            return []
        walk = _Walk(member.path.split("!/", 1)[0])
        identify_archive(data, member.path, walk)
        return walk.records

    def archive_warnings(self, outer, warnings):
        return [warning(outer, w) for w in warnings]

    def collect(self, ctx, layers):
        return collect_packages(ctx, layers, self.name)
