import os

# One intra-op thread per process: tests spawn worker processes (DDP, pipeline stages, sandbox pools), and
# OpenMP threads that outnumber free cores spin-wait each other into 10-50x slowdowns on a 2-core box.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
