"""Shaded Java libraries found by their classes (analyzers/inventory/_classprints.py): log4j-core relocated
into an application jar without Maven metadata, its version from the JNDI features of its classes (each
Log4Shell release's), jackson-databind, fastjson and commons-collections; the real log4j-core jar of
Debian's liblog4j2-java relocated; and CVE-2021-44228 found in a relocated copy in a scanned image.
spring-core and struts2-core by the classes each release line added (Debian's real spring-core 4.3.30
jar relocated), and versions the classes leave open reported as ranges, "possibly affected"."""
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
    ("2.17.1", ">=2.17.1", "medium"),
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
    meta = maven({"opt/b.jar": app_jar(fixed)})[("commons-collections:commons-collections", ">=3.2.2")]
    assert meta["version_exact"] is False and meta["version_note"] == "\u2265 3.2.2, exact version unknown"


def test_shiro_default_key_and_commons_collections4():
    old = {"s/org/apache/shiro/mgt/AbstractRememberMeManager.class": cls("kPH+bIxk5D2deZiIxcaaaA==", "getCipherKey"),
           "org/apache/commons/collections4/functors/InvokerTransformer.class": cls("java/io/Serializable")}
    got = maven({"opt/app.jar": app_jar(old)})
    assert got[("org.apache.shiro:shiro-core", "1.2.4")]["relocated_to"] == "s"
    assert ("org.apache.commons:commons-collections4", "4.0") in got
    new = {"org/apache/shiro/mgt/AbstractRememberMeManager.class": cls("generateNewKey", "getCipherKey"),
           "org/apache/commons/collections4/functors/InvokerTransformer.class": cls("transform")}
    got = maven({"opt/app.jar": app_jar(new)})
    # a later shiro: its classes pin no version, so it is the open range, not left out
    assert got[("org.apache.shiro:shiro-core", ">=1.2.5")]["version_exact"] is False
    assert ("org.apache.commons:commons-collections4", ">=4.1") in got


@pytest.mark.skipif(not REAL_JAR.exists(), reason="Debian's liblog4j2-java is not installed")
def test_the_real_log4j_core_jar_relocated_and_stripped():
    with zipfile.ZipFile(REAL_JAR) as z:
        classes = {SHADE + n: z.read(n) for n in z.namelist() if n.startswith(L) and n.endswith(".class")}
    assert len(classes) > 500
    got = maven({"opt/app/app.jar": app_jar(classes)})
    assert got[("org.apache.logging.log4j:log4j-core", ">=2.17.1")]["version_range"].startswith(">=2.17.1")
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
        (">=2.17.1", "/opt/patched/app.jar", "class-fingerprint", "medium")}


SPRING_REAL = pathlib.Path("/usr/share/maven-repo/org/springframework/spring-core/4.3.30.RELEASE/"
                           "spring-core-4.3.30.RELEASE.jar")
SPRING = ["org/springframework/core/SpringVersion.class",
          "org/springframework/core/convert/ConversionService.class",  # 3.0
          "org/springframework/core/env/Environment.class",  # 3.1
          "org/springframework/core/ResolvableType.class",  # 4.0
          "org/springframework/core/annotation/AliasFor.class",  # 4.2
          "org/springframework/core/io/ProtocolResolver.class",  # 4.3
          "org/springframework/lang/Nullable.class",  # 5.0
          "org/springframework/core/log/LogFormatUtils.class",  # 5.1
          "org/springframework/core/annotation/MergedAnnotations.class",  # 5.2
          "org/springframework/core/metrics/ApplicationStartup.class",  # 5.3
          "org/springframework/aot/hint/RuntimeHints.class",  # 6.0
          "org/springframework/core/task/VirtualThreadTaskExecutor.class"]  # 6.1


