import pytest
from imagebuilder import File, Symlink
from settings_fixtures import build_env as make_env
from settings_fixtures import results, verdict

from stowaway.analyzers.settings import ssh
from stowaway.analyzers.settings.model import catalog, run_checks
from stowaway.ingest.model import Package

HARDENED = """\
Protocol 2
PermitRootLogin no
PasswordAuthentication no
PermitEmptyPasswords no
X11Forwarding no
MaxAuthTries 4
LoginGraceTime 1m
ClientAliveInterval 300
ClientAliveCountMax 3
IgnoreRhosts yes
HostbasedAuthentication no
AllowTcpForwarding no
LogLevel VERBOSE
Ciphers aes256-gcm@openssh.com,aes128-ctr
MACs hmac-sha2-512-etm@openssh.com,hmac-sha2-256
KexAlgorithms curve25519-sha256,diffie-hellman-group16-sha512
"""

WEAK = """\
Protocol 2,1
PermitRootLogin yes
PasswordAuthentication yes
PermitEmptyPasswords yes
X11Forwarding yes
MaxAuthTries 10
LoginGraceTime 2m
ClientAliveInterval 0
ClientAliveCountMax 10
IgnoreRhosts no
HostbasedAuthentication yes
AllowTcpForwarding yes
LogLevel QUIET
Ciphers aes128-cbc,aes128-ctr
MACs hmac-md5,hmac-sha2-256
KexAlgorithms diffie-hellman-group1-sha1
"""

KEYWORD_CHECKS = ["ssh.permit-root-login", "ssh.password-authentication", "ssh.permit-empty-passwords",
                  "ssh.x11-forwarding", "ssh.max-auth-tries", "ssh.login-grace-time", "ssh.client-alive-interval",
                  "ssh.client-alive-count-max", "ssh.ignore-rhosts", "ssh.hostbased-authentication",
                  "ssh.allow-tcp-forwarding", "ssh.log-level", "ssh.weak-ciphers", "ssh.weak-macs", "ssh.weak-kex"]


def openssh(version):
    return [Package("deb", "openssh-server", version, "/var/lib/dpkg/status")]


@pytest.mark.parametrize("check_id", KEYWORD_CHECKS + ["ssh.protocol"])
def test_each_keyword_fails_when_weak_and_passes_when_hardened(check_id):
    # OpenSSH 7.2 still reads Protocol, so that check has something to judge
    weak = make_env({"/etc/ssh/sshd_config": WEAK}, packages=openssh("1:7.2p2-4ubuntu2.10"))
    good = make_env({"/etc/ssh/sshd_config": HARDENED}, packages=openssh("1:7.2p2-4ubuntu2.10"))
    assert verdict(weak, check_id) == "fail"
    assert verdict(good, check_id) == "pass"


def test_evidence_names_file_line_and_value():
    env = make_env({"/etc/ssh/sshd_config": WEAK})
    f = results(env, "ssh.permit-root-login")[0]
    assert f.detail["evidence"].startswith("/etc/ssh/sshd_config:2: PermitRootLogin yes")
    assert f.path == "/etc/ssh/sshd_config" and f.detail["line"] == 2 and f.layer_index == 0
    assert "cbc" in results(env, "ssh.weak-ciphers")[0].detail["evidence"]
    assert "hmac-md5" in results(env, "ssh.weak-macs")[0].detail["evidence"]


def test_first_value_wins_and_includes_splice_in_place():
    env = make_env({
        "/etc/ssh/sshd_config": "Include /etc/ssh/sshd_config.d/*.conf\nPermitRootLogin yes\nX11Forwarding yes\n",
        "/etc/ssh/sshd_config.d/10-hardening.conf": "PermitRootLogin no\n",
        "/etc/ssh/sshd_config.d/20-more.conf": "X11Forwarding no\nX11Forwarding yes\n",
        "/etc/ssh/sshd_config.d/skipped.txt": "PasswordAuthentication no\n",
    })
    root = results(env, "ssh.permit-root-login")[0]
    assert root.status == "pass" and root.path == "/etc/ssh/sshd_config.d/10-hardening.conf"
    assert verdict(env, "ssh.x11-forwarding") == "pass"
    assert verdict(env, "ssh.password-authentication") == "fail"  # *.conf does not match skipped.txt


