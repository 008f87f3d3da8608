"""``defectgan generate`` under ``torchrun``: 2 CPU ranks (gloo) write the tree one process writes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from anomalib_defectgan.cli import main as cli
from anomalib_defectgan.utils.distributed import shard
from tests.test_generate_faults import _args, _assert_same_tree
from tests.test_generators_support import make_bank, make_normals, make_tiny_generator

# Runs the CLI like ``-m anomalib_defectgan.cli`` does, logging the items each rank writes to
# ``written-<RANK>.txt``; rank $FAIL_RANK's write of item $FAIL_ITEM fails as a full disk would.
SPY = '''
import os, sys
from anomalib_defectgan.errors import DefectGanError
from anomalib_defectgan.generation.store import GenerateStore

write = GenerateStore.write_item

def spy(store, name, *args, **kwargs):
    if os.environ["RANK"] == os.environ.get("FAIL_RANK") and name.startswith(os.environ["FAIL_ITEM"]):
        raise DefectGanError(f"cannot write {store.defect_path(name)}: the disk is full")
    with open(f"written-{os.environ['RANK']}.txt", "a") as log:
        log.write(name + "\\n")
    write(store, name, *args, **kwargs)

GenerateStore.write_item = spy
from anomalib_defectgan.cli import main
sys.exit(main())
'''


@pytest.fixture
def inputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    monkeypatch.setenv("ANOMALIB_DEFECTGAN_CACHE", str(tmp_path / "cache"))
    return make_normals(tmp_path / "normals", count=3, size=40), make_bank(tmp_path / "bank", per_class=2)


def _torchrun(script: list[str], args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """``torchrun --standalone --nproc_per_node 2 SCRIPT ARGS`` on CPU, one thread per rank."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "--max-restarts", "0", *script, *args]
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", **env}
    return subprocess.run(command, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.parametrize(("items", "size"), [(0, 2), (1, 2), (7, 1), (7, 3), (10, 4), (3, 5)])
def test_shard_gives_every_item_to_exactly_one_rank(items: int, size: int) -> None:
    shards = [shard(range(items), rank, size) for rank in range(size)]
    assert sorted(i for part in shards for i in part) == list(range(items))
    assert max(map(len, shards)) - min(map(len, shards)) <= 1
    assert shard(list("abcde"), 1, 2) == ["b", "d"]
    assert shard(list("abc")) == list("abc"), "a plain process handles everything"
    with pytest.raises(ValueError, match="outside"):
        shard(range(3), 2, 2)


def test_cutpaste_two_ranks_fail_together_then_resume_to_the_single_process_tree(inputs: tuple[Path, Path],
                                                                                 tmp_path: Path) -> None:
    normals, bank = inputs
    out, num, batch = tmp_path / "out", 10, 3  # batches 0-2, 3-5, 6-8, 9: rank 0 gets 0-2, 6-8
    assert cli(_args(normals, bank, out, num, batch)) == 0
    out.rename(tmp_path / "ref")
    (tmp_path / "spy.py").write_text(SPY)

    failed = _torchrun(["--", "spy.py"], _args(normals, bank, out, num, batch), tmp_path, FAIL_RANK="1", FAIL_ITEM="00004")
    assert failed.returncode != 0, "a rank's full disk fails the run"
    assert "rank 1 failed: cannot write" in failed.stderr and "the disk is full" in failed.stderr, failed.stderr[-3000:]
    written = {rank: (tmp_path / f"written-{rank}.txt").read_text().split() for rank in (0, 1)}
    assert [name[:5] for name in written[0]] == ["00000", "00001", "00002", "00006", "00007", "00008"], \
        "rank 0 painted its whole share, whole batches round robin, before stopping with rank 1's error"
    assert [name[:5] for name in written[1]] == ["00003"]
    assert not (out / "manifest.csv").exists(), "no manifest for an unfinished run"

    command = ["-m", "--", "anomalib_defectgan.cli"]  # '--': torchrun's parser would take --num for --numa-binding
    resumed = _torchrun(command, _args(normals, bank, out, num, batch), tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert resumed.stdout.count("defectgan generate: 10 defect images + 3 good images") == 1, "rank 0 reports"
    _assert_same_tree(out, tmp_path / "ref")


def test_defectgan_two_ranks_equal_the_single_process_tree(inputs: tuple[Path, Path], tmp_path: Path) -> None:
    """Whole batches per rank: the GAN sees the batches one process gives it, so even its last bits match."""
    normals, bank = inputs
    checkpoint = make_tiny_generator(tmp_path / "gen")
    out, num, batch = tmp_path / "out", 7, 2
    assert cli(_args(normals, bank, out, num, batch, checkpoint=checkpoint)) == 0  # one thread (conftest), as each rank
    out.rename(tmp_path / "ref")
    run = _torchrun(["-m", "--", "anomalib_defectgan.cli"], _args(normals, bank, out, num, batch, checkpoint=checkpoint),
                    tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    _assert_same_tree(out, tmp_path / "ref")
