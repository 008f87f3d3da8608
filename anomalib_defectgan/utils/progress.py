"""Plain progress lines for long jobs whose output goes to a log file (a cluster job, ``nohup``).

Lightning's and tqdm's bars redraw one terminal line; in a redirected log they show nothing
useful. These helpers give the words for one line per unit of work: which run of how many,
elapsed time, and the time left estimated from the runs done so far.
"""

from __future__ import annotations

import sys
import time
from datetime import timedelta
from typing import Any, TextIO


def clock(seconds: float) -> str:
    """``H:MM:SS`` of a duration (rounded to the second)."""
    return str(timedelta(seconds=round(max(seconds, 0.0))))


class RunClock:
    """Counts a fixed number of runs and estimates the time the remaining ones take.

    The estimate is the mean of the runs actually trained in this process (runs reused from an
    earlier, resumed invocation take no time and are left out of the mean).

    Args:
        total: Runs planned.
    """

    def __init__(self, total: int) -> None:
        self.total = total
        self.done = 0
        self.trained_seconds: list[float] = []
        self._start = time.monotonic()

    def starting(self) -> str:
        """Words for the run about to start: ``run 4/9, 0:03:10 elapsed, about 0:06:20 left``."""
        return f"run {self.done + 1}/{self.total}, {clock(time.monotonic() - self._start)} elapsed" + (
            f", about {self._estimate()} left" if self.trained_seconds else "")

    def finished(self, seconds: float) -> None:
        """One run trained in ``seconds``."""
        self.done += 1
        self.trained_seconds.append(seconds)

    def skipped(self) -> None:
        """One run reused (finished earlier)."""
        self.done += 1

    def left(self) -> str:
        """Words for what is left: ``5 of 9 runs left, about 0:06:20`` (or ``all 9 runs done``)."""
        remaining = self.total - self.done
        if remaining <= 0:
            return f"all {self.total} runs done"
        return f"{remaining} of {self.total} runs left" + (
            f", about {self._estimate()}" if self.trained_seconds else "")

    def _estimate(self) -> str:
        mean = sum(self.trained_seconds) / len(self.trained_seconds)
        return clock(mean * (self.total - self.done))


class StageClock:
    """Numbered stages with the time since the job started: ``[2/6 at 0:01:05] GAN ...``.

    Args:
        total: Stages planned.
    """

    def __init__(self, total: int) -> None:
        self.total = total
        self._start = time.monotonic()

    def elapsed(self) -> float:
        """Seconds since the job started."""
        return time.monotonic() - self._start

    def line(self, stage: str, text: str) -> str:
        """The line announcing ``stage`` (e.g. ``"2"`` or ``"2+4"``) of ``total``."""
        return f"[{stage}/{self.total} at {clock(self.elapsed())}] {text}"


class CountLines:
    """A progress counter that writes plain lines (``generate 120/960 (12%) 3.4 img/s ETA 0:04:07``).

    The same ``update``/``close`` interface as a tqdm bar, for a stream that is not a terminal:
    about ``lines`` lines per run, and one at the end.

    Args:
        total: Units planned.
        desc: Name at the start of each line.
        unit: Unit name (``img``).
        stream: Where the lines go.
        lines: Lines per run.
    """

    def __init__(self, total: int, desc: str, unit: str, stream: TextIO, lines: int = 20) -> None:
        self.total, self.desc, self.unit, self.stream = total, desc, unit, stream
        self.every = max(1, total // max(lines, 1))
        self.count = 0
        self._next = self.every
        self._start = time.monotonic()

    def update(self, n: int = 1) -> None:
        """Count ``n`` more units; write a line when one is due."""
        self.count += n
        if self.count >= self._next and self.count < self.total:
            self._next = (self.count // self.every + 1) * self.every
            self._write()

    def close(self) -> None:
        """Write the final line."""
        self._write()

    def _write(self) -> None:
        elapsed = time.monotonic() - self._start
        rate = self.count / elapsed if elapsed > 0 else 0.0
        share = f" ({100 * self.count / self.total:.0f}%)" if self.total else ""
        eta = f" ETA {clock((self.total - self.count) / rate)}" if rate > 0 and self.count < self.total else ""
        done = f" done in {clock(elapsed)}" if self.count >= self.total else ""
        print(f"{self.desc} {self.count}/{self.total}{share} {rate:.1f} {self.unit}/s{eta}{done}",
              file=self.stream, flush=True)


def progress_bar(total: int, desc: str, unit: str, disable: bool = False, stream: TextIO | None = None) -> Any:
    """tqdm's bar in a terminal, :class:`CountLines` in a log file, a silent counter when ``disable``."""
    from tqdm import tqdm

    stream = sys.stderr if stream is None else stream
    if disable or stream.isatty():
        return tqdm(total=total, desc=desc, unit=unit, disable=disable, file=stream)
    return CountLines(total, desc, unit, stream)
