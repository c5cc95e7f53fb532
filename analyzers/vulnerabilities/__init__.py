"""Vulnerabilities: the advisory store (OSV and vendor feeds), one version scheme per ecosystem, and the
image-level evaluator that matches the inventory against it (at scan time and on `stowaway rematch`)."""
