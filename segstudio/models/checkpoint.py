"""The one checkpoint format: safetensors weights with JSON metadata.

A checkpoint is a single ``.safetensors`` file. Its header's metadata holds
one JSON document under the key ``segstudio``: the architecture and builder
arguments, class names and colours, the input preprocessing, and provenance
(parent checkpoint, data, metrics, time). Keeping both in one file makes the
atomic write (temporary file, then rename) cover weights and metadata alike.

Foreign PyTorch pickles (``.pt`` / ``.pth``) are read only through
``torch.load(weights_only=True)``: a pickle that needs code to load is
refused, never executed.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from segstudio.errors import CheckpointError, CheckpointMismatchError, InvalidArgumentError, SegstudioError
from segstudio.io import limits
from segstudio.io.masks import MAX_CLASSES, default_palette, permissions_for
from segstudio.models.registry import get_model_for_weights, get_spec, model_size

FORMAT_VERSION = 1
METADATA_KEY = "segstudio"
PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin")
#: most input channels a checkpoint may declare (images have 1 or 3; a
#: multispectral stack a few more)
MAX_IN_CHANNELS = 1024


#: how pixel values become the network's 0..1 input (see :mod:`segstudio.preprocess`)
NORMALIZATIONS = ("auto", "percentile", "range", "window", "dtype")

#: the low and high percentiles of the percentile normalisation (those of
#: CSBDeep and StarDist, which microscopists know)
DEFAULT_PERCENTILES = (1.0, 99.8)


@dataclass
class Preprocessing:
    """How an image becomes the network's input tensor.

    First each image's values are mapped linearly to the 0..1 range by
    ``normalization``; then ``(x - mean) / std`` per channel.

    ``normalization``:

    * ``"auto"`` (what new models get): 8-bit images divided by 255; 16-bit,
      32-bit and float images stretched between their own ``percentiles``;
    * ``"percentile"``: every image between its own ``percentiles``;
    * ``"range"``: the fixed ``value_range`` ``(low, high)`` to 0..1, clipped;
    * ``"window"``: the CT/MR window ``input_window`` (centre, width, in the
      data's units) to 0..1, clipped, as DICOM's LINEAR window function;
    * ``"dtype"``: integers divided by their type's maximum, floats as they
      are. Checkpoints written before the choice was recorded read as this,
      so they keep the behaviour they were trained with.

    A volume is one image here: its percentiles come from the whole volume,
    so every slice is mapped alike. ``input_window`` also fixes how volume
    slices become the model's input (``"range"`` takes none); without
    it, a ``"dtype"`` checkpoint's volume input follows the window the user
    views with (the old behaviour), and no other mode looks at the display.
    """

    channel_order: str = "RGB"
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)
    input_window: tuple[float, float] | None = None
    normalization: str = "auto"
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES
    value_range: tuple[float, float] | None = None


def check_preprocessing(preprocessing: Preprocessing) -> None:
    """Raise :class:`InvalidArgumentError` for a normalisation that cannot work."""
    mode = preprocessing.normalization
    if mode not in NORMALIZATIONS:
        raise InvalidArgumentError(f"normalization must be one of {', '.join(NORMALIZATIONS)}, got {mode!r}")
    low, high = (float(v) for v in preprocessing.percentiles)
    if not 0.0 <= low < high <= 100.0:
        raise InvalidArgumentError(f"percentiles must satisfy 0 <= low < high <= 100, got {low}, {high}")
    if mode == "range":
        if preprocessing.value_range is None:
            raise InvalidArgumentError("normalization 'range' needs a value range (low, high)")
        lo, hi = (float(v) for v in preprocessing.value_range)
        if not (math.isfinite(lo) and math.isfinite(hi) and hi > lo):
            raise InvalidArgumentError(f"the value range must be two finite numbers, low < high, got {lo}, {hi}")
        if preprocessing.input_window is not None:
            raise InvalidArgumentError("normalization 'range' maps a fixed value range and takes no input window; "
                                       "use 'window' for a CT/MR window")
    if mode == "window":
        if preprocessing.input_window is None:
            raise InvalidArgumentError("normalization 'window' needs an input window (centre, width)")
    if preprocessing.input_window is not None:
        center, width = (float(v) for v in preprocessing.input_window)
        if not (math.isfinite(center) and math.isfinite(width) and width >= 1.0):
            raise InvalidArgumentError(f"the input window needs a finite centre and a width of at least 1, "
                                       f"got {center}, {width}")


@dataclass
class CheckpointMeta:
    """Everything in a checkpoint besides the weights."""

    architecture: str
    arch_args: dict[str, Any]
    class_names: list[str]
    class_colors: list[tuple[int, int, int]]
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    provenance: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    @property
    def num_classes(self) -> int:
        return int(self.arch_args["num_classes"])

    @property
    def in_channels(self) -> int:
        return int(self.arch_args["in_channels"])

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str, *, path: Path) -> CheckpointMeta:
        """Parse and check a checkpoint's metadata; every problem is a
        :class:`CheckpointError` naming *path*."""
        try:
            data = json.loads(text)
        except RecursionError:
            raise CheckpointError("the checkpoint's metadata is damaged (nested too deeply)", path=path) from None
        except ValueError as exc:
            raise CheckpointError(f"the checkpoint's metadata is damaged ({exc})", path=path) from None
        if not isinstance(data, dict):
            raise CheckpointError("the checkpoint's metadata is damaged (not a JSON object)", path=path)
        version = data.get("format_version", FORMAT_VERSION)
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise CheckpointError(f"the checkpoint's metadata is damaged (format_version {version!r} "
                                  "is not a whole number from 1)", path=path)
        if version > FORMAT_VERSION:
            raise CheckpointError(
                f"checkpoint format {version} is newer than this segstudio "
                f"understands ({FORMAT_VERSION}); update segstudio",
                path=path,
            )
        try:
            if not isinstance(data.get("preprocessing"), dict) or not isinstance(data.get("class_colors"), list):
                raise TypeError("'preprocessing' must be an object and 'class_colors' a list")
            values = {k: tuple(v) if isinstance(v, list) else v for k, v in data["preprocessing"].items()}
            # written before the normalisation was recorded: those models saw
            # integer pixels divided by their type's maximum
            values.setdefault("normalization", "dtype")
            data["preprocessing"] = Preprocessing(**values)
            data["class_colors"] = [tuple(c) if isinstance(c, list) else c for c in data["class_colors"]]
            meta = cls(**data)
        except (ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(f"the checkpoint's metadata is damaged ({exc})", path=path) from None
        problem = _meta_problem(meta)
        if problem is not None:
            raise CheckpointError(f"the checkpoint's metadata is damaged ({problem})", path=path)
        try:
            check_preprocessing(meta.preprocessing)
        except InvalidArgumentError as exc:
            raise CheckpointError(f"the checkpoint's preprocessing is damaged: {exc.problem}", path=path) from None
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"the checkpoint's preprocessing is damaged ({exc})", path=path) from None
        return meta


def _is_count(value: Any, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _are_numbers(values: Any) -> bool:
    return isinstance(values, tuple) and len(values) > 0 and all(
        isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in values)


def _meta_problem(meta: CheckpointMeta) -> str | None:
    """What is wrong with parsed metadata, in words, or ``None``.

    Checked here, once, so that nothing later (the builder, the predictor, a
    project's class list) meets a string where a count belongs.
    """
    if not isinstance(meta.architecture, str):
        return f"architecture {meta.architecture!r} is not a name"
    args = meta.arch_args
    if not isinstance(args, dict):
        return "arch_args must be an object"
    if not _is_count(args.get("num_classes"), 1, MAX_CLASSES):
        return f"num_classes must be a whole number from 1 to {MAX_CLASSES}, got {args.get('num_classes')!r}"
    if not _is_count(args.get("in_channels"), 1, MAX_IN_CHANNELS):
        return f"in_channels must be a whole number from 1 to {MAX_IN_CHANNELS}, got {args.get('in_channels')!r}"
    count = args["num_classes"]
    names = meta.class_names
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        return f"class_names must be a list of names, got {_short(names)}"
    colors = meta.class_colors
    if not all(isinstance(c, tuple) and len(c) == 3 and all(_is_count(v, 0, 255) for v in c) for c in colors):
        return "class_colors must be a list of [red, green, blue] values 0..255"
    if len(names) != count or len(colors) != count:
        return f"{count} classes but {len(names)} class names and {len(colors)} colours"
    pre = meta.preprocessing
    if not isinstance(pre.channel_order, str):
        return f"preprocessing channel_order {pre.channel_order!r} is not a name"
    channels = args["in_channels"]
    if not (_are_numbers(pre.mean) and _are_numbers(pre.std) and len(pre.mean) == len(pre.std) == channels):
        return (f"preprocessing mean and std must be {channels} finite number(s) each, "
                f"got {_short(pre.mean)} and {_short(pre.std)}")
    if any(v == 0 for v in pre.std):
        return f"preprocessing std must not be zero, got {pre.std}"
    if not isinstance(meta.provenance, dict):
        return f"provenance must be an object, got {_short(meta.provenance)}"
    return None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def default_class_names(num_classes: int) -> list[str]:
    return ["background"] + [f"class {i}" for i in range(1, num_classes)]


def default_class_colors(num_classes: int) -> list[tuple[int, int, int]]:
    """Distinct colours, background black (the PASCAL VOC scheme), one per
    class up to the most classes a project holds (cycling beyond)."""
    palette = default_palette(max(1, min(num_classes, MAX_CLASSES)))
    return [palette[i % len(palette)] for i in range(num_classes)]


def make_meta(
    model: nn.Module,
    *,
    class_names: Sequence[str] | None = None,
    class_colors: Sequence[tuple[int, int, int]] | None = None,
    preprocessing: Preprocessing | None = None,
    provenance: Mapping[str, Any] | None = None,
) -> CheckpointMeta:
    """Metadata for a model built by :func:`segstudio.models.get_model`."""
    arch = getattr(model, "segstudio_arch", None)
    if arch is None:
        raise CheckpointError("this model was not built through the registry; its architecture is unknown")
    args = dict(arch["args"])
    num_classes = int(args["num_classes"])
    names = list(class_names) if class_names is not None else default_class_names(num_classes)
    colors = [tuple(int(v) for v in c) for c in class_colors] if class_colors else default_class_colors(num_classes)
    if len(names) != num_classes or len(colors) != num_classes:
        raise CheckpointMismatchError(
            f"the model has {num_classes} classes but {len(names)} names and {len(colors)} colours were given"
        )
    if preprocessing is None:
        spec = get_spec(arch["name"])
        channels = int(args["in_channels"])
        mean = spec.mean if len(spec.mean) == channels else (sum(spec.mean) / len(spec.mean),) * channels
        std = spec.std if len(spec.std) == channels else (sum(spec.std) / len(spec.std),) * channels
        preprocessing = Preprocessing("RGB" if channels == 3 else "grey", tuple(mean), tuple(std))
    info = {"created": datetime.now(UTC).isoformat(timespec="seconds")}
    info.update(provenance or {})
    return CheckpointMeta(arch["name"], _jsonable(args), names, colors, preprocessing, info)


def _jsonable(args: Mapping[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in args.items()}


def save_checkpoint(path: str | os.PathLike[str], model: nn.Module, meta: CheckpointMeta) -> Path:
    """Write ``model``'s weights and ``meta`` atomically to ``path``.

    The file is written next to its destination under a temporary name,
    flushed to disk, then renamed over the destination, so a crash leaves
    either the old checkpoint or the new one, never a broken file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {name: t.detach().to("cpu").contiguous() for name, t in model.state_dict().items()}
    mode = permissions_for(path)  # mkstemp's private 0600 would stick otherwise
    handle, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    try:
        save_file(tensors, tmp_name, metadata={METADATA_KEY: meta.to_json()})
        os.chmod(tmp_name, mode)
        with open(tmp_name, "rb") as written:
            os.fsync(written.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path


def read_meta(path: str | os.PathLike[str]) -> CheckpointMeta:
    """Read only a checkpoint's metadata (cheap: the weights stay on disk)."""
    path = _existing(path)
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"not a readable safetensors checkpoint ({exc})", path=path) from None
    if METADATA_KEY not in metadata:
        raise CheckpointError(
            "safetensors file without segstudio metadata; load it into a chosen architecture instead",
            path=path,
        )
    return CheckpointMeta.from_json(metadata[METADATA_KEY], path=path)


def load_checkpoint(
    path: str | os.PathLike[str],
    *,
    architecture: str | None = None,
    num_classes: int | None = None,
    in_channels: int | None = None,
) -> tuple[nn.Module, CheckpointMeta]:
    """Rebuild the model stored in a segstudio checkpoint.

    ``architecture``, ``num_classes`` and ``in_channels``, when given, are
    what the caller expects; a checkpoint made for anything else is refused
    with an error naming the mismatch.
    """
    meta = read_meta(path)
    path = Path(path)
    expected = {"architecture": architecture, "number of classes": num_classes, "input channels": in_channels}
    found = {"architecture": meta.architecture, "number of classes": meta.num_classes, "input channels": meta.in_channels}
    for what, want in expected.items():
        if want is not None and want != found[what]:
            raise CheckpointMismatchError(
                f"checkpoint is for {what} {found[what]!r}, but {want!r} was expected", path=path
            )
    model = build_model(meta, path)
    load_weights(model, path)
    return model, meta


def build_model(meta: CheckpointMeta, path: str | os.PathLike[str]) -> nn.Module:
    """The network *meta* describes, with fresh weights, ready for the checkpoint's state dict.

    Its size is worked out first on PyTorch's ``meta`` device (nothing is
    allocated) and refused when its weights would not fit the memory limit
    (:mod:`segstudio.io.limits`). Pretrained weights are never requested,
    whatever the metadata says: the checkpoint's own weights replace them, and
    loading a file must not need the network.

    Raises
    ------
    CheckpointError
        The architecture or its arguments are not valid, or the model is too
        large; the message names *path*.
    """
    try:
        spec = get_spec(meta.architecture)
        weight_bytes, parameters = model_size(spec.name, **meta.arch_args)
    except SegstudioError as exc:
        raise CheckpointError(f"the checkpoint's model cannot be built: {exc.problem}", path=path) from None
    except (TypeError, ValueError, RuntimeError, OverflowError, MemoryError) as exc:
        # a builder meeting a value of the wrong kind (a width of 1e6, a list where a name belongs)
        raise CheckpointError(f"the checkpoint's model arguments are damaged ({_short(str(exc))})",
                              path=path) from None
    limits.check_bytes(weight_bytes, path, f"its {spec.name} model ({parameters:,} parameters)",
                       error=CheckpointError)
    try:
        return get_model_for_weights(spec.name, **meta.arch_args)
    except SegstudioError as exc:
        raise CheckpointError(f"the checkpoint's model cannot be built: {exc.problem}", path=path) from None


def load_weights(model: nn.Module, path: str | os.PathLike[str]) -> CheckpointMeta | None:
    """Load weights from ``path`` into an existing ``model``.

    A segstudio checkpoint is checked against the model's architecture,
    classes and input channels first. A bare safetensors file or a PyTorch
    pickle is matched tensor by tensor. Returns the metadata when the file
    has any.
    """
    path = _existing(path)
    meta = None
    if path.suffix.lower() == ".safetensors":
        try:
            meta = read_meta(path)
        except CheckpointError as exc:
            if "without segstudio metadata" not in exc.problem:
                raise
        if meta is not None:
            _check_meta_matches(model, meta, path)
        _check_shapes(model, _safetensors_shapes(path), path)  # before any tensor is read
        try:
            state = load_file(str(path))
        except (SafetensorError, OSError) as exc:
            raise CheckpointError(f"weights cannot be read ({exc})", path=path) from None
    elif path.suffix.lower() in PICKLE_SUFFIXES:
        state = _load_pickle_state(path)
    else:
        raise CheckpointError(
            f"unknown checkpoint type {path.suffix!r}; use .safetensors (or a PyTorch .pt/.pth state dict)",
            path=path,
        )
    _load_state(model, state, path)
    return meta


def _check_meta_matches(model: nn.Module, meta: CheckpointMeta, path: Path) -> None:
    arch = getattr(model, "segstudio_arch", None)
    if arch is None:
        return
    args = arch["args"]
    if meta.architecture != arch["name"]:
        raise CheckpointMismatchError(
            f"checkpoint is a {meta.architecture!r} model, not {arch['name']!r}", path=path
        )
    for key, what in (("num_classes", "classes"), ("in_channels", "input channels")):
        if int(meta.arch_args[key]) != int(args[key]):
            raise CheckpointMismatchError(
                f"checkpoint has {meta.arch_args[key]} {what}, the model has {args[key]}", path=path
            )
    differing = sorted(k for k in args if k in meta.arch_args and _jsonable({k: args[k]})[k] != meta.arch_args[k])
    if differing:
        details = ", ".join(f"{k}={meta.arch_args[k]!r} (model: {args[k]!r})" for k in differing)
        raise CheckpointMismatchError(f"checkpoint was built with {details}", path=path)


def _load_pickle_state(path: Path) -> Mapping[str, torch.Tensor]:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else "unsafe content"
        raise CheckpointError(
            "refused: this pickle needs code to load, and loading it could run that code "
            f"({first_line}). Save the state_dict alone (torch.save(model.state_dict(), ...)) "
            "or convert it to safetensors",
            path=path,
        ) from None
    except (RuntimeError, OSError, EOFError, ValueError) as exc:
        raise CheckpointError(f"not a readable PyTorch file ({exc})", path=path) from None
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError("the file does not hold a state dict of tensors", path=path)
    # weights saved from DataParallel / DistributedDataParallel carry a prefix
    return {k.removeprefix("module."): v for k, v in obj.items()}


def _safetensors_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """The tensor names and shapes a safetensors file declares (its header alone)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            return {name: tuple(handle.get_slice(name).get_shape()) for name in handle.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"weights cannot be read ({exc})", path=path) from None


def _load_state(model: nn.Module, state: Mapping[str, torch.Tensor], path: Path) -> None:
    _check_shapes(model, {name: tuple(tensor.shape) for name, tensor in state.items()}, path)
    with torch.no_grad():
        model.load_state_dict(state, strict=True)


def _check_shapes(model: nn.Module, shapes: Mapping[str, tuple[int, ...]], path: Path) -> None:
    own = model.state_dict()
    missing = sorted(set(own) - set(shapes))
    unexpected = sorted(set(shapes) - set(own))
    wrong = [k for k in own if k in shapes and tuple(own[k].shape) != shapes[k]]
    if missing or unexpected or wrong:
        parts = []
        if wrong:
            k = wrong[0]
            parts.append(
                f"{len(wrong)} tensor(s) differ in shape, e.g. {k}: file {shapes[k]}, "
                f"model {tuple(own[k].shape)}"
            )
        if missing:
            parts.append(f"{len(missing)} missing, e.g. {missing[0]}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected, e.g. {unexpected[0]}")
        raise CheckpointMismatchError(
            "weights do not fit this architecture: " + "; ".join(parts), path=path
        )


def _existing(path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError("no such checkpoint file", path=path)
    if path.stat().st_size == 0:
        raise CheckpointError("the checkpoint file is empty", path=path)
    return path
