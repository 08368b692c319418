"""group_split: whole groups per split, seeded and reproducible."""

import pytest

from hfseg.data.splits import group_split


def test_groups_never_straddle_and_seed_reproduces():
    groups = [f"p{i // 3}" for i in range(30)]  # 10 patients, 3 slices each
    train, val = group_split(groups, 0.2, seed=7)
    assert sorted(train + val) == list(range(30))
    assert not {groups[i] for i in train} & {groups[i] for i in val}
    assert len({groups[i] for i in val}) == 2
    assert group_split(groups, 0.2, seed=7) == (train, val)
    assert group_split(groups, 0.2, seed=8) != (train, val)


def test_edge_cases():
    assert group_split(["a", "b"], 0.01, 0)[1] != []  # at least one validation group
    assert group_split(["a", "b"], 0.99, 0)[0] != []  # and at least one training group
    assert group_split(["a", "a"], 0.5, 0) == ([0, 1], [])  # one group cannot be split
    assert group_split(["a", "b"], 0.0, 0) == ([0, 1], [])
    with pytest.raises(ValueError, match="validation_fraction"):
        group_split(["a"], 1.0, 0)
