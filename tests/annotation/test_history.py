"""Bounded undo/redo."""

import numpy as np

from segstudio.annotation.history import Edit, History


def _edit(n, name):
    region = (slice(0, n), slice(0, n))
    return Edit(region, np.zeros((n, n), np.uint8), np.ones((n, n), np.uint8), name)


def test_undo_redo_order_and_descriptions():
    history = History()
    history.push(_edit(2, "a"))
    history.push(_edit(2, "b"))
    assert history.undo_description == "b" and history.redo_description is None
    assert history.undo().description == "b"
    assert history.can_redo and history.redo_description == "b"
    assert history.undo().description == "a"
    assert history.undo() is None and not history.can_undo
    assert history.redo().description == "a"
    history.push(_edit(2, "c"))  # a new edit clears the redo stack
    assert not history.can_redo and history.redo() is None
    assert history.nbytes == 2 * 8


def test_memory_bound_drops_the_oldest_but_keeps_the_newest():
    history = History(max_bytes=1000)
    for i in range(10):
        history.push(_edit(10, f"edit {i}"))  # 200 bytes each
        assert history.nbytes <= 1000
    assert history.nbytes == 1000 and len(history) == 5
    descriptions = []
    while history.can_undo:
        descriptions.append(history.undo().description)
    assert descriptions == [f"edit {i}" for i in range(9, 4, -1)]
    big = _edit(40, "huge")  # 3200 bytes, above the bound on its own
    history.push(big)
    assert len(history) == 1 and history.undo() is big


def test_clear():
    history = History()
    history.push(_edit(3, "a"))
    history.clear()
    assert history.nbytes == 0 and not history.can_undo and not history.can_redo
