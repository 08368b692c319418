"""Kaggle RLE codec: round trips (property tests), hand-made cases, C vs F order, and every malformed string."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from hfseg.data.common import DatasetFormatError
from hfseg.data.rle import RLEError, rle_decode, rle_encode

masks = st.tuples(st.integers(1, 9), st.integers(1, 9)).flatmap(lambda shape: arrays(np.uint8, shape,
                                                                                     elements=st.integers(0, 1)))
orders = st.sampled_from(["C", "F"])


@settings(max_examples=200, deadline=None)
@given(mask=masks, order=orders)
def test_encode_decode_round_trip(mask, order):
    rle = rle_encode(mask, order)
    decoded = rle_decode(rle, mask.shape, order)
    assert decoded.dtype == np.uint8
    np.testing.assert_array_equal(decoded, mask)
    numbers = [int(v) for v in rle.split()]
    assert len(numbers) % 2 == 0 and sum(numbers[1::2]) == int(mask.sum())  # lengths count the foreground


@settings(max_examples=100, deadline=None)
@given(mask=masks)
def test_column_major_is_the_transpose_of_row_major(mask):
    rle = rle_encode(mask, "F")
    rows, cols = mask.shape
    np.testing.assert_array_equal(rle_decode(rle, (rows, cols), "F"), rle_decode(rle, (cols, rows), "C").T)
    assert rle == rle_encode(mask.T, "C")


def test_hand_made_case_in_both_orders():
    # Pixels 2, 3 and 6 (1-indexed) of a 2 x 3 mask.
    np.testing.assert_array_equal(rle_decode("2 2 6 1", (2, 3), "C"), np.array([[0, 1, 1], [0, 0, 1]]))
    np.testing.assert_array_equal(rle_decode("2 2 6 1", (2, 3), "F"), np.array([[0, 1, 0], [1, 0, 1]]))
    assert rle_encode(np.array([[0, 1, 1], [0, 0, 1]])) == "2 2 6 1"
    assert rle_encode(np.array([[0, 1, 0], [1, 0, 1]]), "F") == "2 2 6 1"
    assert rle_encode(np.array([[1, 1, 1], [1, 1, 1]])) == "1 6"


def test_unsorted_runs_and_extra_spaces_are_accepted():
    np.testing.assert_array_equal(rle_decode(" 6 1  2 2 ", (2, 3)), rle_decode("2 2 6 1", (2, 3)))
    np.testing.assert_array_equal(rle_decode("1 2 3 1", (1, 4)), np.array([[1, 1, 1, 0]]))  # touching runs


@pytest.mark.parametrize("empty", ["", "   ", None, float("nan")])
def test_empty_values_decode_to_an_empty_mask(empty):
    np.testing.assert_array_equal(rle_decode(empty, (3, 2)), np.zeros((3, 2), np.uint8))
    assert rle_encode(np.zeros((3, 2))) == ""


@pytest.mark.parametrize(
    ("rle", "message"),
    [
        ("1 2 3", r"odd number of values \(3\)"),
        ("1 2.5", r"token '2.5' is not an integer"),
        ("1 two", r"token 'two' is not an integer"),
        ("0 2", r"start 0 is below 1"),
        ("-3 2", r"start -3 is below 1"),
        ("2 0", r"run starting at 2 has length 0"),
        ("2 -1", r"length -1"),
        ("5 3", r"run 5 3 ends at pixel 7, past the 6 pixels"),
        ("7 1", r"past the 6 pixels"),
        ("1 3 2 1", r"runs 1 3 and 2 1 overlap"),
        ("4 2 1 4", r"runs 1 4 and 4 2 overlap"),
        (12, r"must be a string"),
    ],
)
def test_malformed_rle_is_a_clear_error(rle, message):
    with pytest.raises(RLEError, match=message) as info:
        rle_decode(rle, (2, 3))
    assert isinstance(info.value, DatasetFormatError) and isinstance(info.value, ValueError)


def test_bad_arguments():
    with pytest.raises(ValueError, match="order must be 'C'"):
        rle_decode("1 1", (2, 3), "A")
    with pytest.raises(ValueError, match="order must be 'C'"):
        rle_encode(np.zeros((2, 3)), "R")
    with pytest.raises(ValueError, match="two positive sizes"):
        rle_decode("1 1", (0, 3))
    with pytest.raises(ValueError, match="2D mask"):
        rle_encode(np.zeros((2, 3, 1)))