def test_relative_include_and_include_loop():
    env = make_env({
        "/etc/ssh/sshd_config": "Include extra.conf\n",
        "/etc/ssh/extra.conf": "Include /etc/ssh/sshd_config\nPermitEmptyPasswords yes\n",
    })
    found = list(run_checks(env, [catalog()["ssh.permit-empty-passwords"]], env.baseline))
    assert [f.status for f in found] == ["fail"]
    assert env.ctx.warnings == ["sshd_config: /etc/ssh/sshd_config includes itself (directly or through another file);"
                                " read once"]


def test_include_of_a_file_the_reader_never_asks_for_is_a_warning():
    env = make_env({"/etc/ssh/sshd_config": "Include /opt/app/sshd.conf\nPermitRootLogin no\n",
                    "/opt/app/sshd.conf": "PermitRootLogin yes\n"})
    found = list(run_checks(env, [catalog()["ssh.permit-root-login"]], env.baseline))
    assert [f.status for f in found] == ["pass"]
    assert env.ctx.warnings == ["sshd_config: /etc/ssh/sshd_config:1 includes /opt/app/sshd.conf, which was not read"]


def test_match_block_that_weakens_a_setting_fails():
    env = make_env({"/etc/ssh/sshd_config": "PermitRootLogin no\nMatch Address 10.0.0.0/8\n    PermitRootLogin yes\n"})
    f = results(env, "ssh.permit-root-login")[0]
    assert f.status == "fail" and "Match Address 10.0.0.0/8" in f.detail["evidence"] and f.detail["line"] == 3
    # a global keyword after a Match line belongs to the block, so the global default applies
    env = make_env({"/etc/ssh/sshd_config": "Match User backup\nPermitRootLogin no\nMatch all\nX11Forwarding no\n"})
    assert "not set" in results(env, "ssh.permit-root-login")[0].detail["evidence"]
    assert verdict(env, "ssh.x11-forwarding") == "pass"


def test_match_inside_an_included_file_ends_with_it():
    env = make_env({
        "/etc/ssh/sshd_config": "Include /etc/ssh/sshd_config.d/*.conf\nMaxAuthTries 3\n",
        "/etc/ssh/sshd_config.d/a.conf": "Match User x\nMaxAuthTries 3\n",
    })
    f = results(env, "ssh.max-auth-tries")[0]
    assert f.status == "pass" and f.detail["line"] == 2 and f.path == "/etc/ssh/sshd_config"


@pytest.mark.parametrize("version,expected", [("1:6.6p1-2ubuntu2", "fail"), ("1:7.4p1-10", "fail"),
                                              ("9.3_p2-r1", "fail"), (None, "fail")])
def test_permit_root_login_default_depends_on_version(version, expected):
    env = make_env({"/etc/ssh/sshd_config": "UsePAM yes\n"}, packages=openssh(version) if version else [])
    f = results(env, "ssh.permit-root-login")[0]
    assert f.status == expected
    want = "yes" if version and version.startswith("1:6") else "prohibit-password"
    assert f.detail["evidence"].endswith(f"is {want} (want no)")


@pytest.mark.parametrize("check_id", ["ssh.weak-ciphers", "ssh.weak-macs", "ssh.weak-kex"])
def test_weak_algorithm_defaults_per_version(check_id):
    old = make_env({"/etc/ssh/sshd_config": "UsePAM yes\n"}, packages=openssh("1:5.3p1-94.el6"))
    new = make_env({"/etc/ssh/sshd_config": "UsePAM yes\n"}, packages=openssh("7.4p1-21.el7"))
    assert verdict(old, check_id) == "fail"
    assert verdict(new, check_id) == "pass"


def test_algorithm_list_modifiers():
    default = "a-ctr,b-gcm"
    assert ssh.algorithms("+c-cbc", default) == ["a-ctr", "b-gcm", "c-cbc"]
    assert ssh.algorithms("^c-cbc", default) == ["c-cbc", "a-ctr", "b-gcm"]
    assert ssh.algorithms("-*-gcm", default) == ["a-ctr"]
    assert ssh.algorithms("x", default) == ["x"]


def test_appending_a_weak_cipher_fails_and_removing_passes():
    env = make_env({"/etc/ssh/sshd_config": "Ciphers +3des-cbc\n"}, packages=openssh("1:8.4p1-5"))
    assert verdict(env, "ssh.weak-ciphers") == "fail"
    env = make_env({"/etc/ssh/sshd_config": "Ciphers -aes128-ctr\n"}, packages=openssh("1:8.4p1-5"))
    assert verdict(env, "ssh.weak-ciphers") == "pass"


