import importlib.util
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# the pipelines are scripts that import each other by name, as `python pipelines/x.py` lets them
sys.path.insert(0, str(REPO / "pipelines"))


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


def load_pipeline(name: str):
    """The module of pipelines/<name>.py (the pipelines are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(f"sfm_reweight_pipeline_{name}", REPO / "pipelines" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
