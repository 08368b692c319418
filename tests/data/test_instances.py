"""The 3-class boundary target of instance maps, checked against hand-made cases."""

import numpy as np
import pytest

from hfseg.data.instances import INSTANCE_ID2LABEL, boundary_target, count_instances, instance_map, relabel


def touching_squares():
    """Two 4x4 squares side by side (columns 1-4 and 5-8) in an 8x10 map."""
    instances = np.zeros((8, 10), np.uint16)
    instances[2:6, 1:5] = 7
    instances[2:6, 5:9] = 300
    return instances


def test_touching_squares_boundary_exactly_where_expected():
    target = boundary_target(touching_squares())
    expected = np.zeros((8, 10), np.uint8)
    expected[2:6, 1:9] = 2  # every pixel of a 4x4 square touches background or the other square...
    expected[3:5, 2:4] = 1  # ...but its 2x2 core
    expected[3:5, 6:8] = 1
    np.testing.assert_array_equal(target, expected)
    assert INSTANCE_ID2LABEL == {0: "background", 1: "interior", 2: "boundary"}


def test_shared_border_is_one_pixel_per_side_and_width_grows_it():
    instances = np.zeros((12, 20), np.int32)
    instances[:, :10], instances[:, 10:] = 1, 2  # fill the map: no background, the image border is no boundary
    np.testing.assert_array_equal(np.flatnonzero(boundary_target(instances)[5] == 2), [9, 10])
    np.testing.assert_array_equal(np.flatnonzero(boundary_target(instances, width=2)[5] == 2), [8, 9, 10, 11])
    assert (boundary_target(instances)[:, [0, 19]] == 1).all()


def test_connectivity_and_volumes():
    instances = np.zeros((7, 7), np.int32)
    instances[1:6, 1:6] = 1
    four, eight = boundary_target(instances), boundary_target(instances, connectivity=2)
    assert four[2, 2] == 1 and eight[2, 2] == 1 and (four == 1).sum() == 9 == (eight == 1).sum()
    full = np.ones((7, 7), np.int32)
    full[0, 0] = 2  # (1, 1) has it as a diagonal neighbour only: boundary under 8-connectivity, interior under 4
    assert boundary_target(full)[1, 1] == 1 and boundary_target(full, connectivity=2)[1, 1] == 2
    cube = np.zeros((5, 5, 5), np.int32)
    cube[1:4, 1:4, 1:4] = 3
    target = boundary_target(cube)
    assert target[2, 2, 2] == 1 and (target == 1).sum() == 1 and (target == 2).sum() == 26


def test_instance_map_checks_and_helpers():
    with pytest.raises(ValueError, match="boolean"):
        instance_map(np.ones((2, 2), bool))
    with pytest.raises(ValueError, match="fractional"):
        instance_map(np.full((2, 2), 0.5))
    with pytest.raises(ValueError, match=">= 0"):
        instance_map(np.full((2, 2), -1))
    with pytest.raises(ValueError, match="16-bit"):
        instance_map(np.full((2, 2), 70000))
    with pytest.raises(ValueError, match="width"):
        boundary_target(touching_squares(), width=0)
    np.testing.assert_array_equal(relabel(np.array([[0, 300, 7], [7, 0, 300]])), [[0, 2, 1], [1, 0, 2]])
    assert count_instances(touching_squares()) == 2 and count_instances(np.zeros((3, 3))) == 0
