import copy
import shutil
from pathlib import Path

import pytest
import torch

from model.codec import Preprocessing
from model.config import get_preset
from model.networks import VAEGAN, build_vaegan
from training.data import CelebADataset
from training.losses import prior_loss
from training.synth import generate_synthetic_celeba

PREPROCESSING = Preprocessing(image_size=64)


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


def briefly_trained_model(root: Path, *, steps: int = 40, seed: int = 0) -> VAEGAN:
    """small64 after a few plain-VAE steps on the synthetic faces (about a second on a CPU).

    Far from a good model, but its batch-norm statistics fit the data and its latent code
    depends on the image, unlike a fresh model whose eval-mode outputs are nearly constant.
    """
    dataset = CelebADataset(root, split="all", preprocessing=PREPROCESSING)
    images = torch.stack([dataset.load(i) for i in range(len(dataset))])
    model = build_vaegan(get_preset("small64"), seed=seed)
    parameters = [*model.encoder.parameters(), *model.decoder.parameters()]
    optimizer = torch.optim.Adam(parameters, lr=2e-3)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(steps):
        batch = images[torch.randperm(len(images), generator=generator)[:16]]
        posterior = model.encode(batch)
        reconstruction = model.decode(posterior.sample(generator))
        kl = prior_loss(*posterior).sum()
        loss = ((reconstruction - batch).pow(2).sum() + kl) / len(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


@pytest.fixture(scope="session")
def shared_small64(synthetic_celeba) -> VAEGAN:
    """The briefly trained small64 model, trained once per session; do not modify it."""
    return briefly_trained_model(synthetic_celeba)


@pytest.fixture
def trained_small64(shared_small64) -> VAEGAN:
    """A private copy of the briefly trained small64 model, free to modify."""
    return copy.deepcopy(shared_small64)
