import pytest
from imagebuilder import Symlink
from settings_fixtures import build_env, results, verdict

LOGIN_DEFS_WEAK = "PASS_MAX_DAYS\t99999\nPASS_MIN_DAYS\t0\nPASS_WARN_AGE\t3\nENCRYPT_METHOD MD5\n"
LOGIN_DEFS_GOOD = "# comment\nPASS_MAX_DAYS   90\nPASS_MIN_DAYS 7\nPASS_WARN_AGE 14\nENCRYPT_METHOD SHA512\n"

DEBIAN_PLAIN = """\
password\t[success=1 default=ignore]\tpam_unix.so obscure yescrypt
password\trequisite\t\t\tpam_deny.so
password\trequired\t\t\tpam_permit.so
"""
DEBIAN_HARDENED = """\
password\trequisite\t\t\tpam_pwquality.so retry=3
password\trequired\tpam_pwhistory.so remember=5 use_authtok
password\t[success=1 default=ignore]\tpam_unix.so obscure use_authtok try_first_pass sha512
password\trequisite\t\t\tpam_deny.so
"""
COMMON_AUTH_LOCKOUT = "auth required pam_faillock.so preauth deny=5\nauth [success=1 default=ignore] pam_unix.so nullok\n"
PWQUALITY_GOOD = "minlen = 14\nminclass = 4\n"


@pytest.mark.parametrize("check_id", ["password_policy.pass-max-days", "password_policy.pass-min-days",
                                      "password_policy.pass-warn-age", "password_policy.encrypt-method"])
def test_login_defs_items(check_id):
    assert verdict(build_env({"/etc/login.defs": LOGIN_DEFS_WEAK}), check_id) == "fail"
    assert verdict(build_env({"/etc/login.defs": LOGIN_DEFS_GOOD}), check_id) == "pass"
    assert verdict(build_env({"/etc/hostname": "x"}), check_id) == "not_applicable"


def test_login_defs_last_definition_wins_and_unset_fails():
    env = build_env({"/etc/login.defs": "PASS_MAX_DAYS 90\nPASS_MAX_DAYS 99999\n"})
    f = results(env, "password_policy.pass-max-days")[0]
    assert f.status == "fail" and f.detail["evidence"] == "/etc/login.defs:2: PASS_MAX_DAYS 99999 (want between 1 and 365)"
    f = results(env, "password_policy.encrypt-method")[0]
    assert f.status == "fail" and "not set" in f.detail["evidence"]


def test_euleros_asks_for_a_shorter_password_life_than_cis():
    defs = {"/etc/login.defs": "PASS_MAX_DAYS 180\n"}
    assert verdict(build_env(defs, "debian", "10"), "password_policy.pass-max-days") == "pass"
    assert verdict(build_env(defs, "centos", "7"), "password_policy.pass-max-days") == "pass"
    f = results(build_env(defs, "openeuler", "22.03-LTS"), "password_policy.pass-max-days")[0]
    assert f.status == "fail" and f.detail["evidence"].endswith("(want between 1 and 90)")


DEBIAN_CHECKS = ["password_policy.complexity-module", "password_policy.min-length", "password_policy.character-classes",
                 "password_policy.reuse"]


@pytest.mark.parametrize("check_id", DEBIAN_CHECKS)
def test_debian_common_password(check_id):
    plain = build_env({"/etc/pam.d/common-password": DEBIAN_PLAIN})
    hardened = build_env({"/etc/pam.d/common-password": DEBIAN_HARDENED, "/etc/security/pwquality.conf": PWQUALITY_GOOD})
    assert verdict(plain, check_id) == "fail"
    assert verdict(hardened, check_id) == "pass"


def test_complexity_evidence_names_the_stack():
    f = results(build_env({"/etc/pam.d/common-password": DEBIAN_PLAIN}), "password_policy.complexity-module")[0]
    assert f.path == "/etc/pam.d/common-password" and "pam_pwquality" in f.detail["evidence"]
    f = results(build_env({"/etc/pam.d/common-password": DEBIAN_PLAIN}), "password_policy.min-length")[0]
    assert "minimum of 6" in f.detail["evidence"]


