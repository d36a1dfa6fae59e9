"""``segstudio train`` end to end on a small generated folder."""

import argparse
import json
import logging

import cv2
import numpy as np
import pytest

from segstudio import cli
from segstudio.commands import train as train_command
from segstudio.errors import InvalidArgumentError
from segstudio.io.masks import default_palette, read_mask, write_indexed_png, write_label_png
from segstudio.models.checkpoint import load_checkpoint, read_meta
from segstudio.synthetic import CLASS_COLORS, generate_sample

SMALL_UNET = ["--model", "unet", "--model-arg", "base_width=8", "--model-arg", "depth=3",
              "--model-arg", "batch_norm=true", "--model-arg", 'padding="same"']


@pytest.fixture
def data(tmp_path):
    folder = tmp_path / "data"
    (folder / "images").mkdir(parents=True)
    for i in range(6):
        image, mask = generate_sample(i, 64, 72)
        cv2.imwrite(str(folder / "images" / f"img{i}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        write_indexed_png(folder / "masks" / f"img{i}.png", mask, CLASS_COLORS)
    # a corrupt image that has a mask, and an image without one
    (folder / "images" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    write_indexed_png(folder / "masks" / "corrupt.png", mask, CLASS_COLORS)
    cv2.imwrite(str(folder / "images" / "unlabelled.png"), image)
    return folder


def _args(data, out, *extra):
    return ["train", str(data), "--out", str(out), "--epochs", "2", "--crop", "48", "--batch-size", "2",
            "--device", "cpu", *extra]


def test_train_command_writes_checkpoints_and_history_and_reports_bad_files(data, tmp_path, caplog):
    out = tmp_path / "run"
    with caplog.at_level(logging.INFO):
        assert cli.main(_args(data, out, *SMALL_UNET)) == 0
    for name in ("last.safetensors", "best.safetensors", "history.json", "train_state.pt"):
        assert (out / name).is_file(), name
    history = json.loads((out / "history.json").read_text())
    assert [e["epoch"] for e in history["epochs"]] == [1, 2]
    assert history["skipped"] and "corrupt.png" in history["skipped"][0]
    assert len(history["train_images"]) + len(history["val_images"]) == 6
    assert len(history["val_images"]) == 1  # 20 % of 6, rounded
    assert "corrupt.png" in caplog.text and "unlabelled.png" in caplog.text
    epoch_lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("epoch ")]
    assert len(epoch_lines) == 2 and "val mIoU" in epoch_lines[0]
    model, meta = load_checkpoint(out / "last.safetensors")
    # no classes.json: classes from the masks, default names, RGB input because the images are RGB
    assert meta.num_classes == 3 and meta.in_channels == 3
    assert meta.class_names == ["background", "class 1", "class 2"]
    assert meta.arch_args["base_width"] == 8 and meta.arch_args["padding"] == "same"
    assert meta.provenance["data"] == str(data)

    # the folder now holds a run: starting over needs --resume (which finds it finished)
    assert cli.main(_args(data, out, *SMALL_UNET)) == 1
    assert cli.main(_args(data, out, *SMALL_UNET, "--resume")) == 0

    # fine-tuning from the checkpoint: the architecture comes from it
    tuned = tmp_path / "tuned"
    assert cli.main(_args(data, tuned, "--checkpoint", str(out / "best.safetensors"), "--freeze-backbone")) == 0
    assert read_meta(tuned / "last.safetensors").provenance["parent"] == str(out / "best.safetensors")
    caplog.clear()
    assert cli.main(_args(data, tmp_path / "x", "--checkpoint", str(out / "best.safetensors"),
                          "--model", "fcn8s")) == 1


def test_classes_json_names_classes_and_fixes_the_split(data, tmp_path):
    classes = {
        "classes": [{"name": n, "color": list(c)} for n, c in zip(["bg", "cyto", "nuc"], CLASS_COLORS)],
        "split": {"train": ["img0", "img1", "img2", "img3"], "val": ["img4", "img5"]},
    }
    (data / "classes.json").write_text(json.dumps(classes))
    out = tmp_path / "run"
    assert cli.main(_args(data, out, *SMALL_UNET, "--epochs", "1", "--loss", "dice_ce")) == 0
    history = json.loads((out / "history.json").read_text())
    assert history["val_images"] == ["img4", "img5"]
    assert history["train_images"] == ["img0", "img1", "img2", "img3"]
    meta = read_meta(out / "best.safetensors")
    assert meta.class_names == ["bg", "cyto", "nuc"]
    assert meta.class_colors == [tuple(c) for c in CLASS_COLORS]


def test_user_errors_are_one_line(data, tmp_path, capsys):
    assert cli.main(_args(tmp_path / "missing", tmp_path / "o", *SMALL_UNET)) == 1
    assert "no such data folder" in capsys.readouterr().err
    assert cli.main(_args(data, tmp_path / "o")) == 1
    assert "--model" in capsys.readouterr().err
    assert cli.main(_args(data, tmp_path / "o", "--model", "unet", "--model-arg", "colour")) == 1
    assert "KEY=VALUE" in capsys.readouterr().err
    assert cli.main(_args(data, tmp_path / "o", "--model", "unet", "--model-arg", "widht=3")) == 1
    assert "widht" in capsys.readouterr().err
    assert cli.main(_args(data, tmp_path / "o", *SMALL_UNET, "--lr", "-1")) == 1
    assert "lr" in capsys.readouterr().err


def test_parser_and_model_args():
    parser = argparse.ArgumentParser()
    train_command.add_parser(parser.add_subparsers())
    args = parser.parse_args(["train", "d", "--model", "unet", "--out", "o", "--model-arg", "base_width=16",
                              "--model-arg", "members=[\"fcn8s\", \"unet\"]", "--model-arg", "padding=same"])
    assert args.run is train_command.run and args.optimizer == "adamw" and args.loss == "auto"
    # with no length given, a run lasts the default minutes
    assert train_command.run_length(args) == (None, None, train_command.DEFAULT_MINUTES * 60)
    assert train_command.parse_model_args(args.model_arg) == {
        "base_width": 16, "members": ["fcn8s", "unet"], "padding": "same",
    }
    steps = parser.parse_args(["train", "d", "--out", "o", "--steps", "100", "--minutes", "2"])
    assert train_command.run_length(steps) == (None, 100, 120.0)
    both = parser.parse_args(["train", "d", "--out", "o", "--minutes", "2", "--time-budget", "60"])
    with pytest.raises(InvalidArgumentError, match="not both"):
        train_command.run_length(both)


def test_the_command_defaults_are_the_training_defaults():
    # the parser repeats them so that `segstudio --help` needs no torch: they must not drift apart
    from segstudio.models.checkpoint import NORMALIZATIONS
    from segstudio.training import TrainConfig

    parser = argparse.ArgumentParser()
    train_command.add_parser(parser.add_subparsers())
    args = parser.parse_args(["train", "d", "--out", "o"])
    defaults = TrainConfig()
    given = {"batch_size": args.batch_size, "crop_size": args.crop, "class_share": args.class_share,
             "optimizer": args.optimizer, "schedule": args.schedule, "warmup": args.warmup, "loss": args.loss,
             "affinity": args.affinity, "seed": args.seed, "val_every": args.val_every}
    assert given == {name: getattr(defaults, name) for name in given}
    normalize = next(a for a in parser._subparsers._group_actions[0].choices["train"]._actions
                     if a.dest == "normalize")
    assert tuple(normalize.choices) == NORMALIZATIONS


def test_normalisation_and_input_window_are_recorded_in_the_checkpoint():
    from segstudio.commands.train import _with_normalization
    from segstudio.models import get_model
    from segstudio.models.checkpoint import make_meta

    def args(**given):
        values = {"input_window": None, "normalize": None, "percentiles": None, "value_range": None}
        return argparse.Namespace(**{**values, **given})

    fresh = _with_normalization(make_meta(get_model("unet", base_width=4, depth=2)), args(), keep=False)
    assert fresh.preprocessing.normalization == "auto" and fresh.preprocessing.percentiles == (1.0, 99.8)
    meta = _with_normalization(make_meta(get_model("unet", base_width=4, depth=2)),
                               args(input_window="-600,1500", normalize="window"), keep=False)
    assert meta.preprocessing.input_window == (-600.0, 1500.0) and meta.preprocessing.normalization == "window"
    ranged = _with_normalization(make_meta(get_model("unet", base_width=4, depth=2)),
                                 args(normalize="range", value_range="100,4000"), keep=False)
    assert ranged.preprocessing.value_range == (100.0, 4000.0)
    with pytest.raises(InvalidArgumentError, match="value range"):
        _with_normalization(make_meta(get_model("unet", base_width=4, depth=2)), args(normalize="range"),
                            keep=False)
    # fine-tuning keeps the checkpoint's rule
    old = make_meta(get_model("unet", base_width=4, depth=2))
    old.preprocessing.normalization = "dtype"
    assert _with_normalization(old, args(), keep=True).preprocessing.normalization == "dtype"


@pytest.fixture
def data16(tmp_path):
    """Five images: four with 16-bit masks of classes 0, 255 and 299 (65535 = unlabelled) and one
    with an ordinary 8-bit mask (255 = unlabelled)."""
    folder = tmp_path / "data16"
    (folder / "images").mkdir(parents=True)
    for i in range(5):
        image, mask = generate_sample(i, 40, 40)
        cv2.imwrite(str(folder / "images" / f"img{i}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        if i == 4:
            mask = mask.copy()
            mask[:, :4] = 255
            write_indexed_png(folder / "masks" / f"img{i}.png", mask, CLASS_COLORS)
            continue
        labels = np.array([0, 255, 299], np.uint16)[mask]
        labels[:4] = 65535
        write_label_png(folder / "masks" / f"img{i}.png", labels, default_palette(300))
        assert read_mask(folder / "masks" / f"img{i}.png").dtype == np.uint16
    return folder


def test_train_command_on_16_bit_masks_trains_a_300_class_model(data16, tmp_path, capsys):
    out = tmp_path / "run16"
    assert cli.main(_args(data16, out, *SMALL_UNET, "--epochs", "1", "--crop", "32")) == 0
    history = json.loads((out / "history.json").read_text())
    assert len(history["train_images"]) + len(history["val_images"]) == 5 and not history["skipped"]
    assert history["epochs"][0]["train_loss"] > 0 and history["epochs"][0]["val_mean_iou"] is not None
    meta = read_meta(out / "last.safetensors")
    # classes from the masks: the highest is 299 (65535 and the 8-bit mask's 255 are unlabelled)
    assert meta.num_classes == 300 and len(meta.class_names) == 300

    # a classes.json with fewer classes: the error names the mask and its own unlabelled value
    classes = {"classes": [{"name": n, "color": list(c)} for n, c in zip(["bg", "a", "b"], CLASS_COLORS)]}
    (data16 / "classes.json").write_text(json.dumps(classes))
    capsys.readouterr()
    assert cli.main(_args(data16, tmp_path / "bad", *SMALL_UNET, "--epochs", "1", "--crop", "32")) == 1
    err = capsys.readouterr().err
    assert "img0.png" in err and "[255, 299]" in err and "(0..2; 65535 = unlabelled)" in err


def test_a_vgg_network_from_scratch_is_warned_about(data, tmp_path, caplog):
    out = tmp_path / "deeplab"
    args = ["train", str(data), "--out", str(out), "--model", "deeplab_largefov", "--steps", "1", "--crop", "32",
            "--batch-size", "1", "--device", "cpu", "--val-fraction", "0"]
    with caplog.at_level(logging.WARNING):
        assert cli.main(args) == 0
    warned = [r.getMessage() for r in caplog.records if "from scratch" in r.getMessage()]
    assert len(warned) == 1 and "weights_backbone=imagenet" in warned[0]
    # from its checkpoint, no such warning
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert cli.main([*args[:3], str(tmp_path / "tuned"), "--checkpoint", str(out / "last.safetensors"),
                         *args[6:]]) == 0
    assert not [r for r in caplog.records if "from scratch" in r.getMessage()]
