"""The masking rules live in stowaway.ingest.masking, shared with the command line (tables, SARIF,
exports); the plugin's pages import them from here."""
from stowaway.ingest.masking import (  # noqa: F401
    ASSIGNMENT,
    MASK,
    SENSITIVE_NAME,
    URL_CREDENTIALS,
    mask_command,
    mask_env,
    mask_json_env,
    mask_json_history,
    mask_value,
)
