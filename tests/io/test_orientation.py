"""Slicing volumes in the display convention of orientation.py, checked with marker voxels at known world
coordinates, with every voxel's world coordinates pushed through, against nibabel's canonical reorientation, and
with the round trip on random permuted, flipped and tilted affines."""

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hfseg.io import MedicalFileError, default_plane, from_slices, read, slice_spacing, to_slices

NILEARN_DATA = Path(__import__("nilearn").__file__).parent / "datasets" / "data"
MNI_T1 = NILEARN_DATA / "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"
LAS_MAP = NILEARN_DATA / "image_10426.nii.gz"  # a statistical map stored L-A-S (x flipped)

# What increases along (slices, rows, columns) of each plane, as (world axis, sign): orientation.py's convention.
CONVENTION = {
    "axial": ((2, +1), (1, -1), (0, -1)),  # inferior->superior; anterior at the top; patient's right on the left
    "coronal": ((1, +1), (2, -1), (0, -1)),  # posterior->anterior; superior at the top; right on the left
    "sagittal": ((0, -1), (2, -1), (1, -1)),  # right->left; superior at the top; anterior on the left
}


def world(shape, affine):
    """(3, *shape) RAS+ coordinates of every voxel."""
    index = np.indices(shape, dtype=np.float64).reshape(3, -1)
    return (affine[:3, :3] @ index + affine[:3, 3:]).reshape(3, *shape)


def check_convention(shape, affine, plane):
    coords = world(shape, affine)
    slices = [to_slices(c, affine, plane) for c in coords]
    for out_axis, (world_axis, sign) in enumerate(CONVENTION[plane]):
        if slices[0].shape[out_axis] > 1:
            steps = np.diff(slices[world_axis], axis=out_axis) * sign
            assert (steps > 0).all(), (plane, out_axis, affine)
    return slices


# -- hand-made volumes with a marker -----------------------------------------------------------------------------
def lps_volume():
    """A (5, 6, 7) volume stored like BraTS / DICOM (i to the patient's left, j posterior, k superior), with a
    marker at world (x=+1 right, y=+2 anterior, z=0)."""
    affine = np.array([[-1.0, 0, 0, 2], [0, -1.0, 0, 3], [0, 0, 1.0, -3], [0, 0, 0, 1]])  # x=2-i, y=3-j, z=k-3
    volume = np.zeros((5, 6, 7), np.float32)
    volume[1, 1, 3] = 1  # x = 1, y = 2, z = 0
    return volume, affine


def test_lps_stored_marker():
    volume, affine = lps_volume()
    assert nib.aff2axcodes(affine) == ("L", "P", "S")
    axial = to_slices(volume, affine, "axial")
    # z runs -3..3: z=0 is slice 3. Rows start at the most anterior y=3: y=2 is row 1. Columns start at the
    # patient's right, x=2: x=1 is column 1.
    assert axial.shape == (7, 6, 5)
    assert np.argwhere(axial).tolist() == [[3, 1, 1]]
    coronal = to_slices(volume, affine, "coronal")
    # Slices posterior to anterior: y=-2..3, y=2 is slice 4. Rows from the top, z=3: z=0 is row 3. Column 1.
    assert coronal.shape == (6, 7, 5) and np.argwhere(coronal).tolist() == [[4, 3, 1]]
    sagittal = to_slices(volume, affine, "sagittal")
    # Slices right to left: x=2..-2, x=1 is slice 1. Row 3 (z=0). Columns from the anterior y=3: y=2 is column 1.
    assert sagittal.shape == (5, 7, 6) and np.argwhere(sagittal).tolist() == [[1, 3, 1]]
    for plane in CONVENTION:
        check_convention(volume.shape, affine, plane)


def test_lps_axial_slice_is_the_stored_slice_transposed():
    # DICOM's standard axial orientation: slice k of an LPS-stored volume is the stored slice, (i, j) -> (j, i).
    volume = np.random.default_rng(0).normal(size=(5, 6, 7))
    _, affine = lps_volume()
    axial = to_slices(volume, affine, "axial")
    for k in range(7):
        np.testing.assert_array_equal(axial[k], volume[:, :, k].T)


