import pytest
from imagebuilder import Dir, File
from settings_fixtures import build_env, results, verdict

PASSWD = "root:x:0:0:root:/root:/bin/bash\napp:x:1000:1000::/home/app:/bin/sh\n"
GROUP = "root:x:0:\nshadow:x:42:\napp:x:1000:\n"


def image(runtime=None, history=(), files=None):
    base = {"/etc/passwd": PASSWD, "/etc/group": GROUP}
    return build_env(dict(base, **(files or {})), runtime=runtime, history=list(history))


@pytest.mark.parametrize("user,expected", [("", "fail"), ("root", "fail"), ("0:0", "fail"), ("app", "pass"),
                                           ("1000:1000", "pass")])
def test_non_root_user(user, expected):
    f = results(image({"User": user}), "container.non-root-user")[0]
    assert f.status == expected
    if not user:
        assert "root" in f.detail["evidence"] and "USER" in f.detail["evidence"]


def test_healthcheck():
    assert verdict(image({}), "container.healthcheck") == "fail"
    assert verdict(image({"Healthcheck": {"Test": ["NONE"]}}), "container.healthcheck") == "fail"
    assert verdict(image({"Healthcheck": {"Test": ["CMD-SHELL", "curl -f localhost"]}}), "container.healthcheck") == "pass"


def test_secrets_in_env_name_the_variable_never_the_value():
    env = image({"Env": ["PATH=/usr/bin", "DB_PASSWORD=S3cr3tP4ss", "API_TOKEN=tok-123456", "STRIPE_KEY=sk_x",
                         "EMPTY_SECRET=", "PYTHON_GPG_KEY=A035C8C19219BA821ECEA86B64E628F8D684696D",
                         "PASSWORD_FILE=/run/secrets/db"]})
    found = results(env, "container.secrets-in-env")
    assert sorted(f.detail["target"] for f in found) == ["ENV API_TOKEN", "ENV DB_PASSWORD", "ENV STRIPE_KEY"]
    assert all(f.status == "fail" for f in found)
    text = repr([f.detail for f in found])
    assert "S3cr3tP4ss" not in text and "tok-123456" not in text and "sk_x" not in text
    assert verdict(image({"Env": ["PATH=/usr/bin", "HOME=/root"]}), "container.secrets-in-env") == "pass"


def test_add_of_remote_urls_and_lonely_updates():
    env = image(history=["ADD https://example.com/tool.tgz /opt/", "/bin/sh -c apt-get update",
                         "/bin/sh -c apt-get update && apt-get install -y curl"])
    assert [f.detail["evidence"] for f in results(env, "container.add-remote-url")] == [
        "history: ADD https://example.com/tool.tgz"]
    assert [f.detail["evidence"] for f in results(env, "container.update-alone")] == ["history: /bin/sh -c apt-get update"]
    env = image(history=["/bin/sh -c #(nop) ADD file:31cc40da8f in /", "/bin/sh -c apt-get update && apt-get install -y x"])
    assert verdict(env, "container.add-remote-url") == "pass"
    assert verdict(env, "container.update-alone") == "pass"


def test_setuid_files():
    env = image(files={"/usr/bin/passwd": File(b"elf", mode=0o4755), "/usr/local/bin/backup": File(b"elf", mode=0o4755),
                       "/opt/tool": File(b"elf", mode=0o2755), "/usr/bin/ls": File(b"elf", mode=0o755)})
    agg = results(env, "container.setuid-setgid")
    assert len(agg) == 1 and agg[0].status == "fail" and "3 setuid/setgid files" in agg[0].detail["evidence"]
    odd = results(env, "container.setuid-unexpected")
    assert [(f.path, f.status) for f in odd] == [("/opt/tool", "fail"), ("/usr/local/bin/backup", "fail")]
    assert "setuid root" in odd[1].detail["evidence"]
    clean = image(files={"/usr/bin/ls": File(b"elf", mode=0o755)})
    assert verdict(clean, "container.setuid-setgid") == verdict(clean, "container.setuid-unexpected") == "pass"


