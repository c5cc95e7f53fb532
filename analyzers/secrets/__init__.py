"""Sensitive information: the built-in catalogue (rules.py), gitleaks imports (gitleaks.py), the per-layer
analyzer (analyzer.py) and the redaction of secrets from the stored image config (redaction.py).

Policy, section `[secrets]` (every key optional):

    exclude_paths = ["/srv/fixtures/*", "AnyPath/testdata/AnyPath"]   # at most 20, added to the defaults
    max_file_size = 20971520          # bytes; larger files are counted, not read
    gitleaks = ["/etc/stowaway/gitleaks.toml"]   # gitleaks-format rule files, added to the built-ins
    builtin = true                    # false: only the gitleaks rules
    generic_entropy = 3.0             # minimum entropy of a generic `password = ...` value
    rule_timeout = 2.0                # seconds a gitleaks (user) rule may spend on one file
    fingerprint_key_file = "PATH"     # HMAC key for fingerprints (default: ~/.local/share/stowaway/...)

Patterns: `AnyPath` is any number of directories, `AnyName` one path component, `*` anything; a
pattern that does not start with `/` or a wildcard matches at any depth. Archive members are named
`OUTER!/INNER!/MEMBER`: every pattern is tried on that whole path (`/opt/app.jar!/test/*`), and a
pattern not starting with `/` also on the path read across the archive boundaries, so that
`AnyPath/testdata/AnyPath` leaves out `/opt/app.tgz!/testdata/.env` as it would the unpacked file.
"""