def test_ras_stored_marker():
    affine = np.diag([2.0, 2.0, 3.0, 1.0])  # x=2i, y=2j, z=3k
    volume = np.zeros((4, 5, 6), np.float32)
    volume[3, 1, 2] = 1  # x=6 (the most right), y=2, z=6
    axial = to_slices(volume, affine, "axial")
    # slice k=2; rows from y=8 down: y=2 is row 3; columns from x=6 (right): column 0.
    assert np.argwhere(axial).tolist() == [[2, 3, 0]]
    data = np.random.default_rng(1).normal(size=(4, 5, 6))
    np.testing.assert_array_equal(to_slices(data, affine, "axial"), np.flip(data, (0, 1)).transpose(2, 1, 0))


def test_permuted_axes_marker():
    # Storage axis 0 runs superior, 1 runs to the patient's right, 2 anterior (a sagittal acquisition stored oddly).
    affine = np.array([[0, 1.0, 0, 0], [0, 0, 1.0, 0], [1.0, 0, 0, 0], [0, 0, 0, 1]])  # x=j, y=k, z=i
    assert nib.aff2axcodes(affine) == ("S", "R", "A")
    volume = np.zeros((3, 4, 5), np.float32)
    volume[2, 0, 1] = 1  # z=2 (top), x=0 (leftmost), y=1
    axial = to_slices(volume, affine, "axial")
    assert axial.shape == (3, 5, 4)
    assert np.argwhere(axial).tolist() == [[2, 3, 3]]  # slice z=2; row: y=4..0, y=1 is row 3; column: x=3..0, x=0
    sagittal = to_slices(volume, affine, "sagittal")
    assert np.argwhere(sagittal).tolist() == [[3, 0, 3]]  # slice x=3..0: x=0 is 3; row z=2 is 0; column y=1 is 3


def test_mni_template_marker():
    image = read(MNI_T1)
    assert nib.aff2axcodes(image.affine) == ("R", "A", "S")
    target = np.array([40.0, 20.0, 10.0])  # MNI mm: right hemisphere, frontal, above the AC
    voxel = np.round(np.linalg.solve(image.affine[:3, :3], target - image.affine[:3, 3])).astype(int)
    marked = np.zeros_like(image.array)
    marked[tuple(voxel)] = 1
    axial = to_slices(marked, image.affine, "axial")
    (slice_, row, column), = np.argwhere(axial)
    coords = check_convention(image.array.shape, image.affine, "axial")
    assert coords[2][slice_, 0, 0] == 10.0  # the slice at z=10
    assert coords[1][0, row, 0] == 20.0 and coords[0][0, 0, column] == 40.0
    assert row < axial.shape[1] / 2 and column < axial.shape[2] / 2  # frontal: upper half; right: left half
    np.testing.assert_array_equal(to_slices(image.array, image.affine, "axial")[slice_],
                                  np.flip(image.array[:, :, voxel[2]], (0, 1)).T)


def test_las_map_matches_nibabel_canonical():
    image = read(LAS_MAP)
    assert nib.aff2axcodes(image.affine) == ("L", "A", "S")
    canonical = nib.as_closest_canonical(nib.Nifti1Image(image.array, image.affine)).get_fdata()  # RAS+
    reference = {
        "axial": np.flip(canonical, (0, 1)).transpose(2, 1, 0),
        "coronal": np.flip(canonical, (0, 2)).transpose(1, 2, 0),
        "sagittal": np.flip(canonical, (0, 1, 2)).transpose(0, 2, 1),
    }
    for plane, expected in reference.items():
        np.testing.assert_array_equal(to_slices(image.array, image.affine, plane), expected)
        np.testing.assert_array_equal(from_slices(expected, image.affine, plane), image.array)
        check_convention(image.array.shape, image.affine, plane)


# -- random affines ----------------------------------------------------------------------------------------------
def rotation_about(axis, angle):
    c, s = np.cos(angle), np.sin(angle)
    i, j = [a for a in range(3) if a != axis]
    r = np.eye(3)
    r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
    return r


