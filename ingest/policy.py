"""The policy: one TOML file of settings (limits, excluded paths, rule packs, lists), with CLI overrides.

Sections are owned by the analyzers that read them; this module only loads, merges and validates
the shape. The values in force are recorded with every scan (scans.policy).
"""
from __future__ import annotations

import copy
import json

from .model import ScanError

DEFAULTS: dict = {
    "limits": {},  # see streams.Limits
    "base_images": {"approved": []},
}


def split_key(dotted: str) -> list[str]:
    """A `--set` key in TOML's dotted-key syntax: `limits.max_ratio`, `registries."host:5000".insecure`.
    Anything TOML would not read as a key is refused, so no part of it is ever dropped or misread."""
    import tomllib  # here: a scan without a policy file or --set (a rescan, most CI runs) never parses TOML

    try:
        doc = tomllib.loads(f"{dotted} = 0")
    except tomllib.TOMLDecodeError:
        raise ScanError(f"--set {dotted}: not a valid key; quote a part that holds dots, colons or slashes,"
                        " e.g. --set 'registries.\"host:5000\".insecure=true'") from None
    keys: list[str] = []
    node: object = doc
    while isinstance(node, dict):
        (name, node), = node.items()
        keys.append(name)
    return keys


def _set(policy: dict, dotted: str, raw: str) -> None:
    keys = split_key(dotted)
    node = policy
    for k in keys[:-1]:
        node = node.setdefault(k, {})
        if not isinstance(node, dict):
            raise ScanError(f"--set {dotted}: {k} is not a section")
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    node[keys[-1]] = value


def merge(base: dict, extra: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def load(path: str | None = None, overrides: list[str] | None = None, approved_bases: list[str] | None = None,
         check: bool = True) -> dict:
    """The policy file merged over the defaults, with --set overrides and approved bases.

    With `check` (the default), wrong types stop here with one error naming them all and unknown keys
    warn; `check=False` leaves validation to the caller (`stowaway policy check` lists every problem)."""
    policy = copy.deepcopy(DEFAULTS)
    if path:
        import tomllib

        try:
            with open(path, "rb") as fh:
                policy = merge(policy, tomllib.load(fh))
        except OSError as exc:
            raise ScanError(f"{path}: cannot read policy file ({exc.strerror})") from None
        except tomllib.TOMLDecodeError as exc:
            raise ScanError(f"{path}: invalid TOML ({exc})") from None
    for item in overrides or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ScanError(f"--set {item!r}: expected KEY=VALUE")
        _set(policy, key.strip(), value.strip())
    if approved_bases:
        approved = policy.setdefault("base_images", {}).setdefault("approved", [])
        approved.extend(r for r in approved_bases if r not in approved)
    if check and policy != DEFAULTS:  # the defaults alone (no file, --set or base) are valid: a test says so
        from .policy_schema import enforce

        enforce(policy)
    return policy


# Settings edited in the Datasette UI (sensitive-path exclusions, custom weak passwords) live in the
# database, in this table; every scan of that database adds them to the policy's own lists.
SETTINGS_TABLE = "stowaway_settings"
SETTINGS_POLICY_KEYS = {"sensitive_path_exclusion": ("secrets", "exclude_paths"),
                        "weak_password": ("passwords", "extra")}


def database_settings(conn) -> dict:
    """The policy fragment the settings table stands for (lists, to add with `add_lists`)."""
    conn = getattr(conn, "conn", conn)
    if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = ?", [SETTINGS_TABLE]).fetchone():
        return {}
    out: dict = {}
    for kind, value in conn.execute(f"SELECT kind, value FROM {SETTINGS_TABLE} ORDER BY id"):
        if kind in SETTINGS_POLICY_KEYS:
            section, key = SETTINGS_POLICY_KEYS[kind]
            out.setdefault(section, {}).setdefault(key, []).append(value)
    return out


def add_lists(policy: dict, fragment: dict) -> dict:
    """The policy with the fragment's lists appended to its own (merge() would replace them)."""
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in (policy or {}).items()}
    for section, values in fragment.items():
        node = out.setdefault(section, {})
        for key, items in values.items():
            have = list(node.get(key) or [])
            node[key] = have + [x for x in items if x not in have]
    return out


def with_database_settings(policy: dict, database) -> dict:
    merged = add_lists(policy, database_settings(database))
    if merged != policy:
        from .policy_schema import enforce

        enforce(merged)  # e.g. file and UI exclusions together over the limit of 20
    return merged