def test_module_arguments_override_pwquality_conf():
    env = build_env({"/etc/pam.d/common-password": "password requisite pam_pwquality.so minlen=6\n",
                     "/etc/security/pwquality.conf": "minlen = 14\n"})
    f = results(env, "password_policy.min-length")[0]
    assert f.status == "fail" and "minlen=6" in f.detail["evidence"]
    # pwquality's own default (8) is enough when nothing sets minlen
    env = build_env({"/etc/pam.d/common-password": "password requisite pam_pwquality.so retry=3\n"})
    assert verdict(env, "password_policy.min-length") == "pass"
    env = build_env({"/etc/pam.d/common-password": "password requisite pam_pwquality.so\n",
                     "/etc/security/pwquality.conf.d/50-local.conf": "minlen = 5\n"})
    assert verdict(env, "password_policy.min-length") == "fail"


def test_credits_count_as_character_classes():
    args = "password requisite pam_cracklib.so dcredit=-1 ucredit=-1 lcredit=-1 ocredit=0\n"
    assert verdict(build_env({"/etc/pam.d/common-password": args}), "password_policy.character-classes") == "pass"
    args = "password requisite pam_cracklib.so dcredit=-1 ucredit=1\n"
    assert verdict(build_env({"/etc/pam.d/common-password": args}), "password_policy.character-classes") == "fail"


REDHAT_WEAK = """\
auth        required      pam_env.so
auth        sufficient    pam_unix.so try_first_pass nullok
password    sufficient    pam_unix.so md5 shadow nullok try_first_pass use_authtok
password    required      pam_deny.so
"""
REDHAT_GOOD = """\
auth        required      pam_faillock.so preauth silent deny=3 unlock_time=900
auth        sufficient    pam_unix.so try_first_pass
password    requisite     pam_pwquality.so try_first_pass local_users_only retry=3 minlen=14 minclass=4
password    sufficient    pam_unix.so sha512 shadow try_first_pass use_authtok remember=5
password    required      pam_deny.so
"""


@pytest.mark.parametrize("check_id", DEBIAN_CHECKS + ["password_policy.pam-hashing", "password_policy.lockout"])
def test_redhat_system_auth_and_password_auth_through_ac_symlinks(check_id):
    files = {"/etc/pam.d/system-auth": Symlink("system-auth-ac"), "/etc/pam.d/system-auth-ac": REDHAT_GOOD,
             "/etc/pam.d/password-auth": Symlink("password-auth-ac"), "/etc/pam.d/password-auth-ac": REDHAT_GOOD}
    assert verdict(build_env(files, "centos", "7"), check_id) == "pass"
    # one weak file of the two is enough to fail, and the evidence names it
    weak = dict(files, **{"/etc/pam.d/password-auth-ac": REDHAT_WEAK})
    f = results(build_env(weak, "centos", "7"), check_id)[0]
    assert f.status == "fail" and f.path == "/etc/pam.d/password-auth-ac"


def test_include_and_substack_are_followed():
    env = build_env({"/etc/pam.d/system-auth": "password include common-pw\n",
                     "/etc/pam.d/common-pw": "password requisite pam_pwquality.so\n",
                     "/etc/pam.d/password-auth": "password substack system-auth\n"}, "rocky", "9")
    assert verdict(env, "password_policy.complexity-module") == "pass"
    env = build_env({"/etc/pam.d/common-password": "@include common-extra\n",
                     "/etc/pam.d/common-extra": "password requisite pam_cracklib.so\n"})
    assert verdict(env, "password_policy.complexity-module") == "pass"


def test_lockout_on_debian_auth_stack():
    assert verdict(build_env({"/etc/pam.d/common-auth": COMMON_AUTH_LOCKOUT}), "password_policy.lockout") == "pass"
    assert verdict(build_env({"/etc/pam.d/common-auth": "auth required pam_faillock.so preauth deny=20\n"}),
                   "password_policy.lockout") == "fail"
    assert verdict(build_env({"/etc/pam.d/common-auth": "auth required pam_faillock.so preauth\n",
                              "/etc/security/faillock.conf": "deny = 4\n"}), "password_policy.lockout") == "pass"


def test_no_pam_is_not_applicable_but_login_defs_min_len_counts():
    env = build_env({"/etc/hostname": "x"}, "alpine", "3.19")
    for check_id in DEBIAN_CHECKS + ["password_policy.lockout", "password_policy.pam-hashing"]:
        assert verdict(env, check_id) == "not_applicable"
    assert verdict(build_env({"/etc/login.defs": "PASS_MIN_LEN 5\n"}, "alpine", "3.19"), "password_policy.min-length") == "fail"
    assert verdict(build_env({"/etc/login.defs": "PASS_MIN_LEN 12\n"}, "alpine", "3.19"), "password_policy.min-length") == "pass"