@st.composite
def volumes(draw):
    permutation = draw(st.permutations(range(3)))
    flips = draw(st.lists(st.sampled_from([-1.0, 1.0]), min_size=3, max_size=3))
    zooms = draw(st.lists(st.sampled_from([0.5, 1.0, 2.5]), min_size=3, max_size=3))
    tilt = draw(st.sampled_from([0.0, 0.2, -0.4]))  # radians, well under 45 degrees: the nearest axes stay
    axis = draw(st.integers(0, 2))
    shape = tuple(draw(st.lists(st.integers(1, 5), min_size=3, max_size=3)))
    channels = draw(st.sampled_from([(), (2,)]))
    linear = np.zeros((3, 3))
    for storage, world_axis in enumerate(permutation):
        linear[world_axis, storage] = flips[storage] * zooms[storage]
    affine = np.eye(4)
    affine[:3, :3] = rotation_about(axis, tilt) @ linear
    affine[:3, 3] = draw(st.lists(st.floats(-50, 50), min_size=3, max_size=3))
    data = np.random.default_rng(draw(st.integers(0, 1000))).normal(size=shape + channels)
    return data, affine, zooms


@settings(max_examples=60, deadline=None, derandomize=True)
@given(volumes(), st.sampled_from(["axial", "coronal", "sagittal", 0, 1, 2]))
def test_round_trip_and_convention(volume, plane):
    data, affine, zooms = volume
    slices = to_slices(data, affine, plane)
    assert slices.shape[3:] == data.shape[3:]
    np.testing.assert_array_equal(from_slices(slices, affine, plane), data)
    assert sorted(slices.shape[:3]) == sorted(data.shape[:3])
    if isinstance(plane, str):
        check_convention(data.shape[:3], affine, plane)
        # slice_spacing: the distance between neighbouring voxels of the slices, along each of their axes.
        coords = [to_slices(c, affine, plane) for c in world(data.shape[:3], affine)]
        spacing = slice_spacing(tuple(zooms), affine, plane)
        for out_axis in range(3):
            if slices.shape[out_axis] > 1:
                step = np.array([np.take(c, 1, axis=out_axis).flat[0] - np.take(c, 0, axis=out_axis).flat[0]
                                 for c in coords])
                assert np.linalg.norm(step) == pytest.approx(spacing[out_axis])
    else:
        np.testing.assert_array_equal(slices, np.moveaxis(data, plane, 0))
        assert slice_spacing(tuple(zooms), affine, plane)[0] == zooms[plane]


# -- planes and errors -------------------------------------------------------------------------------------------
def test_default_plane_of_single_slices():
    ras = np.diag([1.0, 1.0, 1.0, 1.0])
    assert default_plane(ras, (1, 6, 5)) == "sagittal"  # one slice across x
    assert default_plane(ras, (6, 1, 5)) == "coronal"
    assert default_plane(ras, (6, 5, 1)) == "axial"
    assert default_plane(ras, (6, 5, 4)) == "axial"
    _, lps = lps_volume()
    assert default_plane(lps, (1, 6, 5)) == "sagittal"
    permuted = np.array([[0, 0, 1.0, 0], [1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 0, 1]])  # axis 2 runs along x
    assert default_plane(permuted, (6, 5, 1)) == "sagittal"


def test_single_sagittal_slice_shows_as_one_sagittal_image():
    volume = np.random.default_rng(0).normal(size=(1, 6, 5))  # x, y, z
    slices = to_slices(volume, np.eye(4), default_plane(np.eye(4), volume.shape))
    assert slices.shape == (1, 5, 6)  # one image, superior at the top, anterior on the left
    np.testing.assert_array_equal(slices[0], np.flip(volume[0], (0, 1)).T)


def test_slice_spacing_by_hand():
    _, lps = lps_volume()
    affine = lps @ np.diag([0.8, 0.9, 3.0, 1.0])
    assert slice_spacing((0.8, 0.9, 3.0), affine, "axial") == (3.0, 0.9, 0.8)
    assert slice_spacing((0.8, 0.9, 3.0), affine, "coronal") == (0.9, 3.0, 0.8)
    assert slice_spacing((0.8, 0.9, 3.0), affine, "sagittal") == (0.8, 3.0, 0.9)
    assert slice_spacing((0.8, 0.9, 3.0), affine, 1) == (0.9, 0.8, 3.0)
    assert slice_spacing(None, affine, "axial") is None


def test_errors():
    volume, affine = lps_volume()
    with pytest.raises(ValueError, match="Unknown plane"):
        to_slices(volume, affine, "transverse")
    with pytest.raises(ValueError, match="3D"):
        to_slices(volume[0], affine)
    with pytest.raises(ValueError, match="axis"):
        to_slices(volume, affine, 3)
    flat = affine.copy()
    flat[:3, 2] = 0
    with pytest.raises(MedicalFileError, match="does not define three axes"):
        to_slices(volume, flat, "axial", name="flat.nii")
