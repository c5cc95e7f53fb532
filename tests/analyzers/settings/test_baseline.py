import pytest
from imagebuilder import ImageBuilder
from settings_fixtures import build_env, results, verdict

from stowaway.analyzers.settings.model import catalog
from stowaway.ingest.report import build


@pytest.mark.parametrize("check_id,key,bad,good", [
    ("baseline.sysctl-aslr", "kernel.randomize_va_space", "0", "2"),
    ("baseline.sysctl-ip-forward", "net.ipv4.ip_forward", "1", "0"),
    ("baseline.sysctl-suid-dumpable", "fs.suid_dumpable", "2", "0"),
    ("baseline.sysctl-syncookies", "net.ipv4.tcp_syncookies", "0", "1"),
    ("baseline.sysctl-send-redirects", "net.ipv4.conf.all.send_redirects", "1", "0"),
    ("baseline.sysctl-accept-redirects", "net.ipv4.conf.all.accept_redirects", "1", "0"),
    ("baseline.sysctl-source-route", "net.ipv4.conf.all.accept_source_route", "1", "0"),
])
def test_sysctl_items(check_id, key, bad, good):
    assert verdict(build_env({"/etc/sysctl.conf": f"{key} = {bad}\n"}), check_id) == "fail"
    assert verdict(build_env({"/etc/sysctl.d/99-hardening.conf": f"{key}={good}\n"}), check_id) == "pass"
    # a kernel parameter the image does not set is the host's business
    assert verdict(build_env({"/etc/sysctl.conf": "# all defaults\n"}), check_id) == "not_applicable"


def test_sysctl_order_etc_sysctl_conf_last_and_slash_keys():
    env = build_env({"/usr/lib/sysctl.d/50-default.conf": "kernel.randomize_va_space = 2\n",
                     "/etc/sysctl.d/10-x.conf": "kernel/randomize_va_space = 1\n",
                     "/etc/sysctl.conf": "kernel.randomize_va_space = 0\n"})
    f = results(env, "baseline.sysctl-aslr")[0]
    assert f.status == "fail" and f.path == "/etc/sysctl.conf"
    env = build_env({"/usr/lib/sysctl.d/50-default.conf": "kernel.randomize_va_space = 0\n",
                     "/etc/sysctl.d/90-x.conf": "kernel/randomize_va_space = 2\n"})
    assert verdict(env, "baseline.sysctl-aslr") == "pass"


def test_shell_timeout():
    assert verdict(build_env({"/etc/profile": "export PATH\n"}), "baseline.shell-timeout") == "fail"
    assert verdict(build_env({"/etc/profile.d/tmout.sh": "readonly TMOUT=900\nexport TMOUT\n"}), "baseline.shell-timeout") == "pass"
    assert verdict(build_env({"/etc/bash.bashrc": "TMOUT=3600\n"}), "baseline.shell-timeout") == "fail"


def test_root_gid_legacy_entries_and_duplicates():
    passwd = "root:x:0:0:root:/root:/bin/bash\na:x:1000:1000::/h:/bin/sh\n"
    assert verdict(build_env({"/etc/passwd": passwd}), "baseline.root-gid") == "pass"
    assert verdict(build_env({"/etc/passwd": "root:x:0:10:root:/root:/bin/bash\n"}), "baseline.root-gid") == "fail"
    assert verdict(build_env({"/etc/passwd": passwd}), "baseline.legacy-plus-entries") == "pass"
    assert verdict(build_env({"/etc/passwd": passwd + "+::::::\n"}), "baseline.legacy-plus-entries") == "fail"
    assert verdict(build_env({"/etc/passwd": passwd}), "baseline.duplicate-names") == "pass"
    dup = passwd + "b:x:1000:1000::/h:/bin/sh\na:x:1001:1001::/h:/bin/sh\n"
    f = results(build_env({"/etc/passwd": dup}), "baseline.duplicate-names")[0]
    assert f.status == "fail" and "UID 1000 of b" in f.detail["evidence"] and "user name a repeats" in f.detail["evidence"]


def test_cron_modes():
    from imagebuilder import Dir, File

    assert verdict(build_env({"/etc/crontab": File("x", mode=0o644)}), "baseline.crontab-mode") == "fail"
    assert verdict(build_env({"/etc/crontab": File("x", mode=0o600)}), "baseline.crontab-mode") == "pass"
    assert verdict(build_env({"/etc/cron.d": Dir(0o755)}), "baseline.cron-d-mode") == "fail"
    assert verdict(build_env({"/etc/cron.d": Dir(0o700)}), "baseline.cron-d-mode") == "pass"
    assert verdict(build_env({"/etc/hostname": "x"}), "baseline.crontab-mode") == "not_applicable"


def test_su_restricted_to_wheel():
    commented = "auth       sufficient pam_rootok.so\n# auth       required   pam_wheel.so use_uid\n"
    f = results(build_env({"/etc/pam.d/su": commented}), "baseline.su-restricted")[0]
    assert f.status == "fail" and f.path == "/etc/pam.d/su"
    active = "auth       sufficient pam_rootok.so\nauth       required   pam_wheel.so use_uid\n"
    f = results(build_env({"/etc/pam.d/su": active}, "centos", "7"), "baseline.su-restricted")[0]
    assert f.status == "pass" and f.detail["line"] == 2
    assert verdict(build_env({"/etc/hostname": "x"}), "baseline.su-restricted") == "not_applicable"


def test_benchmark_follows_the_os_baseline():
    for family, version, name in [("centos", "7", "CIS CentOS Linux 7"), ("openeuler", "22.03-LTS", "EulerOS 2.0"),
                                  ("ubuntu", "22.04", "CIS Ubuntu Linux 16.04"), ("debian", "12", "CIS Debian Linux 10")]:
        env = build_env({"/etc/passwd": "root:x:0:0::/root:/bin/sh\n"}, family, version)
        assert results(env, "baseline.root-gid")[0].detail["benchmark"].startswith(name)


def test_os_items_are_not_applicable_without_an_os_baseline(scan, tmp_path):
    img = ImageBuilder(user="app", healthcheck={"Test": ["CMD", "true"]})
    img.layer({"etc/os-release": "ID=alpine\nVERSION_ID=3.19.1\n", "etc/passwd": "root:x:0:0:root:/root:/bin/ash\n",
               "etc/profile": "umask 022\n"})
    img.write_oci_layout(tmp_path / "oci", ref="alp:1")
    database, outcomes = scan(f"oci:{tmp_path / 'oci'}", analyzer_names=["os-release", "settings-files"])
    assert outcomes[0].status == "done", outcomes[0].error
    rows = {u["check_id"]: u for u in build(database, "alp:1")["unsafe_settings"]}
    os_scoped = [c.id for c in catalog().values() if c.scope == "os"]
    assert os_scoped and all(rows[c]["result"] == "not_applicable" for c in os_scoped)
    assert "alpine" in rows["baseline.root-gid"]["evidence"]
    assert rows["container.umask"]["result"] == "fail" and rows["container.umask"]["path"] == "/etc/profile"
    assert rows["container.non-root-user"]["result"] == "pass"
    # every check of the catalog except the weak-password ones (another analyzer) gave a result
    assert set(rows) == set(catalog()) - {"weak_password.account", "baseline.empty-passwords"}
