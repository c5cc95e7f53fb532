"""The unsafe-settings analyzers through the real pipeline: layers, whiteouts, symlinks, the report."""
from imagebuilder import WHITEOUT, File, ImageBuilder, Symlink

from stowaway.analyzers.settings.crypt import libcrypt
from stowaway.ingest.report import build

SYSTEM_AUTH = """\
auth        required      pam_env.so
auth        required      pam_faillock.so preauth silent deny=5
auth        sufficient    pam_unix.so try_first_pass
password    requisite     pam_pwquality.so try_first_pass local_users_only retry=3
password    sufficient    pam_unix.so sha512 shadow try_first_pass use_authtok remember=5
"""


def test_centos_like_image_end_to_end(scan, tmp_path):
    lib = libcrypt()
    img = ImageBuilder()
    img.layer({
        "etc/os-release": 'NAME="CentOS Linux"\nID="centos"\nVERSION_ID="7"\n',
        "etc/passwd": "root:x:0:0:root:/root:/bin/bash\nsshd:x:74:74::/var/empty/sshd:/sbin/nologin\n",
        "etc/group": "root:x:0:\nsshd:x:74:\n",
        "etc/shadow": File("root:!!:19000:0:99999:7:::\nsshd:!!:19000::::::\n", mode=0o000),
        "etc/login.defs": "PASS_MAX_DAYS 99999\nPASS_MIN_DAYS 0\nPASS_WARN_AGE 7\nENCRYPT_METHOD SHA512\n",
        "etc/pam.d/system-auth-ac": SYSTEM_AUTH, "etc/pam.d/system-auth": Symlink("system-auth-ac"),
        "etc/pam.d/password-auth-ac": SYSTEM_AUTH, "etc/pam.d/password-auth": Symlink("password-auth-ac"),
        "etc/ssh/sshd_config": File("Include /etc/ssh/sshd_config.d/*.conf\nPermitRootLogin no\n"
                                    "PasswordAuthentication no\n"
                                    "Match Group admins\n  PasswordAuthentication yes\n", mode=0o600),
        "etc/ssh/sshd_config.d/50-weak.conf": "PermitRootLogin yes\n",
        "etc/ssh/ssh_host_rsa_key": File("-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----\n", mode=0o600),
        "usr/sbin/sshd": File(b"\x7fELF", mode=0o755),
    })
    img.layer({
        # the weak drop-in is deleted and the host key removed: neither counts any more
        "etc/ssh/sshd_config.d/.wh.50-weak.conf": WHITEOUT, "etc/ssh/.wh.ssh_host_rsa_key": WHITEOUT,
        "etc/passwd": "root:x:0:0:root:/root:/bin/bash\nsshd:x:74:74::/var/empty/sshd:/sbin/nologin\n"
                      "ops:x:1000:1000::/home/ops:/bin/bash\n",
        "etc/shadow": File("root:!!:19000:0:99999:7:::\nsshd:!!:19000::::::\n"
                           f"ops:{lib.crypt(b'ops123', lib.gensalt('$1$'))}:19000:0:99999:7:::\n", mode=0o000),
    })
    img.write_oci_layout(tmp_path / "oci", ref="centos-like:7")
    database, outcomes = scan(f"oci:{tmp_path / 'oci'}", analyzer_names=["os-release", "settings-files", "weak-passwords"])
    assert outcomes[0].status == "done", outcomes[0].error
    report = build(database, "centos-like:7")
    assert report["scan"]["warnings"] == []
    rows = {}
    for u in report["unsafe_settings"]:
        rows.setdefault(u["check_id"], []).append(u)

    def one(check_id):
        assert len(rows[check_id]) == 1, rows[check_id]
        return rows[check_id][0]

    assert one("ssh.permit-root-login")["result"] == "pass"
    pw = one("ssh.password-authentication")
    assert pw["result"] == "fail" and "Match Group admins" in pw["evidence"] and pw["layer_index"] == 0
    assert one("ssh.host-private-keys")["result"] == "pass"
    assert one("ssh.sshd-config-mode")["result"] == "pass"
    for check_id in ("password_policy.complexity-module", "password_policy.reuse", "password_policy.pam-hashing",
                     "password_policy.lockout"):
        assert one(check_id)["result"] == "pass", check_id
    assert one("password_policy.character-classes")["result"] == "fail"  # pwquality without minclass or credits
    assert one("password_policy.pass-max-days")["result"] == "fail"
    assert one("baseline.shadow-mode")["result"] == "pass"  # 0000 root:root, as the CentOS 7 benchmark asks
    assert one("baseline.shadow-mode")["benchmark"] == "CIS CentOS Linux 7 Benchmark 6.1.3"
    weak = one("weak_password.account")
    assert (weak["target"], weak["result"], weak["layer_index"], weak["path"]) == ("ops", "fail", 1, "/etc/shadow")
    assert "ops123" not in str(report["unsafe_settings"])
    assert one("container.non-root-user")["result"] == "fail"
