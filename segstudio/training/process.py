"""Fine-tuning in a child process, so the window never waits on training.

:class:`TrainingProcess` starts :func:`~segstudio.training.loop.train_steps`
in a ``spawn``-ed process and talks to it through a queue (child -> parent)
and two events (parent -> child). Nothing here blocks: the window calls
:meth:`TrainingProcess.poll` from a timer and gets small dicts back.

The child gets file paths, not pixels (:class:`TrainJobSpec`), and reads the
images itself, so the window's process pickles no large arrays. This module
imports torch only inside the child (and in :func:`import_untrained_start`,
which builds a first model for a project that has none).

The job trains for the project's classes: a checkpoint made for other
classes (a class added, deleted or reordered since) is adapted in the child
with :func:`~segstudio.models.adapt.adapt_to_classes`.

Messages from the child (each a dict with a ``"type"``):

``started``
    ``pid``, ``train_images`` / ``val_images`` (the stems used),
    ``skipped`` (one line per file left out), ``threads``, ``device``,
    ``classes``: ``None``, or when the job's classes differ from the
    checkpoint's, ``{"kept", "new", "dropped", "reinitialised"}`` (class
    names, and the tensors left at their initialisation).
``progress``
    ``step``, ``total``, ``epoch``, ``loss``, ``lr``, ``images_per_s``,
    ``eta_s``; after every optimisation step.
``epoch``
    ``epoch``, ``total_steps`` (estimated from the pace under a time
    budget), ``loss``, ``val_mean_iou``, ``val_mean_dice`` (``None`` when
    not validated).
``paused`` / ``resumed``
    ``step``; the child is blocked between steps / carries on.
``log``
    ``level``, ``message``: the child's log records (INFO and up).
``scoring``
    The parent and the new model are being scored on the validation images.
``finished``
    ``status`` (``"finished"``, or ``"cancelled"`` when cancelled after at
    least one finished epoch), ``checkpoint`` (the new weights, in the run
    folder), ``history``, ``scores`` / ``parent_scores`` (per-class and mean
    IoU/Dice of the new model and of its parent on the validation images,
    ``None`` without validation images; ``parent_scores`` is ``None`` too
    when the classes changed), ``steps``, ``epochs_done``,
    ``stopped_early``, ``elapsed_s``, ``classes_changed`` and ``classes``
    (as in ``started``), ``collapse`` (the collapse check,
    :meth:`CollapseReport.to_dict <segstudio.training.collapse.CollapseReport.to_dict>`,
    or ``None`` for a cancelled run), and ``version_meta``, ready for
    :meth:`VersionStore.add <segstudio.training.versions.VersionStore.add>`.
``cancelled``
    Cancelled before any epoch finished: there is nothing to keep.
``error``
    ``message``, ``traceback`` and ``kind``: ``"user"`` (bad settings or
    data, the message says what to change), ``"oom"`` (out of memory),
    ``"bug"`` (anything else), or ``"crashed"`` (added by :meth:`poll` when
    the child died without a word: killed, segfault; the message gives the
    exit code).

``finished``, ``cancelled`` and ``error`` end a run; exactly one of them
comes from :meth:`poll` per run.

Frozen applications must call :func:`multiprocessing.freeze_support` at the
start of their entry point for ``spawn`` to work.
"""

from __future__ import annotations

import atexit
import logging
import multiprocessing
import queue as queue_module
import signal
import time
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segstudio.errors import DataError, InvalidArgumentError
from segstudio.io.project import Project
from segstudio.training.project_data import SampleSource, sources_from_project, split_for_validation
from segstudio.training.versions import VersionStore

log = logging.getLogger(__name__)

TERMINAL_TYPES = ("finished", "cancelled", "error")

from segstudio.training.child import (  # noqa: E402,F401  (re-exported)
    child_main,
    score_checkpoint,
    score_versions,
    thread_count,
)


