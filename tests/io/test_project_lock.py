"""One studio at a time on a project: the lock, stale locks, read-only opening."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

from segstudio.annotation.classes import ClassList
from segstudio.errors import ExportError
from segstudio.io.class_change import JOURNAL_FILE
from segstudio.io.project import Project
from segstudio.io.project_lock import LOCK_FILE, STALE_AFTER_S, ProjectLock, ProjectLockedError, read_owner

HOLD = """
import sys, time
from pathlib import Path
from segstudio.io.project_lock import ProjectLock
ProjectLock(Path(sys.argv[1])).acquire()
print("held", flush=True)
time.sleep(120)
"""


@pytest.fixture
def project(tmp_path):
    images = tmp_path / "img"
    images.mkdir()
    cv2.imwrite(str(images / "a.png"), np.full((10, 12), 70, np.uint8))
    project = Project.create(tmp_path / "p", [images], ClassList.from_names(["bg", "fg"]))
    doc = project.load_document(0)
    doc.labels[:3] = 1
    project.save_document(0, doc)
    return project


@pytest.fixture
def held_elsewhere(project):
    """Another process holding the project's lock, as a second studio would."""
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(project.folder)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    yield holder
    holder.kill()
    holder.wait()


def test_open_with_lock_takes_it_and_closing_gives_it_back(project):
    opened = Project.open(project.folder, lock=True)
    owner, _ = read_owner(project.folder)
    assert owner.pid == os.getpid() and owner.host == socket.gethostname()
    opened.release()
    assert not (project.folder / LOCK_FILE).exists()


def test_a_second_studio_is_told_who_holds_the_project(project, held_elsewhere):
    with pytest.raises(ProjectLockedError) as info:
        Project.open(project.folder, lock=True)
    message = str(info.value)
    assert str(project.folder) in message and f"process {held_elsewhere.pid}" in message
    assert socket.gethostname() in message
    assert info.value.owner.pid == held_elsewhere.pid


def test_read_only_writes_nothing(project, held_elsewhere):
    before = {p: p.read_bytes() for p in project.folder.rglob("*") if p.is_file()}
    viewer = Project.open(project.folder, read_only="open in another window")
    doc = viewer.load_document(0)
    assert (doc.labels[:3] == 1).all()
    viewer.model_settings["architecture"] = "unet"
    viewer.save()
    with pytest.raises(ExportError, match="read-only"):
        viewer.write_labels(0, np.zeros((10, 12), np.uint8))
    with pytest.raises(ExportError, match="read-only"):
        viewer.delete_class(1)
    assert {p: p.read_bytes() for p in project.folder.rglob("*") if p.is_file()} == before


def test_taking_over_replaces_the_holder_and_its_release_leaves_ours(project, held_elsewhere):
    opened = Project.open(project.folder, lock=True, take_over=True)
    assert read_owner(project.folder)[0].pid == os.getpid()
    opened.release()
    assert not (project.folder / LOCK_FILE).exists()


def test_a_lock_of_a_dead_process_is_stale_and_taken(project):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (project.folder / LOCK_FILE).write_text(json.dumps(
        {"pid": dead.pid, "host": socket.gethostname(), "user": "x", "since": time.time(), "token": "t"}))
    opened = Project.open(project.folder, lock=True)
    assert read_owner(project.folder)[0].pid == os.getpid()
    opened.release()


def test_a_lock_from_another_host_is_respected_until_it_goes_unrefreshed(project):
    lock_file = project.folder / LOCK_FILE
    lock_file.write_text(json.dumps(
        {"pid": 1234, "host": "workstation-7", "user": "ana", "since": time.time(), "token": "t"}))
    with pytest.raises(ProjectLockedError, match="workstation-7"):
        Project.open(project.folder, lock=True)
    old = time.time() - STALE_AFTER_S - 5
    os.utime(lock_file, (old, old))
    opened = Project.open(project.folder, lock=True)
    assert read_owner(project.folder)[0].host == socket.gethostname()
    opened.release()


def test_a_damaged_lock_file_counts_as_held(project):
    (project.folder / LOCK_FILE).write_text("{garbage")
    with pytest.raises(ProjectLockedError, match="unknown host"):
        Project.open(project.folder, lock=True)


def test_a_locked_project_is_not_repaired_by_a_second_opener(project, held_elsewhere):
    journal = project.folder / JOURNAL_FILE
    journal.write_text("{}")  # the holder is deleting a class right now
    with pytest.raises(ProjectLockedError):
        Project.open(project.folder, lock=True)
    assert journal.read_text() == "{}"
    assert Project.open(project.folder, read_only="looking").read_only == "looking"
    assert journal.read_text() == "{}"


def test_refresh_marks_the_lock_alive_and_restores_a_removed_one(project):
    lock = ProjectLock(project.folder)
    lock.acquire()
    old = time.time() - 100
    os.utime(lock.path, (old, old))
    lock.refresh()
    assert time.time() - lock.path.stat().st_mtime < 10
    lock.path.unlink()
    lock.refresh()
    assert read_owner(project.folder)[0].token == lock.owner.token
    lock.release()


def test_a_running_studio_on_this_host_keeps_its_lock_however_old(project, held_elsewhere):
    """A laptop resumed after an hour of sleep: its studio still runs and still holds the project."""
    old = time.time() - 10 * STALE_AFTER_S
    os.utime(project.folder / LOCK_FILE, (old, old))
    with pytest.raises(ProjectLockedError):
        Project.open(project.folder, lock=True)


@pytest.mark.parametrize("fields", [{"pid": 2**40}, {"since": 1e300}, {"since": float("nan")},
                                    {"pid": "x"}, {"process_start": "soon"}])
def test_implausible_lock_values_read_as_an_unknown_holder(project, fields):
    data = {"pid": 1234, "host": socket.gethostname(), "user": "x", "since": time.time(), "token": "t"}
    data.update(fields)
    (project.folder / LOCK_FILE).write_text(json.dumps(data))
    owner, _ = read_owner(project.folder)
    assert owner.pid == -1 and owner.host == "unknown host"
    with pytest.raises(ProjectLockedError, match="unknown host"):
        Project.open(project.folder, lock=True)


def test_a_folder_where_no_lock_can_be_written_opens_read_only(project, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("segstudio.io.project_lock.os.open", refuse)
    opened = Project.open(project.folder, lock=True)
    assert opened.lock is None and "cannot be written: Permission denied" in opened.read_only


def test_refresh_says_when_another_studio_took_the_lock(project):
    lock = ProjectLock(project.folder)
    lock.acquire()
    other = ProjectLock(project.folder)
    other.owner = other.owner.__class__(**{**other.owner.__dict__, "pid": 1, "host": "elsewhere"})
    other.acquire(take_over=True)
    assert not lock.refresh() and not lock.held
    lock.release()  # not ours any more: left alone
    assert read_owner(project.folder)[0].host == "elsewhere"