def test_world_writable_files_and_directories():
    env = image(files={"/etc/shop.conf": File("x", mode=0o666), "/tmp": Dir(0o1777), "/srv/drop": Dir(0o777),
                       "/etc/ok.conf": File("x", mode=0o644)})
    files = results(env, "container.world-writable-files")
    assert [(f.path, f.status) for f in files] == [("/etc/shop.conf", "fail")]
    assert "0666" in files[0].detail["evidence"]
    dirs = results(env, "container.world-writable-dirs")
    assert dirs[0].status == "fail" and "/srv/drop" in dirs[0].detail["evidence"] and "/tmp" not in dirs[0].detail["evidence"]
    clean = image(files={"/tmp": Dir(0o1777)})
    assert verdict(clean, "container.world-writable-files") == verdict(clean, "container.world-writable-dirs") == "pass"


def test_many_world_writable_files_are_summarized():
    env = image(files={f"/data/f{i:03}": File("x", mode=0o666) for i in range(30)})
    found = results(env, "container.world-writable-files")
    assert len(found) == 26 and "5 more world-writable files" in found[-1].detail["evidence"]


def test_counts_stay_exact_past_the_kept_sample():
    from stowaway.analyzers.settings.container import SAMPLE

    n = SAMPLE + 50
    env = image(files={f"/data/f{i:04}": File("x", mode=0o4777, uid=4242) for i in range(n)})
    files = results(env, "container.world-writable-files")
    assert files[-1].detail["evidence"].startswith(f"{n - 25} more world-writable files: /data/f0025")
    assert files[-1].detail["evidence"].endswith(f"and {n - 50} more")
    assert results(env, "container.setuid-setgid")[0].detail["evidence"].startswith(f"{n} setuid/setgid files")
    assert results(env, "container.unowned-files")[0].detail["evidence"].startswith(f"{n} files or directories")
    assert len(results(env, "container.setuid-unexpected")) == 26


def test_unowned_files():
    env = image(files={"/opt/app/x": File("x", uid=501, gid=20)})
    f = results(env, "container.unowned-files")[0]
    assert f.status == "fail" and "/opt/app/x (501:20)" in f.detail["evidence"]
    assert verdict(image(files={"/opt/app/x": File("x", uid=1000, gid=1000)}), "container.unowned-files") == "pass"
    assert verdict(build_env({"/opt/x": "x"}), "container.unowned-files") == "not_applicable"


def test_duplicate_uid0():
    env = image(files={"/etc/passwd": PASSWD + "toor:x:0:0::/root:/bin/sh\n"})
    f = results(env, "container.duplicate-uid0")[0]
    assert f.status == "fail" and "toor has UID 0" in f.detail["evidence"] and f.detail["line"] == 3
    assert verdict(image(), "container.duplicate-uid0") == "pass"


def test_file_modes_and_owners():
    env = image(files={"/etc/shadow": File("root:*:1::::::\n", mode=0o644), "/etc/gshadow": File("x", mode=0o640, gid=42),
                       "/etc/passwd": File(PASSWD, mode=0o666, uid=1000)})
    shadow = results(env, "baseline.shadow-mode")[0]
    assert shadow.status == "fail" and shadow.detail["evidence"] == "/etc/shadow: mode 0644 (want 0640 or stricter)"
    assert verdict(env, "baseline.gshadow-mode") == "pass"  # group shadow is allowed
    passwd = results(env, "baseline.passwd-mode")[0]
    assert passwd.status == "fail" and "owner uid 1000" in passwd.detail["evidence"]
    ok = image(files={"/etc/shadow": File("x", mode=0o640, gid=42)})
    assert verdict(ok, "baseline.shadow-mode") == "pass"
    assert verdict(image(files={"/etc/shadow": File("x", mode=0o640, gid=1000)}), "baseline.shadow-mode") == "fail"
    assert verdict(build_env({"/etc/hostname": "x"}), "baseline.shadow-mode") == "not_applicable"


