"""Shaded Java libraries found by their classes (analyzers/inventory/_classprints.py): log4j-core relocated
into an application jar without Maven metadata, its version from the JNDI features of its classes (each
Log4Shell release's), jackson-databind, fastjson and commons-collections; the real log4j-core jar of
Debian's liblog4j2-java relocated; and CVE-2021-44228 found in a relocated copy in a scanned image."""
import pathlib
import zipfile

import pytest
from app_harness import inspect, zip_bytes
from conftest import report_of
from imagebuilder import ImageBuilder

from stowaway.analyzers.vulnerabilities.importer import import_records

L = "org/apache/logging/log4j/core/"
SHADE = "com/acme/shaded/"
REAL_JAR = pathlib.Path("/usr/share/java/log4j-core-2.19.0.jar")


def cls(*strings: str) -> bytes:
    """A class file's magic and constant pool UTF8 entries: where javac puts string literals and names."""
    return b"\xca\xfe\xba\xbe\x00\x00\x00\x34" + b"".join(b"\x01" + len(s).to_bytes(2, "big") + s.encode()
                                                          for s in strings)


def log4j_classes(era: str, prefix: str = SHADE) -> dict:
    files = {prefix + L + "LoggerContext.class": cls("org/apache/logging/log4j/core/LoggerContext")}
    lookup = ["JndiLookup", "Error looking up JNDI resource [{}]."]
    manager = ["JndiManager"]
    jdbc = ["DataSourceConnectionSource", "No JNDI name provided."]
    if era in ("2.15", "2.16", "2.17.0", "2.17.1"):
        manager += ["allowedJndiProtocols", "Invalid JNDI URI - {}"]
    if era in ("2.16", "2.17.0", "2.17.1"):
        manager += ["log4j2.enableJndi"]
    if era in ("2.17.0", "2.17.1"):
        lookup += ["JNDI must be enabled by setting log4j2.enableJndiLookup=true"]
    if era == "2.17.1":
        jdbc += ["JNDI must be enabled by setting log4j2.enableJndiJdbc=true"]
    if era != "beta8":
        files[prefix + L + "lookup/JndiLookup.class"] = cls(*lookup)
    if era not in ("beta8", "2.0"):
        files[prefix + L + "net/JndiManager.class"] = cls(*manager)
    files[prefix + L + "appender/db/jdbc/DataSourceConnectionSource.class"] = cls(*jdbc)
    return files


def app_jar(classes: dict) -> bytes:
    return zip_bytes({"META-INF/MANIFEST.MF": "Manifest-Version: 1.0\r\nMain-Class: com.acme.App\r\n\r\n",
                      "META-INF/maven/com.acme/app/pom.properties": "groupId=com.acme\nartifactId=app\nversion=1.0\n",
                      "com/acme/App.class": cls("com/acme/App"), **classes})


def maven(layer: dict) -> dict:
    return {(p.name, p.version): p.metadata for p in inspect([layer], names=("java-archive",)).packages}


@pytest.mark.parametrize("era, version, confidence", [
    ("beta8", "2.0-beta8", "low"), ("2.0", "2.0.2", "medium"), ("2.14", "2.14.1", "medium"),
    ("2.15", "2.15.0", "high"), ("2.16", "2.16.0", "high"), ("2.17.0", "2.17.0", "high"),
    ("2.17.1", "2.17.1", "medium"),
])
def test_relocated_log4j_versions_from_its_jndi_classes(era, version, confidence):
    got = maven({"opt/app/app.jar": app_jar(log4j_classes(era))})
    meta = got[("org.apache.logging.log4j:log4j-core", version)]
    assert meta["detected_by"] == "class-fingerprint" and meta["confidence"] == confidence
    assert meta["relocated_to"] == "com/acme/shaded"
    assert ("com.acme:app", "1.0") in got


def test_two_copies_and_a_copy_with_its_own_metadata():
    classes = {**log4j_classes("2.14", "a/shaded/"), **log4j_classes("2.16", "b/shaded/")}
    got = maven({"opt/app/app.jar": app_jar(classes)})
    assert {(v, m["relocated_to"]) for (n, v), m in got.items() if n.endswith("log4j-core")} == {
        ("2.14.1", "a/shaded"), ("2.16.0", "b/shaded")}
    # the real log4j-core jar names itself in pom.properties: no second, fingerprinted entry
    own = zip_bytes({"META-INF/maven/org.apache.logging.log4j/log4j-core/pom.properties":
                     "groupId=org.apache.logging.log4j\nartifactId=log4j-core\nversion=2.14.1\n",
                     **log4j_classes("2.14", "")})
    got = maven({"opt/lib/log4j-core-2.14.1.jar": own})
    assert list(got) == [("org.apache.logging.log4j:log4j-core", "2.14.1")]
    assert got[("org.apache.logging.log4j:log4j-core", "2.14.1")]["source"] == "pom.properties"


