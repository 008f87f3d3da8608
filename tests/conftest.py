"""Shared fixtures. Every test runs offline and in its own working directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

# Tiny tensors: one thread avoids two threads fighting over two cores (measured up to 10x faster
# on a busy machine) and keeps results independent of the machine's core count.
torch.set_num_threads(1)

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATASETS = REPO_ROOT.parent / "shared" / "datasets"


@pytest.fixture(autouse=True)
def _work_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """anomalib writes ./results, ./datasets and ./openvino_cache: keep them out of the repo."""
    monkeypatch.chdir(tmp_path)


def shared_dataset(name: str) -> Path:
    """Path of a real dataset in ../shared/datasets, or skip the test saying why."""
    path = SHARED_DATASETS / name
    if not path.is_dir():
        pytest.skip(f"real dataset {name!r} not found at {path} (it lives in ../shared/datasets)")
    return path
