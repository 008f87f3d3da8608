"""Run a command on several processes, devices or nodes with :mod:`torch.distributed`.

``torchrun`` (or ``srun`` exporting the same variables) starts one process per device and tells
each its place through the environment: ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``
and ``MASTER_PORT``. :func:`process_group` joins that group when ``WORLD_SIZE`` > 1 (``gloo`` on
CPU, ``nccl`` for CUDA) and does nothing otherwise, so the same code runs as one plain process.

Failures: :func:`together` runs a block on every rank and, when it raised on one, raises on every
rank once all have reached its end, so a rank that fails (a full disk, an unreadable file) never
leaves the others waiting. A rank that dies outright (SIGKILL, out of memory) cannot report:
``torchrun`` then stops the other processes of its node, and any rank still waiting for it in a
collective gives up after the group's timeout (:data:`DEFAULT_TIMEOUT` unless told otherwise).
"""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple, TypeVar

from anomalib_defectgan.errors import DefectGanError

T = TypeVar("T")
DEFAULT_TIMEOUT = datetime.timedelta(minutes=30)


class World(NamedTuple):
    """This process's place among the processes of a run."""

    rank: int
    """Global index of this process, 0 to ``size - 1``."""
    size: int
    """Number of processes (1: not distributed)."""
    local_rank: int
    """Index of this process on its node (its GPU)."""


def _dist() -> Any:
    """``torch.distributed``, or None where torch was built without it."""
    import torch.distributed as dist

    return dist if dist.is_available() else None


def initialized() -> bool:
    """Whether a process group is running (ours or the caller's)."""
    dist = _dist()
    return dist is not None and dist.is_initialized()


def world() -> World:
    """Rank, world size and local rank: from the running process group, else from the launcher's environment.

    Returns:
        ``World(0, 1, 0)`` in a plain process.
    """
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if initialized():
        dist = _dist()
        return World(dist.get_rank(), dist.get_world_size(), local_rank)
    return World(int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1")), local_rank)


def rank_device(device: str, local_rank: int) -> str:
    """The device a rank uses: ``cuda`` becomes ``cuda:LOCAL_RANK``; an explicit ``cuda:N`` or ``cpu`` is kept.

    Where a process sees fewer GPUs than its local rank (``srun --gpus-per-task 1`` gives each one
    GPU, ``cuda:0``), the local rank is taken modulo the visible GPUs.

    Args:
        device: The ``--device`` the user asked for.
        local_rank: The process's index on its node.
    """
    if device != "cuda":
        return device
    import torch

    count = torch.cuda.device_count()
    return f"cuda:{local_rank % count if count else local_rank}"


@contextlib.contextmanager
def process_group(device: str, timeout: datetime.timedelta = DEFAULT_TIMEOUT) -> Iterator[str]:
    """Join the launcher's process group for the block when ``WORLD_SIZE`` > 1; yields this rank's device.

    The group is ``nccl`` when the rank's device is CUDA and ``gloo`` otherwise, and is destroyed
    at the end of the block. A group the caller already started is used and left running.

    Args:
        device: The ``--device`` the user asked for (see :func:`rank_device`).
        timeout: How long a collective (a barrier) waits for the slowest rank before it fails.

    Yields:
        The device this rank computes on: ``device`` itself in a plain process.
    """
    here = world()
    if here.size == 1:
        yield device
        return
    device = rank_device(device, here.local_rank)
    if initialized():
        yield device
        return
    import torch

    dist = _dist()
    if dist is None:
        raise DefectGanError(f"WORLD_SIZE={here.size} but this torch build has no torch.distributed")
    backend = "nccl" if device.startswith("cuda") else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(device)
    try:
        dist.init_process_group(backend, timeout=timeout,
                                device_id=torch.device(device) if backend == "nccl" else None)
    except (ValueError, RuntimeError) as err:  # a missing MASTER_ADDR, an unreachable master
        raise DefectGanError(f"cannot join the torch.distributed group (rank {here.rank} of {here.size}, "
                             f"{backend}): {str(err).splitlines()[0]}") from err
    try:
        yield device
    finally:
        dist.destroy_process_group()


def barrier() -> None:
    """Wait until every rank gets here (nothing in a plain process)."""
    if initialized():
        _dist().barrier()


def all_gather(value: T) -> list[T]:
    """Every rank's ``value`` (picklable), in rank order, on every rank: ``[value]`` in a plain process."""
    if not initialized():
        return [value]
    values: list[T] = [None] * world().size  # type: ignore[list-item]
    _dist().all_gather_object(values, value)
    return values


@contextlib.contextmanager
def together() -> Iterator[None]:
    """Run a block on every rank; when it raises on any rank, raise on every rank (a barrier at its end).

    The failing rank re-raises its own exception; the others raise a :class:`DefectGanError`
    naming the first failed rank and its error. ``KeyboardInterrupt`` and ``SystemExit`` pass
    straight through (``torchrun`` stops the other processes).

    Raises:
        DefectGanError: On the ranks whose block succeeded, when another rank's failed.
    """
    if not initialized():
        yield
        return
    failure: Exception | None = None
    try:
        yield
    except Exception as err:  # noqa: BLE001 - shared with the other ranks, then re-raised
        failure = err
    message = None if failure is None else (str(failure) if isinstance(failure, DefectGanError)
                                            else f"{type(failure).__name__}: {failure}")
    failed = [(rank, text) for rank, text in enumerate(all_gather(message)) if text is not None]
    if failure is not None:
        raise failure
    if failed:
        rank, text = failed[0]
        more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
        raise DefectGanError(f"rank {rank} failed{more}: {text}")


def shard(items: Sequence[T], rank: int | None = None, size: int | None = None) -> list[T]:
    """The items one rank handles: every ``size``-th item from the ``rank``-th (round robin).

    Every item goes to exactly one rank, and the shards differ in length by one at most.

    Args:
        items: All the work, in the same order on every rank.
        rank: The rank (default: this process's).
        size: The number of ranks (default: this run's).
    """
    here = world()
    rank = here.rank if rank is None else rank
    size = here.size if size is None else size
    if not 0 <= rank < size:
        raise ValueError(f"rank {rank} outside 0..{size - 1}")
    return list(items[rank::size])
