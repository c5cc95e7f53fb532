"""Issue 14: include expansion (sshd Include, PAM @include/include/substack, pwquality.conf.d) is read
with a visited set and a total-file and total-byte budget, with a warning when cut. Files that each
include all the others used to expand to every permutation of them: gigabytes, then MemoryError, or
an exponential hang. Each case runs in a child process with a deadline and a memory cap."""
import pytest
from bounded import run_bounded
from settings_fixtures import build_env, results


def test_sshd_config_d_files_that_each_include_all_of_them_are_read_once():
    got = run_bounded("""
        from settings_fixtures import build_env
        from stowaway.analyzers.settings import ssh
        files = {"/etc/ssh/sshd_config": "Include /etc/ssh/sshd_config.d/*.conf\\nPermitRootLogin yes\\n"}
        for i in range(14):
            files[f"/etc/ssh/sshd_config.d/{i:02}.conf"] = f"Include *.conf\\nInclude /etc/ssh/sshd_config.d/*.conf\\nMaxAuthTries {i + 1}\\n"
        # a relative Include is under /etc/ssh: *.conf there matches nothing; the absolute one matches all 14
        env = build_env(files)
        config = ssh.parse(env)
        done({"directives": len(config.directives), "max": config.effective("maxauthtries")[0],
              "root": config.effective("permitrootlogin")[0], "warnings": env.ctx.warnings})
    """, timeout=60, memory_mb=2048)
    value = got["value"]
    # depth first, as sshd splices: 00 includes 01, which includes 02 ... so 13.conf is read first
    assert value["directives"] == 15 and value["max"] == "14" and value["root"] == "yes"
    assert any("includes itself" in w for w in value["warnings"])
    assert got["peak_mb"] < 300


def test_pam_files_that_include_themselves_many_times_are_read_once():
    got = run_bounded("""
        from settings_fixtures import build_env
        from stowaway.analyzers.settings.password_policy import parse_pam
        from stowaway.analyzers.settings.model import catalog, run_checks
        loop = "".join(["@include common-password\\n", "@include loop-b\\n", "password include loop-b\\n"] * 10)
        env = build_env({
            "/etc/pam.d/common-password": loop + "password requisite pam_pwquality.so minlen=14\\n",
            "/etc/pam.d/loop-b": loop.replace("loop-b", "common-password") + "password substack common-password\\n"
                                 "password required pam_unix.so sha512 remember=5\\n",
        })
        conf = env.read("/etc/pam.d/common-password")
        lines = parse_pam(env, conf, "password")
        found = [f.status for f in run_checks(env, [catalog()["password_policy.complexity-module"]], env.baseline)]
        done({"modules": [l.module for l in lines], "complexity": found, "warnings": env.ctx.warnings})
    """, timeout=60, memory_mb=2048)
    value = got["value"]
    assert sorted(value["modules"]) == ["pam_pwquality.so", "pam_unix.so"]
    assert value["complexity"] == ["pass"]
    assert len([w for w in value["warnings"] if "includes itself" in w]) == 1
    assert got["peak_mb"] < 300


def test_the_include_budget_cuts_with_one_warning_naming_the_policy_keys():
    files = {"/etc/ssh/sshd_config": "Include /etc/ssh/sshd_config.d/*.conf\n"}
    for i in range(6):
        files[f"/etc/ssh/sshd_config.d/{i}.conf"] = f"MaxAuthTries {i + 2}\n"
    env = build_env(files)
    env.ctx.policy = {"settings": {"include_max_files": 3}}
    f = [x for x in results_allowing_warnings(env, "ssh.max-auth-tries")][0]
    assert f.status == "pass" and "0.conf" in f.detail["evidence"]  # the first files are read
    assert env.ctx.warnings == ["sshd_config: include expansion cut at /etc/ssh/sshd_config.d/2.conf: more than 3 files"
                                " or 4194304 bytes ([settings] include_max_files / include_max_bytes); the files past"
                                " the limit were not read"]
    env = build_env({"/etc/security/pwquality.conf": "minlen = 14\n",
                     "/etc/security/pwquality.conf.d/big.conf": "minclass = 4\n" + "# pad\n" * 100})
    env.ctx.policy = {"settings": {"include_max_bytes": 200}}
    from stowaway.analyzers.settings.password_policy import pwquality_settings

    assert set(pwquality_settings(env)) == {"minlen"}
    assert len(env.ctx.warnings) == 1 and "pwquality.conf: include expansion cut at" in env.ctx.warnings[0]


def results_allowing_warnings(env, check_id):
    from stowaway.analyzers.settings.model import catalog, run_checks

    return list(run_checks(env, [catalog()[check_id]], env.baseline))


def test_a_bad_include_limit_fails_the_scan_start():
    from stowaway.analyzers.settings.configs import SettingsFiles
    from stowaway.ingest.model import ScanError
    from stowaway.ingest.policy_schema import validate

    with pytest.raises(ScanError, match="include_max_files"):
        SettingsFiles({"settings": {"include_max_files": 0}})
    assert validate({"settings": {"include_max_bytes": "big"}}) == [
        "error: settings.include_max_bytes: expected an integer, got a string"]


def test_a_normal_include_tree_reads_every_file_without_warning():
    env = build_env({"/etc/ssh/sshd_config": "Include /etc/ssh/sshd_config.d/*.conf\nInclude /etc/ssh/sshd_config.d/*.conf\n",
                     "/etc/ssh/sshd_config.d/a.conf": "Match User bob\nPermitRootLogin yes\n",
                     "/etc/ssh/sshd_config.d/b.conf": "PermitRootLogin no\n"})
    assert [f.status for f in results(env, "ssh.permit-root-login")] == ["fail"]  # the Match override counts