@dataclass
class TrainJobSpec:
    """Everything a training process needs, as small picklable values.

    Attributes
    ----------
    base_checkpoint:
        The checkpoint to fine-tune (normally the active version's); its
        architecture, classes and preprocessing carry over.
    train, val:
        The image/label files to train and to validate on.
    config:
        A :class:`~segstudio.training.config.TrainConfig` or its
        :meth:`to_dict` (stored as the dict, so that the spec pickles without
        torch).
    out_dir:
        The run's folder (see :meth:`VersionStore.new_run_dir`).
    parent_id:
        The version id of ``base_checkpoint``, recorded as the new version's
        parent.
    threads:
        torch threads in the child; ``None`` leaves one core to the window
        (``min(torch default, cpu_count - 1)``, at least 1).
    class_names, class_colors:
        The project's classes (label value = index). ``None``: the
        checkpoint's. When they differ from the checkpoint's, the child
        gives the model these classes first
        (:func:`~segstudio.models.adapt.adapt_to_classes`: classes kept by
        name keep their outputs, new ones start fresh), checks the labels
        against them, and does not score the parent, which cannot predict
        them. Colours default to the checkpoint's for kept classes.
    fail_after_steps:
        For tests only: raise an unexpected error after this many steps.
    """

    base_checkpoint: Path
    train: Sequence[SampleSource]
    val: Sequence[SampleSource]
    config: Mapping[str, Any]
    out_dir: Path
    parent_id: str | None = None
    threads: int | None = None
    class_names: Sequence[str] | None = None
    class_colors: Sequence[Sequence[int]] | None = None
    fail_after_steps: int | None = None

    def __post_init__(self) -> None:
        if hasattr(self.config, "to_dict"):
            self.config = self.config.to_dict()
        self.config = dict(self.config)
        self.base_checkpoint = Path(self.base_checkpoint)
        self.out_dir = Path(self.out_dir)
        self.train = list(self.train)
        self.val = list(self.val)
        if not self.train:
            raise DataError("there are no training images: mark some images as corrected first")
        if self.threads is not None and (isinstance(self.threads, bool) or not isinstance(self.threads, int)
                                         or self.threads < 1):
            raise InvalidArgumentError(f"threads must be a positive integer, got {self.threads!r}")
        if self.class_names is not None:
            self.class_names = [str(name) for name in self.class_names]
            if not self.class_names:
                raise InvalidArgumentError("the project has no classes to train for")
        if self.class_colors is not None:
            self.class_colors = [tuple(int(v) for v in color) for color in self.class_colors]
            if self.class_names is None or len(self.class_colors) != len(self.class_names):
                raise InvalidArgumentError(
                    f"{len(self.class_colors)} class colours were given for "
                    f"{'no' if self.class_names is None else len(self.class_names)} class names"
                )

    @classmethod
    def for_project(
        cls,
        project: Project,
        store: VersionStore,
        config: Any,
        *,
        indices: Sequence[int] | None = None,
        val_stems: Sequence[str] | None = None,
        val_fraction: float = 0.2,
        threads: int | None = None,
    ) -> TrainJobSpec:
        """A job that fine-tunes the project's active version on its corrected images.

        The job trains for the project's classes (``project.classes``); a
        version made for other classes is adapted to them in the child.

        Parameters
        ----------
        project, store:
            The open project and its model versions.
        config:
            A :class:`~segstudio.training.config.TrainConfig` (its ``seed``
            also seeds the held-out choice) or its dict.
        indices:
            The images to use; ``None``: every corrected or reviewed one.
        val_stems, val_fraction:
            The validation images the user chose, or else the share held
            out (see :func:`~segstudio.training.project_data.split_for_validation`).
        threads:
            torch threads in the child (``None``: leave one core free).

        Raises
        ------
        InvalidArgumentError
            The project has no active model version.
        DataError
            No image is left to train on.
        """
        active = store.active_id
        if active is None:
            raise InvalidArgumentError("the project has no model version to fine-tune; load or import a model first")
        settings = config.to_dict() if hasattr(config, "to_dict") else dict(config)
        sources = sources_from_project(project, indices)
        train_index, val_index = split_for_validation(
            [s.stem for s in sources], val_stems=val_stems, val_fraction=val_fraction, seed=settings.get("seed", 0)
        )
        if not train_index:
            raise DataError("there are no training images: mark some images as corrected first")
        return cls(
            base_checkpoint=store.checkpoint_path(active), train=[sources[i] for i in train_index],
            val=[sources[i] for i in val_index], config=settings, out_dir=store.new_run_dir(),
            parent_id=active, threads=threads, class_names=list(project.classes.names),
            class_colors=list(project.classes.colors),
        )


