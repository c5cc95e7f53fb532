"""The shape of the policy file's known sections (docs/policy.md), checked before a scan starts.

`validate(policy)` returns the problems, each prefixed `error:` (a wrong type or value: the scan
must not start, since an analyzer would otherwise fail on it mid-scan or silently ignore it) or
`warning:` (an unknown section or key: most likely a typo, but harmless). `enforce(policy)` raises
one ScanError naming every error and prints the warnings.

Analyzers still check their own settings; this module only lets a bad file fail early and in one
place, with the key's dotted name.
"""
from __future__ import annotations

import dataclasses
import sys
from typing import Callable

from .archives import ArchiveLimits
from .model import ScanError
from .streams import Limits

MAX_EXCLUDE_PATHS = 20  # the seed's limit on user-configured secret exclusions

Check = Callable[[object], "str | None"]  # the problem with a value, or None


def _int(minimum: int = 0) -> Check:
    def check(v):
        if isinstance(v, bool) or not isinstance(v, int):
            return f"expected an integer, got {_kind(v)}"
        if v < minimum:
            return f"expected an integer >= {minimum}, got {v}"
        return None
    return check


def _number(minimum: float = 0) -> Check:
    def check(v):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return f"expected a number, got {_kind(v)}"
        if v < minimum:
            return f"expected a number >= {minimum}, got {v}"
        return None
    return check


def _bool(v):
    return None if isinstance(v, bool) else f"expected true or false, got {_kind(v)}"


def _str(v):
    return None if isinstance(v, str) and v.strip() else f"expected a non-empty string, got {_kind(v)}"


def _str_list(max_items: int | None = None, scalar_ok: bool = False) -> Check:
    def check(v):
        if scalar_ok and isinstance(v, str):
            return _str(v)
        if not isinstance(v, list):
            return f"expected a list of strings, got {_kind(v)}"
        bad = [i for i, x in enumerate(v) if not (isinstance(x, str) and x.strip())]
        if bad:
            return f"item {bad[0] + 1} is {_kind(v[bad[0]])}, expected a non-empty string"
        if max_items is not None and len(v) > max_items:
            return f"{len(v)} items given; at most {max_items} are allowed"
        return None
    return check


def _table(v):
    return None if isinstance(v, dict) else f"expected a table, got {_kind(v)}"


def _anything(v):
    return None


def _max_cost(v):
    """[passwords] max_cost: scheme = positive number, for the schemes whose cost a hash sets."""
    from stowaway.analyzers.settings.crypt import DEFAULT_MAX_COST

    if not isinstance(v, dict):
        return f"expected a table of scheme = cost, got {_kind(v)}"
    problems = []
    for scheme, cost in v.items():
        if scheme not in DEFAULT_MAX_COST:
            problems.append(f"unknown scheme {scheme!r} (known: {', '.join(sorted(DEFAULT_MAX_COST))})")
        elif isinstance(cost, bool) or not isinstance(cost, (int, float)) or cost <= 0:
            problems.append(f"{scheme}: expected a positive number, got {_kind(cost)}")
    return "; ".join(problems) or None


def _forbid_rules(v):
    """Each rule as the compliance analyzer reads it, so a bad rule fails here with its reason."""
    from stowaway.analyzers.compliance import PolicyError, make_rule

    items = [v] if isinstance(v, (str, dict)) else v
    if not isinstance(items, list):
        return f"expected a list of rules, got {_kind(v)}"
    problems = []
    for number, entry in enumerate(items, start=1):
        try:
            make_rule(entry, number)
        except PolicyError as exc:
            problems.append(str(exc))
    return "; ".join(problems) or None


# [registries."HOST"]: per-registry options (ingest/sources/registry.py) and the scan rate limit (tasks.py)
REGISTRY_KEYS: dict[str, Check] = {
    "images_per_hour": _int(1),
    "username": _str,
    "password": _str,
    "insecure": _bool,
    "ca": _str,
    "timeout": _number(0.001),
    "retries": _int(0),
    "backoff": _number(),
    "max_manifest": _int(1),
    "scheme": lambda v: None if v in ("http", "https") else f"expected 'http' or 'https', got {v!r}",
}


def _per_host(keys: dict[str, Check]):
    """A table of tables keyed by registry host; returns every problem, warnings included."""
    def check(section: str, body: dict) -> list[str]:
        problems = []
        for host, conf in body.items():
            if not isinstance(conf, dict):
                problems.append(f"error: {section}.{host}: expected a table, got {_kind(conf)}")
                continue
            for key, value in conf.items():
                c = keys.get(key)
                if c is None:
                    problems.append(f"warning: {section}.{host}.{key}: unknown setting ignored"
                                    f" (known: {', '.join(sorted(keys))})")
                elif (problem := c(value)):
                    problems.append(f"error: {section}.{host}.{key}: {problem}")
        return problems
    check.keys = keys  # type: ignore[attr-defined]
    return check


