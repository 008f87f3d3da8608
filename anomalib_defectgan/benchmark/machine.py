"""What machine a benchmark ran on, for its report."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def cpu_name() -> str:
    """The CPU model from ``/proc/cpuinfo``, else the architecture.

    Deliberately not ``platform.processor()``: on Linux it runs ``uname -p`` in a subprocess, and
    the child's SIGCHLD reaching a process where a torch DataLoader installed its SIGCHLD handler
    has crashed the interpreter (seen in this test suite).
    """
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def machine_summary() -> str:
    """``'<arch> <cpu model>, <n> CPUs'``."""
    return f"{platform.machine()} {cpu_name()}, {os.cpu_count()} CPUs"