@pytest.mark.parametrize("upto, version", [
    (1, ">=1.1.0, <3.0.0"), (3, ">=3.1.0, <4.0.0"), (6, ">=4.3.0, <5.0.0"), (10, ">=5.3.0, <6.0.0"),
    (12, ">=6.1.0"),
])
def test_relocated_spring_core_by_the_classes_each_release_added(upto, version):
    got = maven({"opt/app.jar": app_jar({"x/" + c: cls(c) for c in SPRING[:upto]})})
    meta = got[("org.springframework:spring-core", version)]
    assert meta["detected_by"] == "class-fingerprint" and meta["relocated_to"] == "x"
    assert meta["version_exact"] is False and meta["confidence"] == "medium"


def test_spring_modules_beside_a_fingerprinted_spring_core_share_its_range():
    """Spring4Shell (CVE-2022-22965) is filed on spring-beans and spring-webmvc: their classes beside a
    relocated spring-core are reported at its range (Spring's modules are released together), low confidence."""
    classes = {"x/" + c: cls(c) for c in SPRING[:10]}
    classes["x/org/springframework/beans/BeanWrapperImpl.class"] = cls("BeanWrapperImpl")
    classes["x/org/springframework/web/servlet/DispatcherServlet.class"] = cls("DispatcherServlet")
    got = maven({"opt/app.jar": app_jar(classes)})
    for module in ("org.springframework:spring-beans", "org.springframework:spring-webmvc"):
        meta = got[(module, ">=5.3.0, <6.0.0")]
        assert meta["confidence"] == "low" and meta["version_from"] == "org.springframework:spring-core"
    assert not any(n == "org.springframework:spring-webflux" for n, _ in got)
    # without a spring-core to date them, lone module classes are not guessed at
    del classes["x/org/springframework/core/SpringVersion.class"]
    assert not any(n.startswith("org.springframework") for n, _ in maven({"opt/app.jar": app_jar(classes)}))


STRUTS = {  # which of these each struts2-core release line ships (from the apache/struts release tags)
    "2.0": ["dispatcher/FilterDispatcher"],
    "2.3": ["dispatcher/FilterDispatcher", "dispatcher/ng/filter/StrutsPrepareAndExecuteFilter"],
    "2.5": ["dispatcher/filter/StrutsPrepareAndExecuteFilter", "X"],
    "6.3": ["dispatcher/filter/StrutsPrepareAndExecuteFilter", "interceptor/csp/CspInterceptor", "X"],
    "6.4": ["dispatcher/filter/StrutsPrepareAndExecuteFilter", "interceptor/csp/CspInterceptor",
            "interceptor/ActionFileUploadInterceptor", "X"],
    "6.7": ["dispatcher/filter/StrutsPrepareAndExecuteFilter", "interceptor/csp/CspInterceptor",
            "interceptor/ActionFileUploadInterceptor", "ActionSupport", "X"],
    "7.0": ["dispatcher/filter/StrutsPrepareAndExecuteFilter", "interceptor/csp/CspInterceptor",
            "interceptor/ActionFileUploadInterceptor", "ActionSupport"],
}


def struts_classes(line: str, prefix: str = "") -> dict:
    names = ["org/apache/struts2/StrutsConstants"] + [
        "com/opensymphony/xwork2/ActionSupport" if n == "X" else "org/apache/struts2/" + n for n in STRUTS[line]]
    return {f"{prefix}{n}.class": cls(n) for n in names}


@pytest.mark.parametrize("line, version", [
    ("2.0", ">=2.0.0, <2.1.3"), ("2.3", ">=2.1.3, <2.5"), ("2.5", ">=2.5, <6.0.0"), ("6.3", ">=6.0.0, <6.4.0"),
    ("6.4", ">=6.4.0, <6.7.0"), ("6.7", ">=6.7.0, <7.0.0"), ("7.0", ">=7.0.0"),
])
def test_struts2_core_by_its_classes(line, version):
    got = maven({"opt/app.jar": app_jar(struts_classes(line, "lib/"))})
    assert got[("org.apache.struts:struts2-core", version)]["relocated_to"] == "lib"


