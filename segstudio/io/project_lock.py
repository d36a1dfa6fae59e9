"""One studio at a time on a project: the lock file ``.segstudio.lock``.

Two windows writing one project overwrite each other's labels. The studio
takes the lock when it opens a project: the file is created exclusively and
names the process (id, host, user, start time). Another studio that finds
it is told who holds it and may open the project read-only, or take the
lock over when the holder is gone.

A lock is stale, and taken over without asking, when its process is on
this host and no longer runs (or its id now belongs to a process started
later), or when its holder has not refreshed it (:meth:`ProjectLock.refresh`,
every minute while the studio is open) for :data:`STALE_AFTER_S`, which
covers a holder on another host of a shared drive that crashed. Command-line
commands that only read a project (export, evaluate) take no lock.
"""

from __future__ import annotations

import getpass
import json
import logging
import math
import os
import secrets
import socket
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from segstudio.errors import SegstudioError
from segstudio.io.masks import atomic_write_bytes

log = logging.getLogger(__name__)

LOCK_FILE = ".segstudio.lock"
#: a lock its holder has not refreshed for this long is stale
STALE_AFTER_S = 600.0
#: how often an open studio refreshes its lock
REFRESH_S = 60.0


@dataclass(frozen=True)
class LockOwner:
    """Who holds a project's lock."""

    pid: int
    host: str
    user: str
    since: float
    token: str
    process_start: float | None = None

    def describe(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(self.since))
        return f"segstudio process {self.pid} of {self.user or 'unknown user'} on {self.host}, since {when}"


class ProjectLockedError(SegstudioError):
    """The project is open in another studio (``owner``)."""

    def __init__(self, folder: Path, owner: LockOwner) -> None:
        super().__init__(f"the project is open in another window ({owner.describe()})", path=folder)
        self.owner = owner


def _process_start(pid: int) -> float | None:
    """When process *pid* started (seconds since boot, Linux), or None where unknown."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # it exists, owned by someone else
    return True


def _me() -> LockOwner:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = ""
    return LockOwner(os.getpid(), socket.gethostname(), user, time.time(), secrets.token_hex(8),
                     _process_start(os.getpid()))


def read_owner(folder: Path) -> tuple[LockOwner, float] | None:
    """The holder of *folder*'s lock and when it was last refreshed; None when unlocked
    (an unreadable lock file reads as held by an unknown process, refreshed at its mtime)."""
    path = Path(folder) / LOCK_FILE
    try:
        text = path.read_text(encoding="utf-8")
        refreshed = path.stat().st_mtime
    except FileNotFoundError:
        return None
    except OSError:
        return LockOwner(-1, "unknown host", "", 0.0, ""), time.time()
    try:
        data = json.loads(text)
        pid, since, start = int(data["pid"]), float(data["since"]), data.get("process_start")
        start = None if start is None else float(start)
        if not (0 < pid < 2**31 and math.isfinite(since) and abs(since) < 1e11
                and (start is None or math.isfinite(start))):
            raise ValueError("implausible values")
        owner = LockOwner(pid, str(data["host"]), str(data.get("user", "")), since, str(data["token"]), start)
    except (ValueError, KeyError, TypeError, AttributeError, OverflowError, RecursionError):
        owner = LockOwner(-1, "unknown host", "", refreshed, "")
    return owner, refreshed


def is_stale(owner: LockOwner, refreshed: float, *, now: float | None = None) -> bool:
    """Whether the holder is gone (see the module text). On this host the process
    table decides (a studio of a machine resumed from sleep has an old lock but
    still runs); for another host, or an unreadable lock, the age of the last refresh."""
    if owner.host == socket.gethostname() and owner.pid > 0:
        if not _running(owner.pid):
            return True
        started = _process_start(owner.pid)
        return owner.process_start is not None and started is not None and abs(started - owner.process_start) > 1
    now = time.time() if now is None else now
    return now - refreshed > STALE_AFTER_S


class ProjectLock:
    """This process's lock on the project in *folder*."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.owner = _me()
        self.held = False

    @property
    def path(self) -> Path:
        return self.folder / LOCK_FILE

    def acquire(self, *, take_over: bool = False) -> None:
        """Take the lock; a stale one (or any, with *take_over*) is replaced.

        Raises
        ------
        ProjectLockedError
            Another live studio holds it (and *take_over* is False), or took
            it over at the same moment.
        OSError, ExportError
            The lock file cannot be written (a read-only folder).
        """
        payload = (json.dumps(asdict(self.owner)) + "\n").encode("utf-8")
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            found = read_owner(self.folder)
            if found is not None:
                other, refreshed = found
                mine = other.pid == self.owner.pid and other.host == self.owner.host  # a window of ours
                if not mine and not take_over and not is_stale(other, refreshed):
                    raise ProjectLockedError(self.folder, other) from None
                if not mine:
                    log.warning("took over the lock of %s from %s%s", self.folder, other.describe(),
                                "" if take_over else " (it is no longer running)")
            atomic_write_bytes(self.path, payload)
            winner = read_owner(self.folder)  # two taking over at once: the last rename wins
            if winner is not None and winner[0].token != self.owner.token:
                raise ProjectLockedError(self.folder, winner[0]) from None
        else:
            with os.fdopen(fd, "wb") as handle:
                handle.write(payload)
        self.held = True

    def refresh(self) -> bool:
        """Mark the lock as alive (its modification time) and say whether it is
        still ours: False when another studio took it over (this one must stop
        writing). A lock file that vanished is made again."""
        if not self.held:
            return False
        found = read_owner(self.folder)
        if found is None:
            self.held = False
            try:
                self.acquire()
            except (ProjectLockedError, SegstudioError, OSError) as exc:
                log.warning("the lock of %s vanished and could not be taken again: %s", self.folder, exc)
                return False
            return True
        if found[0].token != self.owner.token:
            self.held = False
            log.warning("%s was taken over by %s", self.folder, found[0].describe())
            return False
        try:
            os.utime(self.path)
        except OSError as exc:
            log.warning("could not refresh the lock of %s: %s", self.folder, exc.strerror or exc)
        return True

    def release(self) -> None:
        """Remove the lock file if it is still ours (another studio may have taken it over)."""
        if not self.held:
            return
        self.held = False
        found = read_owner(self.folder)
        if found is not None and found[0].token == self.owner.token:
            try:
                self.path.unlink()
            except OSError as exc:
                log.warning("could not remove the lock of %s: %s", self.folder, exc.strerror or exc)
