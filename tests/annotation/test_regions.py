"""Regions of a label map and the banded lookups used to relabel it."""

import numpy as np
import pytest

from segstudio.annotation import regions
from segstudio.errors import InvalidArgumentError


def test_regions_are_clamped_joined_and_made_local():
    assert regions.normalise_region((slice(None, 3), slice(2, 99)), (10, 20)) == (slice(0, 3), slice(2, 20))
    assert regions.normalise_region((slice(-4, None), slice(0, 1)), (10, 20)) == (slice(6, 10), slice(0, 1))
    assert regions.normalise_region((slice(5, 2), slice(0, 1)), (10, 20)) == (slice(5, 5), slice(0, 1))
    with pytest.raises(InvalidArgumentError):
        regions.normalise_region((slice(0, 4, 2), slice(0, 1)), (10, 20))
    with pytest.raises(InvalidArgumentError):
        regions.normalise_region((slice(0, 4),), (10, 20))
    a, b = (slice(1, 4), slice(2, 3)), (slice(3, 8), slice(0, 1))
    assert regions.union(None, a) == a
    assert regions.union(a, b) == (slice(1, 8), slice(0, 3))
    assert regions.local(b, (slice(1, 8), slice(0, 3))) == (slice(2, 7), slice(0, 1))
    assert regions.region_shape((slice(1, 8), slice(0, 3))) == (7, 3)
    assert regions.full_region((2, 3, 4)) == (slice(0, 2), slice(0, 3), slice(0, 4))


def test_banded_lookups_match_plain_indexing_across_bands(monkeypatch):
    monkeypatch.setattr(regions, "_REMAP_BAND_PIXELS", 7)  # several rows per band, a ragged last band
    labels = np.arange(11 * 5, dtype=np.uint16).reshape(11, 5) % 300
    table = (np.arange(65536) % 200).astype(np.uint8)
    copied = regions.remapped_copy(labels, table)
    assert copied.dtype == np.uint8 and np.array_equal(copied, table[labels])
    small = (labels % 250).astype(np.uint8)
    expected = (np.arange(256)[::-1].astype(np.uint8))[small]
    regions.remap_in_place(small, np.arange(256)[::-1].astype(np.uint8))
    assert np.array_equal(small, expected)
