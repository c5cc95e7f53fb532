"""Analyzers: one per file, each registered by name with an integer version (see base.py)."""