def import_untrained_start(
    store: VersionStore,
    architecture: str,
    class_names: Sequence[str],
    class_colors: Sequence[Sequence[int]] | None = None,
    *,
    in_channels: int = 3,
    seed: int = 0,
) -> Any:
    """Store a freshly initialised model for a project's classes as a version.

    For a project that has no model yet: training then starts from random
    weights (no pretrained backbone is downloaded), with the architecture's
    default preprocessing for ``in_channels`` channels. The version is named
    ``"untrained start (<architecture>)"`` and its checkpoint's provenance
    says ``"untrained_start": true``; it becomes active when the project has
    no active version.

    Parameters
    ----------
    store:
        The project's versions.
    architecture:
        A registered model name (see :func:`segstudio.models.list_models`).
    class_names, class_colors:
        The project's classes (colours: the default palette when ``None``).
    in_channels:
        3 for RGB images.
    seed:
        Seeds the initialisation.

    Returns
    -------
    VersionInfo
        The new version.

    Raises
    ------
    InvalidArgumentError
        An unknown architecture, or no classes.
    ExportError
        The version cannot be written.
    """
    import tempfile

    import torch

    from segstudio.models import get_training_model
    from segstudio.models.checkpoint import make_meta, save_checkpoint

    if not class_names:
        raise InvalidArgumentError("the project has no classes to train for; add a class first")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        # the registry's training defaults (for U-Net: padded, BatchNorm, 16 channels)
        model = get_training_model(architecture, num_classes=len(class_names), in_channels=in_channels)
    meta = make_meta(model, class_names=list(class_names), class_colors=class_colors,
                     provenance={"untrained_start": True, "seed": seed})
    name = f"untrained start ({architecture})"
    with tempfile.TemporaryDirectory(prefix="segstudio-start-") as folder:
        path = save_checkpoint(Path(folder) / f"untrained-{architecture}.safetensors", model, meta)
        return store.import_checkpoint(path, name=name)


