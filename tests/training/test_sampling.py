import torch

from training.data import CelebADataset
from training.sampling import EpochSampler, FlipView


def _items(size, *, epoch=0, flip=True, rank=0, world=1, skip=0):
    return list(
        EpochSampler(size, seed=3, epoch=epoch, flip=flip, rank=rank, world=world, skip=skip)
    )


def test_flip_view_mirrors_the_second_half(synthetic_celeba):
    dataset = CelebADataset(synthetic_celeba, split="train")
    view = FlipView(dataset)
    size = len(dataset)
    assert len(view) == 2 * size
    plain = dataset.load(0)
    assert torch.equal(view[0].image, plain)
    assert torch.equal(view[size].image, plain.flip(-1))
    assert view[size].position == 0
    assert torch.equal(view[size].labels, view[0].labels)


def test_the_sampler_owns_the_flips_reproducibly():
    size = 48
    items = _items(size)
    assert items == _items(size), "a function of (seed, epoch): a resumed run sees the same"
    assert sorted(item % size for item in items) == list(range(size)), "each image once"
    assert any(item >= size for item in items) and any(item < size for item in items)
    assert items != _items(size, epoch=1)
    assert all(item < size for item in _items(size, flip=False))


def test_ranks_share_an_epoch_and_skip_resumes_inside_it():
    size = 48
    whole = _items(size)
    shards = [_items(size, rank=rank, world=2) for rank in range(2)]
    assert shards[0] + shards[1] == whole
    assert _items(size, rank=1, world=2, skip=5) == shards[1][5:]
    assert len(EpochSampler(size, seed=3, epoch=0, flip=True, rank=1, world=2, skip=5)) == 19
