import logging
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def shared_data() -> Path | None:
    """The shared real-data folder: $SFM_REWEIGHT_DATA, else the folder `shared/data` beside the repository."""
    root = Path(os.environ.get("SFM_REWEIGHT_DATA", REPO.parent / "shared" / "data"))
    return root if root.is_dir() else None


@pytest.fixture
def data_root() -> Path:
    root = shared_data()
    if root is None:
        pytest.skip("shared data folder not found (set SFM_REWEIGHT_DATA)")
    return root


@pytest.fixture(autouse=True)
def package_log_to_caplog():
    """The package logger keeps its messages from the root logger (as hloc's does); pytest's caplog
    listens there."""
    logger = logging.getLogger("sfm_reweight")
    logger.propagate = True
    yield
    logger.propagate = False
