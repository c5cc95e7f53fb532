"""Masks what the image config carries in clear: ENV values and build commands that set credentials.

The secret tables hold masked values only, but `images.env`, `images.history` and layer commands
come straight from the image config (`ENV DB_PASSWORD=...`). Every page the Datasette plugin renders,
and every table, SARIF file and export of the command line, passes them through here.
"""
from __future__ import annotations

import json
import re

SENSITIVE_NAME = re.compile(r"(?i)(pass|pwd|secret|token|key|cred|auth|private|salt|cert|dsn|api_?key|session|cookie)")
# NAME=value inside a build command (ENV/ARG lines, `export X=...`, `--build-arg X=...`)
ASSIGNMENT = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)=(?P<value>\"[^\"]*\"|'[^']*'|[^\s;&|]+)")
URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@\s]+):(?P<password>[^@/\s]+)@")
MASK = "••••••"


def mask_value(name: str, value: str) -> str:
    if SENSITIVE_NAME.search(name):
        return MASK
    return URL_CREDENTIALS.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", value)


def mask_env(env: list[str]) -> list[str]:
    out = []
    for item in env or []:
        name, sep, value = str(item).partition("=")
        out.append(f"{name}={mask_value(name, value)}" if sep else name)
    return out


def mask_command(command: str | None) -> str | None:
    if not command:
        return command
    command = ASSIGNMENT.sub(lambda m: f"{m['name']}={mask_value(m['name'], m['value'])}", command)
    return URL_CREDENTIALS.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", command)


def mask_json_env(text: str | None) -> str | None:
    """images.env as stored (a JSON list of NAME=value)."""
    try:
        env = json.loads(text) if text else []
    except ValueError:
        return mask_command(text)
    return json.dumps(mask_env(env), ensure_ascii=False) if isinstance(env, list) else mask_command(text)


def mask_json_history(text: str | None) -> str | None:
    try:
        history = json.loads(text) if text else []
    except ValueError:
        return mask_command(text)
    if not isinstance(history, list):
        return mask_command(text)
    for entry in history:
        if isinstance(entry, dict) and entry.get("created_by"):
            entry["created_by"] = mask_command(entry["created_by"])
    return json.dumps(history, ensure_ascii=False)