@pytest.mark.skipif(not SPRING_REAL.exists(), reason="Debian's libspring-core-java is not installed")
def test_the_real_spring_core_jar_relocated():
    with zipfile.ZipFile(SPRING_REAL) as z:
        classes = {"com/acme/shaded/" + n: z.read(n) for n in z.namelist() if n.endswith(".class")}
    assert len(classes) > 500
    got = maven({"opt/app/app.jar": app_jar(classes)})
    # 4.3.30: ProtocolResolver (4.3) is there, Nullable (5.0) is not
    assert got[("org.springframework:spring-core", ">=4.3.0, <5.0.0")]["relocated_to"] == "com/acme/shaded"


def test_a_version_range_is_reported_as_possibly_affected(scan, tmp_path, monkeypatch):
    monkeypatch.setenv("STOWAWAY_CACHE_DIR", str(tmp_path / "cache"))
    shiro = {"s/org/apache/shiro/mgt/AbstractRememberMeManager.class": cls("generateNewKey")}
    img = ImageBuilder().layer({"opt/app/app.jar": app_jar({**shiro, **struts_classes("2.5")})})
    img.write_oci_layout(tmp_path / "oci", ref="t:1")

    def advisory(rid, cve, name, events):
        return {"id": rid, "aliases": [cve], "modified": "2024-01-01T00:00:00Z", "published": "2020-01-01T00:00:00Z",
                "summary": rid, "affected": [{"package": {"ecosystem": "Maven", "name": name},
                                              "ranges": [{"type": "ECOSYSTEM", "events": events}]}]}
    database, _ = scan(f"oci:{tmp_path / 'oci'}")
    import_records(database, [
        advisory("GHSA-shiro-1", "CVE-2016-4437", "org.apache.shiro:shiro-core", [{"introduced": "0"}, {"fixed": "1.2.5"}]),
        advisory("GHSA-shiro-2", "CVE-2019-12422", "org.apache.shiro:shiro-core", [{"introduced": "0"}, {"fixed": "1.4.2"}]),
        advisory("GHSA-s2-045", "CVE-2017-5638", "org.apache.struts:struts2-core",
                 [{"introduced": "2.3.5"}, {"fixed": "2.3.32"}, {"introduced": "2.5"}, {"fixed": "2.5.10.1"}]),
        advisory("GHSA-s2-001", "CVE-2007-4556", "org.apache.struts:struts2-core",
                 [{"introduced": "2.0.0"}, {"fixed": "2.0.9"}]),
    ])
    # a feed update re-evaluates the stored inventory (rematch) with the same conservative rule
    from stowaway.analyzers.vulnerabilities.rematch import rematch

    rematch(database)
    rep = report_of(database, "t:1")
    assert {(v["id"], v["possibly_affected"]) for v in rep["vulnerabilities"]} == {
        ("CVE-2019-12422", True), ("CVE-2017-5638", True)}
    database, out = scan(f"oci:{tmp_path / 'oci'}")
    assert [o.status for o in out] == ["done"]
    rep = report_of(database, "t:1")
    vulns = {v["id"]: v for v in rep["vulnerabilities"]}
    assert set(vulns) == {"CVE-2019-12422", "CVE-2017-5638"}, vulns  # fixed below the range: not reported
    for v in vulns.values():
        assert v["possibly_affected"] is True and v["confidence"] == "low"
        assert "known only as a range" in v["reason"] and "(possibly affected)" in v["title"]
    assert vulns["CVE-2019-12422"]["package"]["version"] == ">=1.2.5"
    assert vulns["CVE-2019-12422"]["fixed_version"] == "1.4.2"
    soft = {s["name"]: s for s in rep["software"] if s["detected_by"] == "class-fingerprint"}
    assert soft["org.apache.shiro:shiro-core"]["version_exact"] is False
    assert soft["org.apache.shiro:shiro-core"]["version_note"] == "\u2265 1.2.5, exact version unknown"
    assert soft["org.apache.shiro:shiro-core"]["purl"] == "pkg:maven/org.apache.shiro/shiro-core"
    assert soft["org.apache.struts:struts2-core"]["version"] == ">=2.5, <6.0.0"
    assert not [w for w in rep["scan"]["warnings"] if "not a valid" in w]
