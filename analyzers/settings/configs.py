"""Unsafe settings: reads the small configuration files the checks need, once per layer, and at image
level evaluates the SSH, password-policy, OS-baseline and container-baseline checks of checks.toml.

Only non-secret text is kept in the per-layer records: SSH host private keys and /etc/shadow are
never read here (host keys are judged from their metadata; hashes are verified by `weak-passwords`).
"""
from __future__ import annotations

import posixpath
import re

from stowaway.ingest.model import ScanError

from ..base import Analyzer, register
from . import baseline, container, password_policy, ssh  # noqa: F401  (they register their evaluators)
from .env import Env, include_limits, visible_records
from .model import Result, baseline_of, catalog, run_checks, to_finding
from .passwords import PASSWORD_CHECKS

MAX_SIZE = 256 << 10
EXACT = {
    "/etc/passwd", "/etc/group", "/etc/login.defs", "/etc/security/pwquality.conf", "/etc/security/limits.conf",
    "/etc/security/faillock.conf", "/etc/sysctl.conf", "/etc/profile", "/etc/bashrc", "/etc/bash.bashrc",
}
DIRECTORIES = {
    "/etc/pam.d", "/etc/security/pwquality.conf.d", "/etc/security/limits.d", "/etc/sysctl.d", "/usr/lib/sysctl.d",
    "/lib/sysctl.d", "/etc/profile.d", "/etc/ssh/sshd_config.d", "/etc/crypto-policies/back-ends",
}
# sshd_config and what it usually includes; never a key (whatever its name, see analyze)
SSH_CONFIG_NAME = re.compile(r"(^sshd?_config$|\.conf$|^sshd_config\.)")
PRIVATE_KEY = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")


def wanted(path: str) -> bool:
    if path in EXACT:
        return True
    directory, name = posixpath.split(path)
    if directory == "/etc/ssh":
        return bool(SSH_CONFIG_NAME.search(name))
    return directory in DIRECTORIES


@register
class SettingsFiles(Analyzer):
    name = "settings-files"
    version = 2
    risk = "unsafe_settings"
    stage = "evaluate"  # the configuration baselines
    consumes = ("os", "packages")  # SSH defaults depend on the openssh version
    produces = ("findings",)

    def __init__(self, policy=None):
        super().__init__(policy)
        try:
            include_limits(self.policy)  # a bad [settings] value fails the scan's start, not each check
        except ValueError as exc:
            raise ScanError(str(exc)) from None

    def required(self, path, info):
        return info.size <= MAX_SIZE and wanted(path)

    def analyze(self, file):
        text = file.text()
        if PRIVATE_KEY.search(text):
            return []  # a key where a configuration file was expected is a secret, not a setting
        return [{"path": file.path, "text": text}]

    def collect(self, ctx, layers):
        files = {path: (r["text"], layer) for path, (r, layer) in visible_records(ctx, layers).items()}
        base = baseline_of(ctx.os)
        env = Env(ctx, files, base)
        checks = [c for c in catalog().values() if c.id not in PASSWORD_CHECKS]
        for c in checks:
            if c.scope == "os" and not base:
                what = f"OS family {ctx.os.family!r}" if ctx.os.family else "an unidentified OS"
                yield to_finding(c, Result(c.id, "not_applicable", f"no OS configuration baseline for {what}",
                                           target="os baseline"), None)
        yield from run_checks(env, [c for c in checks if c.scope == "all" or base], base)