def test_jackson_fastjson_and_commons_collections():
    classes = {
        "x/y/com/fasterxml/jackson/databind/ObjectMapper.class": cls("ObjectMapper"),
        "x/y/com/fasterxml/jackson/databind/cfg/PackageVersion.class": cls("2.9.10.8", "com.fasterxml.jackson.core",
                                                                          "jackson-databind"),
        "com/alibaba/fastjson/JSON.class": cls("VERSION", "1.2.47", "parseObject"),
        "org/apache/commons/collections/functors/InvokerTransformer.class": cls("InvokerTransformer", "transform"),
    }
    got = maven({"opt/app/app.jar": app_jar(classes)})
    assert got[("com.fasterxml.jackson.core:jackson-databind", "2.9.10.8")]["relocated_to"] == "x/y"
    assert got[("com.alibaba:fastjson", "1.2.47")]["confidence"] == "high"
    assert got[("commons-collections:commons-collections", "3.2.1")]["version_range"] == "<=3.2.1"
    fixed = {"org/apache/commons/collections/functors/InvokerTransformer.class":
             cls("org.apache.commons.collections.enableUnsafeSerialization")}
    assert ("commons-collections:commons-collections", "3.2.2") in maven({"opt/b.jar": app_jar(fixed)})


def test_shiro_default_key_and_commons_collections4():
    old = {"s/org/apache/shiro/mgt/AbstractRememberMeManager.class": cls("kPH+bIxk5D2deZiIxcaaaA==", "getCipherKey"),
           "org/apache/commons/collections4/functors/InvokerTransformer.class": cls("java/io/Serializable")}
    got = maven({"opt/app.jar": app_jar(old)})
    assert got[("org.apache.shiro:shiro-core", "1.2.4")]["relocated_to"] == "s"
    assert ("org.apache.commons:commons-collections4", "4.0") in got
    new = {"org/apache/shiro/mgt/AbstractRememberMeManager.class": cls("generateNewKey", "getCipherKey"),
           "org/apache/commons/collections4/functors/InvokerTransformer.class": cls("transform")}
    got = maven({"opt/app.jar": app_jar(new)})
    assert not any(n.startswith("org.apache.shiro") for n, _ in got)  # a later shiro: its classes pin no version
    assert ("org.apache.commons:commons-collections4", "4.1") in got


@pytest.mark.skipif(not REAL_JAR.exists(), reason="Debian's liblog4j2-java is not installed")
def test_the_real_log4j_core_jar_relocated_and_stripped():
    with zipfile.ZipFile(REAL_JAR) as z:
        classes = {SHADE + n: z.read(n) for n in z.namelist() if n.startswith(L) and n.endswith(".class")}
    assert len(classes) > 500
    got = maven({"opt/app/app.jar": app_jar(classes)})
    assert got[("org.apache.logging.log4j:log4j-core", "2.17.1")]["version_range"].startswith(">=2.17.1")
    # the features are ordered as the releases added them: without the JDBC appender's switch, 2.17.0
    del classes[SHADE + L + "appender/db/jdbc/DataSourceConnectionSource.class"]
    assert ("org.apache.logging.log4j:log4j-core", "2.17.0") in maven({"opt/app/app.jar": app_jar(classes)})


def test_log4shell_found_in_a_relocated_copy(scan, tmp_path, monkeypatch):
    monkeypatch.setenv("STOWAWAY_CACHE_DIR", str(tmp_path / "cache"))
    img = ImageBuilder().layer({"opt/app/app.jar": app_jar(log4j_classes("2.14")),
                                "opt/patched/app.jar": app_jar(log4j_classes("2.17.1"))})
    img.write_oci_layout(tmp_path / "oci", ref="t:1")
    database, _ = scan(f"oci:{tmp_path / 'oci'}")
    import_records(database, [{
        "id": "GHSA-jfh8-c2jp-5v3q", "aliases": ["CVE-2021-44228"], "modified": "2024-01-01T00:00:00Z",
        "published": "2021-12-10T00:00:00Z", "summary": "Log4Shell",
        "affected": [{"package": {"ecosystem": "Maven", "name": "org.apache.logging.log4j:log4j-core"},
                      "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "2.0-beta9"}, {"fixed": "2.15.0"}]}]}]}])
    database, out = scan(f"oci:{tmp_path / 'oci'}")
    assert [o.status for o in out] == ["done"]
    rep = report_of(database, "t:1")
    hits = [(v["id"], v.get("path")) for v in rep["vulnerabilities"]]
    assert len(hits) == 1 and hits[0][0] in ("GHSA-jfh8-c2jp-5v3q", "CVE-2021-44228"), rep["vulnerabilities"]
    shaded = [s for s in rep["software"] if s["name"] == "org.apache.logging.log4j:log4j-core"]
    assert {(s["version"], s["path"], s["detected_by"], s["confidence"]) for s in shaded} == {
        ("2.14.1", "/opt/app/app.jar", "class-fingerprint", "medium"),
        ("2.17.1", "/opt/patched/app.jar", "class-fingerprint", "medium")}
