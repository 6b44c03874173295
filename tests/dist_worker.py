"""A torchrun worker for tests/test_distributed.py: `cnnlab` on the fake dataset, maybe failing.

    torchrun ... tests/dist_worker.py DATA_DIR FAIL_RANK CNNLAB_ARGS...

The `fake` dataset lives in the pytest process only, so each rank writes it again under
DATA_DIR/rank<R> (no two processes write one file) and registers it. Rank FAIL_RANK (-1: none)
raises a DatasetFormatError at the fourth batch of its first epoch, while the other ranks wait
for it in DDP's gradient all-reduce: the case of a rank dying in the middle of a job.
"""

import os
import sys
from pathlib import Path

from tests.conftest import write_fake_dataset

from cnnlab.cli import main
from cnnlab.data import batches, datasets
from cnnlab.errors import DatasetFormatError

INJECTED = "injected failure of rank {rank} at batch 4"


def fail_mid_epoch(rank: int) -> None:
    """Make this process's training batches raise at the fourth batch."""
    original = batches.InMemoryBatches.__iter__

    def failing(self):
        for i, batch in enumerate(original(self)):
            if self.shuffle and i == 3:
                raise DatasetFormatError(INJECTED.format(rank=rank))
            yield batch

    batches.InMemoryBatches.__iter__ = failing


if __name__ == "__main__":
    data_dir, fail_rank, args = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
    rank = int(os.environ.get("RANK", "0"))  # 0 when run without torchrun
    root = data_dir / f"rank{rank}"
    datasets.DATASETS["fake"] = write_fake_dataset(root)
    os.environ["CNNLAB_DATA"] = str(root)
    if rank == fail_rank:
        fail_mid_epoch(rank)
    sys.exit(main(args))
