"""The ``defectgan`` console script.

Each subcommand lives in its own module under :mod:`anomalib_defectgan.commands` and exposes
``main(argv: list[str]) -> int``. Modules are imported only when their command runs, so
``defectgan --help`` stays fast and a command never pays for another's imports.
"""

from __future__ import annotations

import importlib
import sys

from anomalib_defectgan.errors import DefectGanError

COMMANDS: dict[str, tuple[str, str]] = {
    "make-dataset": ("make_dataset", "Render the procedural steel world (the embedded default dataset)."),
    "import-dataset": ("import_dataset", "Convert a public or in-house dataset into a manifest."),
    "fit": ("fit", "Train the defect-transfer GAN (Lightning CLI: -c CONFIG, --trainer.*, --model.*)."),
    "export-weights": ("export_weights", "Write generator.safetensors + generator.json from a fit checkpoint."),
    "generate": ("generate", "Paint synthetic defects onto a new grade's good images (anomalib Folder tree)."),
    "export": ("export", "Export the generator to OpenVINO IR."),
    "demo": ("demo", "End-to-end demo on the procedural steel world."),
    "configs": ("configs", "List the shipped YAML configs, print their installed path, or copy them into a folder."),
    "benchmark": ("benchmark", "Benchmarks (new-grade, generator, classifier, ...): 'defectgan benchmark --help'."),
}


def _usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = ["usage: defectgan COMMAND [options]", "", "commands:"]
    lines += [f"  {name:<{width}}  {text}" for name, (_, text) in COMMANDS.items()]
    lines += ["", "Run 'defectgan COMMAND --help' for the options of one command."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Dispatch to a subcommand; user errors print one clear line and exit 2.

    Args:
        argv: Arguments without the program name; ``sys.argv[1:]`` when None.

    Returns:
        The process exit code.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help", "help"}:
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"defectgan: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(f"anomalib_defectgan.commands.{COMMANDS[name][0]}")
    try:
        return int(module.main(rest) or 0)
    except DefectGanError as err:
        print(f"defectgan {name}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"defectgan {name}: interrupted; finished outputs are kept, rerun to resume.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
