"""Find the YAML configs that ship with the package (``configs/`` in a checkout, package data in a wheel)."""

from __future__ import annotations

from pathlib import Path

from anomalib_defectgan.errors import DefectGanError

_PACKAGE = Path(__file__).resolve().parents[1]
# The package's own copy first: in a wheel, _PACKAGE.parent is site-packages, where a foreign
# top-level "configs" folder may exist. In a checkout only the repository's folder exists.
_ROOTS = (_PACKAGE / "configs", _PACKAGE.parent / "configs")


def config_file(relative: str | Path) -> Path:
    """The shipped config ``relative`` (e.g. ``"defect_gan/cpu.yaml"``).

    A source checkout (``pip install -e .``) reads the repository's ``configs/`` folder; a wheel
    carries the same files as ``anomalib_defectgan/configs`` (see ``setup.py``).

    Raises:
        DefectGanError: No shipped config has that name; the message lists the ones that exist.
    """
    for root in _ROOTS:
        candidate = root / relative
        if candidate.is_file():
            return candidate
    known = sorted({str(path.relative_to(root)) for root in _ROOTS if root.is_dir() for path in root.glob("*/*.yaml")})
    raise DefectGanError(f"no shipped config {str(relative)!r}; shipped: {', '.join(known) or 'none found'}")


def resolve_config(value: str | Path) -> Path:
    """``value`` if it is a file, else the shipped config of that name (see :func:`config_file`)."""
    path = Path(value)
    if path.is_file():
        return path
    try:
        return config_file(value)
    except DefectGanError as err:
        raise DefectGanError(f"config {str(value)!r} is not a file, and {err}") from None


def shipped_configs() -> dict[str, Path]:
    """Every shipped config, by name (``"defect_gan/cpu.yaml"``), from the first root that has any."""
    for root in _ROOTS:
        found = {str(path.relative_to(root).as_posix()): path for path in sorted(root.glob("*/*.yaml"))}
        if found:
            return found
    return {}


def describe(path: Path) -> str:
    """The first comment line of a config, without its ``#``."""
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#") and line.strip("# "):
            return line.lstrip("# ").strip()
    return ""
