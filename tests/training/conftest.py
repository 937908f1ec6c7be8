import shutil
from pathlib import Path

import pytest

from training.synth import generate_synthetic_celeba


@pytest.fixture(scope="session")
def synthetic_celeba(tmp_path_factory) -> Path:
    """A small synthetic data set in CelebA's exact layout; treat it as read-only."""
    root = tmp_path_factory.mktemp("celeba")
    generate_synthetic_celeba(root, 60, seed=11, progress=False)
    return root


@pytest.fixture
def celeba_copy(synthetic_celeba, tmp_path) -> Path:
    """A private copy a test may damage."""
    target = tmp_path / "celeba"
    shutil.copytree(synthetic_celeba, target)
    return target
