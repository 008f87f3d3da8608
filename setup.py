"""Packaging detail pyproject.toml cannot express: ship the repository's configs/ as package data."""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["anomalib_defectgan*"]), "anomalib_defectgan.configs"],
    package_dir={"anomalib_defectgan.configs": "configs"},
    package_data={"anomalib_defectgan.configs": ["*/*.yaml"]},
)
