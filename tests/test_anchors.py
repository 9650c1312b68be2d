import pytest
import torch

from latentstitch.anchors import RandomAnchors, StratifiedAnchors
from latentstitch.errors import ConfigError

LABELS = torch.arange(1000) % 7  # 7 classes, 142-143 each


@pytest.mark.parametrize("cls", [RandomAnchors, StratifiedAnchors])
def test_unique_sorted_in_range_and_reproducible(cls):
    idx = cls(num=100, seed=3).select(LABELS)
    assert len(idx) == 100 and len(idx.unique()) == 100
    assert torch.equal(idx, idx.sort().values) and idx.min() >= 0 and idx.max() < 1000
    assert torch.equal(idx, cls(num=100, seed=3).select(LABELS))
    assert not torch.equal(idx, cls(num=100, seed=4).select(LABELS))


def test_stratified_is_class_balanced():
    counts = torch.bincount(LABELS[StratifiedAnchors(num=100, seed=0).select(LABELS)], minlength=7)
    assert counts.max() - counts.min() <= 1 and counts.sum() == 100


def test_stratified_skips_exhausted_classes():
    labels = torch.tensor([0] * 3 + [1] * 50)
    counts = torch.bincount(labels[StratifiedAnchors(num=20, seed=0).select(labels)])
    assert counts.tolist() == [3, 17]


def test_random_can_take_the_whole_split():
    assert torch.equal(RandomAnchors(num=1000).select(LABELS), torch.arange(1000))


@pytest.mark.parametrize("num", [0, -5, 1001])
def test_out_of_range_num_is_a_config_error(num):
    with pytest.raises(ConfigError, match=rf"anchors.num={num} must be between 1 and 1000"):
        RandomAnchors(num=num).select(LABELS)