def test_protocol_is_moot_from_openssh_7_4():
    env = make_env({"/etc/ssh/sshd_config": "Protocol 1\n"}, packages=openssh("1:8.4p1-5"))
    assert verdict(env, "ssh.protocol") == "pass"
    env = make_env({"/etc/ssh/sshd_config": "Protocol 1\n"}, packages=openssh("1:6.6p1-2"))
    assert verdict(env, "ssh.protocol") == "fail"


def test_time_values_in_sshd_format():
    assert verdict(make_env({"/etc/ssh/sshd_config": "LoginGraceTime 1m30s\n"}), "ssh.login-grace-time") == "fail"
    assert verdict(make_env({"/etc/ssh/sshd_config": "LoginGraceTime 45s\n"}), "ssh.login-grace-time") == "pass"
    assert verdict(make_env({"/etc/ssh/sshd_config": "ClientAliveInterval 5m\n"}), "ssh.client-alive-interval") == "pass"


def test_host_private_keys_are_reported_without_content():
    env = make_env({"/etc/ssh/sshd_config": HARDENED,
                    "/etc/ssh/ssh_host_ed25519_key": File("-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n", mode=0o600),
                    "/etc/ssh/ssh_host_ed25519_key.pub": "ssh-ed25519 AAAA root@x\n"})
    found = results(env, "ssh.host-private-keys")
    assert [f.path for f in found] == ["/etc/ssh/ssh_host_ed25519_key"] and found[0].status == "fail"
    assert "BEGIN" not in found[0].detail["evidence"]
    assert verdict(make_env({"/etc/ssh/sshd_config": HARDENED}), "ssh.host-private-keys") == "pass"


def test_the_reader_never_asks_for_private_keys():
    from stowaway.analyzers.settings.configs import wanted

    assert wanted("/etc/ssh/sshd_config") and wanted("/etc/ssh/sshd_config.d/x.conf") and wanted("/etc/ssh/custom.conf")
    assert not wanted("/etc/ssh/ssh_host_rsa_key") and not wanted("/etc/ssh/ssh_host_rsa_key.pub")
    assert not wanted("/etc/ssh/moduli") and not wanted("/etc/shadow") and not wanted("/etc/ssh/id_rsa")
    from stowaway.analyzers.settings.configs import SettingsFiles
    from stowaway.ingest.model import FileInfo, LayerFile

    key = b"-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn\n-----END OPENSSH PRIVATE KEY-----\n"
    assert SettingsFiles().analyze(LayerFile(FileInfo("/etc/ssh/backup.conf", "file", len(key)), key, 0)) == []
    conf = b"PermitRootLogin no\n"
    assert SettingsFiles().analyze(LayerFile(FileInfo("/etc/ssh/sshd_config", "file", len(conf)), conf, 0)) == [
        {"path": "/etc/ssh/sshd_config", "text": "PermitRootLogin no\n"}]


def test_no_server_is_not_applicable_and_binary_alone_uses_defaults():
    env = make_env({"/etc/hostname": "x\n"})
    assert {f.status for c in KEYWORD_CHECKS for f in results(env, c)} == {"not_applicable"}
    env = make_env({"/usr/sbin/sshd": File(b"\x7fELF", mode=0o755)})
    f = results(env, "ssh.password-authentication")[0]
    assert f.status == "fail" and "no sshd_config" in f.detail["evidence"]


def test_config_reached_through_a_symlink():
    env = make_env({"/etc/ssh/sshd_config": Symlink("sshd_config.dist"), "/etc/ssh/sshd_config.dist": "PermitRootLogin yes\n"})
    f = results(env, "ssh.permit-root-login")[0]
    assert f.status == "fail" and f.path == "/etc/ssh/sshd_config.dist"


def test_sshd_config_mode():
    assert verdict(make_env({"/etc/ssh/sshd_config": File(HARDENED, mode=0o644)}), "ssh.sshd-config-mode") == "fail"
    assert verdict(make_env({"/etc/ssh/sshd_config": File(HARDENED, mode=0o600)}), "ssh.sshd-config-mode") == "pass"


def test_keyword_equals_value_and_case():
    env = make_env({"/etc/ssh/sshd_config": "permitrootlogin=YES\nX11FORWARDING = no\nMaxAuthTries=\"3\"\n"})
    f = results(env, "ssh.permit-root-login")[0]
    assert f.status == "fail" and "PermitRootLogin YES" in f.detail["evidence"]
    assert verdict(env, "ssh.x11-forwarding") == "pass"
    assert verdict(env, "ssh.max-auth-tries") == "pass"