class TrainingProcess:
    """One training run in a child process: :meth:`start`, then :meth:`poll`
    from a timer. Every method returns at once except :meth:`join` and :meth:`stop`."""

    def __init__(self) -> None:
        self._process: multiprocessing.process.BaseProcess | None = None
        self._queue: Any = None
        self._cancel: Any = None
        self._running: Any = None
        self._pending: list[dict[str, Any]] = []
        self._ended = False  # a terminal message was handed out
        self._exit_hook = False

    # ------------------------------------------------------------------
    # Starting and steering
    # ------------------------------------------------------------------

    def start(self, spec: TrainJobSpec) -> None:
        """Launch the run.

        Raises
        ------
        InvalidArgumentError
            A run is still going in this object.
        """
        if self.is_alive():
            raise InvalidArgumentError("a training run is still going; cancel it first")
        self.close()
        context = multiprocessing.get_context("spawn")
        self._queue = context.Queue()
        self._cancel = context.Event()
        self._running = context.Event()
        self._running.set()
        self._pending = []
        self._ended = False
        # not a daemon: daemonic processes may not start DataLoader workers
        self._process = context.Process(
            target=child_main,
            args=(spec, self._queue, self._cancel, self._running),
            name="segstudio-training",
        )
        self._process.start()
        if not self._exit_hook:
            atexit.register(_stop_at_exit, weakref.ref(self))
            self._exit_hook = True
        log.info("training process %d started (run folder %s)", self._process.pid, spec.out_dir)

    def pause(self) -> None:
        """Hold the run before its next step (it then uses no CPU)."""
        if self._running is not None:
            self._running.clear()

    def resume(self) -> None:
        """Let a paused run go on."""
        if self._running is not None:
            self._running.set()

    def cancel(self) -> None:
        """Stop the run before its next step (a paused run is woken to stop)."""
        if self._cancel is not None:
            self._cancel.set()
            self._running.set()

    @property
    def paused(self) -> bool:
        """Whether :meth:`pause` is in force."""
        return self._running is not None and not self._running.is_set()

    # ------------------------------------------------------------------
    # Watching
    # ------------------------------------------------------------------

    def _drain(self) -> None:
        if self._queue is None:
            return
        while True:
            try:
                self._pending.append(self._queue.get_nowait())
            except queue_module.Empty:
                return
            except (EOFError, OSError, ValueError):
                # a child killed mid-message leaves a torn pickle behind
                return

    def poll(self) -> list[dict[str, Any]]:
        """The messages that arrived since the last call (never blocks).

        A child that ended without a ``finished`` / ``cancelled`` / ``error``
        message is reported once as ``{"type": "error", "kind": "crashed"}``.
        """
        if self._process is None:
            return []
        # read the state first: whatever the child sent before it ended is
        # in the pipe by the time it is seen dead
        alive = self._process.is_alive()
        self._drain()
        messages, self._pending = self._pending, []
        if any(m.get("type") in TERMINAL_TYPES for m in messages):
            self._ended = True
        if not alive and not self._ended:
            self._ended = True
            messages.append(_crash_message(self._process.exitcode))
        return messages

    def is_alive(self) -> bool:
        """Whether the child process is running."""
        return self._process is not None and self._process.is_alive()

    @property
    def pid(self) -> int | None:
        """The child's process id (``None`` before :meth:`start`)."""
        return None if self._process is None else self._process.pid

    @property
    def exitcode(self) -> int | None:
        """The child's exit code (negative: killed by that signal); ``None`` while it runs."""
        return None if self._process is None else self._process.exitcode

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the child to end, keeping its messages for :meth:`poll`.

        Returns
        -------
        bool
            Whether it has ended.
        """
        if self._process is None:
            return True
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            # draining while waiting: a child blocks on exit until its queue is read
            self._drain()
            left = 0.05 if deadline is None else min(0.05, deadline - time.monotonic())
            if left <= 0:
                break
            self._process.join(left)
            if not self._process.is_alive():
                break
        self._drain()
        return not self._process.is_alive()

    def stop(self, timeout: float = 5.0) -> bool:
        """Cancel, wait up to ``timeout`` seconds, then terminate; for closing the window.

        Returns
        -------
        bool
            Whether the child has ended.
        """
        if self._process is None or not self._process.is_alive():
            return True
        self.cancel()
        if self.join(timeout):
            return True
        log.warning("the training process %d did not stop in %.0f s; terminating it", self._process.pid, timeout)
        self._process.terminate()
        if self.join(2.0):
            return True
        self._process.kill()
        return self.join(2.0)

    def close(self) -> None:
        """Release the queue and process handles of an ended run."""
        if self._process is not None and self._process.is_alive():
            raise InvalidArgumentError("the training process is still running; stop it first")
        if self._queue is not None:
            self._queue.close()
            self._queue.join_thread()
        if self._process is not None:
            self._process.close()
        self._process = self._queue = None


def _stop_at_exit(ref: weakref.ReferenceType[TrainingProcess]) -> None:
    """Stop a forgotten run when the window's interpreter exits (multiprocessing
    would otherwise wait for it)."""
    process = ref()
    if process is not None and process.is_alive():
        process.stop(timeout=3.0)


def _crash_message(exitcode: int | None) -> dict[str, Any]:
    if exitcode is not None and exitcode < 0:
        try:
            how = f"killed by signal {signal.Signals(-exitcode).name}"
        except ValueError:
            how = f"killed by signal {-exitcode}"
    else:
        how = f"exit code {exitcode}"
    return {
        "type": "error",
        "kind": "crashed",
        "message": f"the training process ended unexpectedly ({how}); the active model is unchanged",
        "traceback": "",
        "exitcode": exitcode,
    }


# ----------------------------------------------------------------------
# The child's side
# ----------------------------------------------------------------------
