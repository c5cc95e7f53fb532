"""The project's default YARA rule pack (*.yar beside this file).

A package only so that setuptools installs the rule files as package data; nothing to import.
"""
