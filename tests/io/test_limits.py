"""The size check every reader runs before decoding."""

from __future__ import annotations

import pytest

from segstudio.errors import UnreadableInputError
from segstudio.io import limits


def test_limit_from_environment(monkeypatch):
    monkeypatch.setenv(limits.ENV_VARIABLE, "64M")
    assert limits.memory_limit() == 64 * 2**20
    monkeypatch.setenv(limits.ENV_VARIABLE, "1000")
    assert limits.memory_limit() == 1000


def test_limit_is_half_the_available_memory(monkeypatch):
    monkeypatch.delenv(limits.ENV_VARIABLE, raising=False)
    monkeypatch.setattr(limits, "available_memory", lambda: 16 * 2**30)
    assert limits.memory_limit() == 8 * 2**30
    monkeypatch.setattr(limits, "available_memory", lambda: 10)
    assert limits.memory_limit() == limits.FLOOR_BYTES


def test_available_memory_is_read():
    assert limits.available_memory() > 2**20


def test_huge_image_refused_with_file_size_and_limit(monkeypatch, tmp_path):
    monkeypatch.setenv(limits.ENV_VARIABLE, "1G")
    path = tmp_path / "bomb.tif"
    with pytest.raises(UnreadableInputError) as info:
        limits.check_pixels((100000, 100000), 1, path)
    message = str(info.value)
    assert str(path) in message
    assert "100000 x 100000" in message
    assert "1.0 GiB" in message


def test_normal_image_passes(monkeypatch, tmp_path):
    monkeypatch.setenv(limits.ENV_VARIABLE, "1G")
    limits.check_pixels((4000, 4000), 2, tmp_path / "ok.png", channels=3)


def test_non_positive_dimension_refused(tmp_path):
    with pytest.raises(UnreadableInputError, match="not a valid size"):
        limits.check_pixels((0, 512), 1, tmp_path / "a.tif")
    with pytest.raises(UnreadableInputError, match="-3"):
        limits.check_pixels((4, -3, 5), 1, tmp_path / "a.nii", "the volume")


def test_the_message_says_where_the_limit_comes_from(monkeypatch, tmp_path):
    monkeypatch.setenv(limits.ENV_VARIABLE, "1M")
    with pytest.raises(UnreadableInputError, match=r"limit of 1\.0 MiB \(set by SEGSTUDIO_MEMORY_LIMIT\)"):
        limits.check_bytes(2 << 20, tmp_path / "a.png", "the image")
    monkeypatch.delenv(limits.ENV_VARIABLE)
    monkeypatch.setattr(limits, "available_memory", lambda: 4 << 30)
    with pytest.raises(UnreadableInputError, match=r"limit of 2\.0 GiB \(half the memory available\)"):
        limits.check_bytes(3 << 30, tmp_path / "a.png", "the image")
    monkeypatch.setattr(limits, "available_memory", lambda: 1 << 20)
    with pytest.raises(UnreadableInputError, match=r"limit of 512\.0 MiB \(the smallest limit\)"):
        limits.check_bytes(1 << 30, tmp_path / "a.png", "the image")