@pytest.mark.parametrize("check_id,path,bad,good", [
    ("baseline.group-mode", "/etc/group", File(GROUP, mode=0o664), File(GROUP, mode=0o644)),
    ("baseline.shadow-backup-mode", "/etc/shadow-", File("x", mode=0o644, gid=42), File("x", mode=0o640, gid=42)),
    ("baseline.gshadow-mode", "/etc/gshadow", File("x", mode=0o640, gid=1000), File("x", mode=0o600)),
])
def test_more_file_modes(check_id, path, bad, good):
    assert verdict(image(files={path: bad}), check_id) == "fail"
    assert verdict(image(files={path: good}), check_id) == "pass"


@pytest.mark.parametrize("family,version,mode,gid,expected", [
    ("debian", "11", 0o640, 42, "pass"), ("ubuntu", "22.04", 0o640, 42, "pass"),
    ("centos", "7", 0o640, 42, "fail"), ("centos", "7", 0o000, 0, "pass"), ("openeuler", "22.03-LTS", 0o400, 0, "fail"),
    ("hce", "2.0", 0o000, 0, "pass"), ("alpine", "3.19", 0o640, 42, "pass"),
])
def test_shadow_mode_follows_the_os_baseline(family, version, mode, gid, expected):
    env = build_env({"/etc/group": GROUP, "/etc/shadow": File("root:*:1::::::\n", mode=mode, gid=gid)}, family, version)
    assert verdict(env, "baseline.shadow-mode") == expected


def test_core_dumps():
    assert verdict(image(files={"/etc/security/limits.conf": "# nothing\n"}), "container.core-dumps") == "fail"
    assert verdict(image(files={"/etc/security/limits.conf": "#\n", "/etc/security/limits.d/10-core.conf": "*  hard  core  0\n"}),
                   "container.core-dumps") == "pass"
    assert verdict(image(), "container.core-dumps") == "not_applicable"


def test_umask():
    f = results(image(files={"/etc/login.defs": "UMASK 022\n"}), "container.umask")[0]
    assert f.status == "fail" and f.detail["evidence"].startswith("/etc/login.defs:1: UMASK 022")
    assert verdict(image(files={"/etc/login.defs": "UMASK 027\n", "/etc/profile": "umask 077\n"}), "container.umask") == "pass"
    assert verdict(image(files={"/etc/login.defs": "UMASK 027\n", "/etc/profile.d/x.sh": "  umask 002\n"}),
                   "container.umask") == "fail"
    assert verdict(image(), "container.umask") == "fail"


def test_sshd_installed():
    assert verdict(image(files={"/usr/sbin/sshd": File(b"elf", mode=0o755)}), "container.sshd-installed") == "fail"
    assert verdict(image(), "container.sshd-installed") == "pass"


def test_secrets_in_build_history_are_reported_by_step_and_layer_without_the_value():
    history = [
        {"created_by": "/bin/sh -c #(nop) ADD file:abc in /"},
        {"created_by": "/bin/sh -c #(nop)  ENV DB_PASSWORD=S3cr3tP4ss", "empty_layer": True},
        {"created_by": "/bin/sh -c echo 'admin:$6$Qx7rT2mV$7BwkzN0EvQCoy0l0WuN/wJSG' | chpasswd -e"},
        {"created_by": "/bin/sh -c echo 'ops:Summer2024' | chpasswd"},
        {"created_by": "RUN /bin/sh -c curl -u bob --password=hunter22 https://x # buildkit"},
        {"created_by": "/bin/sh -c apt-get update && apt-get install -y curl"},
    ]
    env = image()
    env.ctx.spec.config["history"] = history
    found = results(env, "container.secrets-in-history")
    assert [(f.status, f.layer_index) for f in found] == [("fail", 1), ("fail", 2), ("fail", 3)]
    assert "history step 2 (layer 1): the build command contains a password hash" in found[0].detail["evidence"]
    assert "plain-text password" in found[1].detail["evidence"]
    text = repr([f.detail for f in found])
    for secret in ("$6$Qx7rT2mV", "Summer2024", "hunter22", "S3cr3tP4ss"):
        assert secret not in text
    env = image(history=["/bin/sh -c useradd -m app", "/bin/sh -c #(nop)  ENV PASSWORD_FILE=/run/secrets/pw"])
    assert verdict(env, "container.secrets-in-history") == "pass"
