"""Maps the four top-level folders to the stowaway.* namespace, subpackages included.

pyproject.toml's static package-dir cannot discover subpackages under a renamed root, so the
mapping is computed here; all other metadata lives in pyproject.toml.
"""
from setuptools import find_packages, setup

ROOTS = ["ingest", "analyzers", "datasette_plugin", "notebooks"]
packages, package_dir = [], {}
for root in ROOTS:
    package_dir[f"stowaway.{root}"] = root
    packages.append(f"stowaway.{root}")
    packages += [f"stowaway.{root}.{sub}" for sub in find_packages(root)]

setup(packages=packages, package_dir=package_dir)
