"""Fixtures of the hfseg.io tests."""

import pytest

from .files import write_series


@pytest.fixture
def series(tmp_path):
    """An axial series of 5 slices (CT_small's geometry, 5 mm apart)."""
    return write_series(tmp_path / "series")
