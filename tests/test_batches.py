"""Fast in-memory batches: same samples as a DataLoader, seeded, sharded, augmented."""

import pytest
import torch
import torch.nn.functional as F

from cnnlab.data.batches import Augment, InMemoryBatches, affine_grid, augment_batch, shift_batch
from cnnlab.errors import ConfigError


def data(n=100):
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (n, 1, 8, 8), dtype=torch.uint8, generator=g), torch.arange(n) % 10


def test_every_sample_once_per_epoch():
    x, y = data(100)
    batches = InMemoryBatches(x, y, 32, shuffle=True, seed=3)
    assert len(batches) == 4
    seen = torch.cat([t for _, t in batches])
    assert sorted(seen.tolist()) == sorted(y.tolist())


def test_normalisation_and_order_without_shuffle():
    x, y = data(10)
    xb, yb = next(iter(InMemoryBatches(x, y, 4, mean=(0.5,), std=(0.25,))))
    torch.testing.assert_close(xb, (x[:4].float() / 255 - 0.5) / 0.25)
    assert yb.tolist() == y[:4].tolist()


def test_seeded_and_epoch_dependent():
    x, y = data()
    a = InMemoryBatches(x, y, 10, shuffle=True, seed=1)
    b = InMemoryBatches(x, y, 10, shuffle=True, seed=1)
    first = [t for _, t in a]
    assert all(torch.equal(p, q) for p, q in zip(first, [t for _, t in b], strict=True))
    a.set_epoch(1)
    assert not torch.equal(torch.cat(first), torch.cat([t for _, t in a]))


def test_drop_last_and_channels_last():
    x, y = data(100)
    batches = InMemoryBatches(x, y, 32, drop_last=True, channels_last=True)
    assert len(batches) == 3 and batches.num_samples == 96
    xb, _ = next(iter(batches))
    assert xb.is_contiguous(memory_format=torch.channels_last)


def test_shards_cover_the_epoch_without_overlap():
    x, _ = data(100)
    y = torch.arange(100)  # unique labels identify the samples
    shards = [InMemoryBatches(x, y, 7, shuffle=True, seed=5, rank=r, world_size=2) for r in (0, 1)]
    a, b = ([t for _, t in s] for s in shards)
    a, b = torch.cat(a), torch.cat(b)
    assert len(a) == len(b) == 50 and not set(a.tolist()) & set(b.tolist())


def test_shift_moves_content_by_whole_pixels():
    x = torch.zeros(1, 1, 5, 5)
    x[0, 0, 2, 2] = 1
    g = torch.Generator().manual_seed(0)
    out = shift_batch(x, 1, g)
    assert out.sum() == 1 and out.shape == x.shape


def test_affine_augment_keeps_shape_and_mass():
    x = torch.zeros(4, 1, 28, 28)
    x[:, :, 10:18, 10:18] = 1
    out = augment_batch(x, Augment(translate=2, rotate=10, scale=0.1), torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    assert torch.allclose(out.sum((1, 2, 3)), x.sum((1, 2, 3)), rtol=0.3)


@pytest.mark.parametrize("h, w", [(28, 28), (7, 12), (1, 3)])
def test_affine_grid_matches_torch(h, w):
    theta = torch.randn(5, 2, 3, generator=torch.Generator().manual_seed(h * w))
    want = F.affine_grid(theta, [5, 1, h, w], align_corners=False)
    got = affine_grid(theta, h, w)
    assert got.shape == want.shape
    assert torch.allclose(got, want, atol=1e-6)


def test_augment_fills_black_not_mean():
    x = torch.zeros(8, 1, 6, 6, dtype=torch.uint8)
    b = InMemoryBatches(
        x, torch.zeros(8, dtype=torch.long), 8, mean=(0.5,), std=(0.5,), augment=Augment(translate=2)
    )
    xb, _ = next(iter(b))
    assert torch.all(xb == -1)  # background stays background after the shift


def test_bad_arguments():
    x, y = data()
    with pytest.raises(ConfigError):
        InMemoryBatches(x, y, 0)
    with pytest.raises(ConfigError):
        InMemoryBatches(x.float(), y, 8)
    with pytest.raises(ConfigError):
        Augment(translate=-1)
