"""``segstudio evaluate`` on 16-bit masks (projects with more than 254 classes)."""

import argparse
import json

import numpy as np
import pytest

from segstudio import cli
from segstudio.commands import evaluate as evaluate_command
from segstudio.io.masks import default_palette, write_indexed_png, write_label_png

PALETTE = default_palette(301)


@pytest.fixture
def masks16(tmp_path):
    pred, gt = tmp_path / "pred", tmp_path / "gt"
    truth = np.zeros((10, 10), np.uint16)
    truth[:, 5:] = 300
    truth[:, 8:] = 255  # in a 16-bit mask 255 is a class
    truth[0, :] = 65535  # unlabelled row
    guess = np.zeros((10, 10), np.uint16)
    guess[:, 4:] = 300
    guess[:, 8:] = 255
    write_label_png(gt / "x.png", truth, PALETTE)
    write_label_png(pred / "x.png", guess, PALETTE)
    return pred, gt


def test_evaluate_scores_16_bit_masks_with_a_class_above_255(masks16, capsys):
    pred, gt = masks16
    assert cli.main(["evaluate", str(pred), str(gt), "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)
    # rows 1-9: class 0 truth 45 px, predicted 36 (all right); class 300 truth 27, predicted 36;
    # class 255 truth 18, all right
    assert scores["images"] == 1 and len(scores["iou"]) == 301
    assert scores["iou"][300] == pytest.approx(27 / 36)
    assert scores["iou"][0] == pytest.approx(36 / 45)
    assert scores["iou"][255] == 1.0
    assert scores["pixel_accuracy"] == pytest.approx(81 / 90)


def test_explicit_ignore_still_wins(masks16, capsys):
    pred, gt = masks16
    # ignoring class 255 leaves the 65535 row in, which no class of 301 covers: one line, exit 1
    assert cli.main(["evaluate", str(pred), str(gt), "--ignore", "255", "--num-classes", "301"]) == 1
    assert "65535" in capsys.readouterr().err
    assert cli.main(["evaluate", str(pred), str(gt), "--ignore", "65535", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["iou"][300] == pytest.approx(27 / 36)


def test_8_bit_ground_truth_still_ignores_255_against_a_16_bit_prediction(tmp_path, capsys):
    truth = np.array([[0, 1, 255], [1, 1, 0]], np.uint8)
    guess = np.array([[0, 1, 7], [1, 0, 0]], np.uint16)
    write_indexed_png(tmp_path / "gt" / "y.png", truth, PALETTE[:2])
    write_label_png(tmp_path / "pred" / "y.png", guess, PALETTE)
    assert cli.main(["evaluate", str(tmp_path / "pred"), str(tmp_path / "gt"), "--num-classes", "8",
                     "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert scores["iou"][:2] == pytest.approx([2 / 3, 2 / 3]) and scores["pixel_accuracy"] == pytest.approx(4 / 5)


def test_ignore_option_defaults_to_auto_and_takes_integers():
    parser = argparse.ArgumentParser()
    evaluate_command.add_parser(parser.add_subparsers())
    assert parser.parse_args(["evaluate", "p", "g"]).ignore == "auto"
    assert parser.parse_args(["evaluate", "p", "g", "--ignore", "AUTO"]).ignore == "auto"
    assert parser.parse_args(["evaluate", "p", "g", "--ignore", "0"]).ignore == 0
    with pytest.raises(SystemExit):
        parser.parse_args(["evaluate", "p", "g", "--ignore", "none"])