def _limits(cls: type = Limits, minimum: int = 1) -> dict[str, Check]:
    out = {}
    for f in dataclasses.fields(cls):
        out[f.name] = _number() if isinstance(f.default, float) else _int(minimum)
    return out


# section -> key -> check. A section mapped to None takes any keys (free-form tables); one mapped to
# a function checks its whole body (tables keyed by host).
SCHEMA: dict[str, dict[str, Check] | Callable | None] = {
    "limits": _limits(),
    "archives": _limits(ArchiveLimits, 0),  # max_depth = 0: no archive is opened
    "scan": {"jobs": _int(1), "concurrency": _int(1), "dask": _str, "dask_timeout": _number(0.001),
             "dask_sources_per_task": _int(1),
             "retries": _int(0), "retry_delay": _number(), "max_wait": _number(), "stale_after": _number(1),
             "reuse": _bool, "write_batch": _int(1), "write_batch_seconds": _number(),
             "write_lock_wait_seconds": _number()},
    "registries": _per_host(REGISTRY_KEYS),
    "secrets": {
        "exclude_paths": _str_list(MAX_EXCLUDE_PATHS),
        "default_excludes": _bool,
        "include_paths": _str_list(MAX_EXCLUDE_PATHS),
        "max_file_size": _int(1),
        "gitleaks": _str_list(scalar_ok=True),
        "builtin": _bool,
        "generic_entropy": _number(),
        "rule_timeout": _number(0.001),
        "fingerprint_key_file": _str,
    },
    "malware": {
        "rules": _str_list(scalar_ok=True),
        "default_rules": _bool,
        "ioc_file": _str_list(scalar_ok=True),
        "max_file_size": _int(0),
        "archive_depth": _int(0),
        "archive_member_max": _int(0),
        "archive_total_max": _int(0),
        "timeout": _int(0),
        "clamd": _str,
        "clamscan": _str,
        "clamav_database": _str,
        "clamav_timeout": _number(0.001),
        "clamav_max_bytes": _int(1),
    },
    "passwords": {
        "extra": _str_list(),
        "extra_file": _str,
        "budget_seconds": _number(0.001),
        "workers": _int(1),
        "max_cost": _max_cost,
        "max_accounts": _int(1),
        "verdict_cache": _bool,
    },
    "settings": {"include_max_files": _int(1), "include_max_bytes": _int(1)},
    "compliance": {
        "use_defaults": _bool,
        "forbid": _forbid_rules,
        "allow": _str_list(scalar_ok=True),
        "max_hash_size": _int(1),
    },
    "base_images": {"approved": _str_list(scalar_ok=True)},
    "vulnerabilities": {"ignore_file": _str},
    "source_options": None,  # transport options (registry, engine): passed through to the source
    "credentials": None,  # never recorded with the scan
}


def validate(policy: dict) -> list[str]:
    """Every problem of the known sections, `error: …` or `warning: …`, in file order."""
    if not isinstance(policy, dict):
        return [f"error: the policy must be a table, got {_kind(policy)}"]
    problems: list[str] = []
    for section, body in policy.items():
        if section not in SCHEMA:
            problems.append(f"warning: unknown section [{section}] ignored (known: {', '.join(sorted(SCHEMA))})")
            continue
        keys = SCHEMA[section]
        if not isinstance(body, dict):
            problems.append(f"error: [{section}] must be a table, got {_kind(body)}")
            continue
        if keys is None:
            continue
        if callable(keys):
            problems += keys(section, body)
            continue
        for key, value in body.items():
            check = keys.get(key)
            if check is None:
                problems.append(f"warning: {section}.{key}: unknown setting ignored (known: {', '.join(sorted(keys))})")
                continue
            problem = check(value)
            if problem:
                problems.append(f"error: {section}.{key}: {problem}")
    return problems


def enforce(policy: dict, warn: Callable[[str], None] | None = None) -> list[str]:
    """Raises one ScanError naming every error; reports warnings (to stderr unless `warn` is given)."""
    problems = validate(policy)
    errors = [p[len("error: "):] for p in problems if p.startswith("error: ")]
    if errors:
        raise ScanError("policy: " + "; ".join(errors))
    warnings = [p[len("warning: "):] for p in problems if p.startswith("warning: ")]
    for w in warnings:
        (warn or (lambda m: print(f"stowaway: warning: policy: {m}", file=sys.stderr)))(w)
    return warnings


def _kind(v) -> str:
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, int):
        return "an integer"
    if isinstance(v, float):
        return "a number"
    if isinstance(v, str):
        return "a string" if v.strip() else "an empty string"
    if isinstance(v, list):
        return "a list"
    if isinstance(v, dict):
        return "a table"
    return type(v).__name__
