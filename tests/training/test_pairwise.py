"""The pairwise term that spreads sparse labels into unlabelled pixels along the image."""

import torch

from segstudio.training.losses import IGNORE_INDEX
from segstudio.training.pairwise import affinity_loss


def _scene():
    """A dark left half and a bright right half; one labelled column of each, the rest unlabelled."""
    intensity = torch.zeros(1, 32, 32)
    intensity[:, :, 16:] = 0.8
    target = torch.full((1, 32, 32), IGNORE_INDEX, dtype=torch.long)
    target[:, :, 2] = 0
    target[:, :, 29] = 1
    return intensity, target


def _logits(right_class_from: int, confidence: float = 8.0) -> torch.Tensor:
    """Class 0 left of a column, class 1 from it on."""
    logits = torch.zeros(1, 2, 32, 32)
    logits[:, 0, :, :right_class_from] = confidence
    logits[:, 1, :, right_class_from:] = confidence
    return logits


def test_labels_that_follow_the_image_cost_less_than_labels_that_cut_a_uniform_region():
    intensity, target = _scene()
    follows = affinity_loss(_logits(16), intensity, target)  # the class boundary on the intensity edge
    cuts = affinity_loss(_logits(6), intensity, target)  # class 1 leaks into the dark half
    assert follows < 0.2 * cuts


def test_fully_labelled_crops_give_nothing_and_unlabelled_pixels_are_pulled_towards_their_look_alikes():
    intensity, target = _scene()
    labelled = torch.zeros_like(target)
    labelled[:, :, 16:] = 1
    assert affinity_loss(_logits(6), intensity, labelled).item() == 0.0
    # a network sure only where the labels are: the unlabelled pixels are pulled towards the labelled
    # pixels that look like them, on each side of the intensity edge
    logits = torch.zeros(1, 2, 32, 32)
    logits[:, 0, :, 2] = 8.0
    logits[:, 1, :, 29] = 8.0
    logits.requires_grad_(True)
    affinity_loss(logits, intensity, target).backward()
    towards_0 = -logits.grad[0, 0] + logits.grad[0, 1]  # a descent step's change of logit 0 minus logit 1
    assert towards_0[16, 4] > 0 and towards_0[16, 5] > 0
    assert towards_0[16, 27] < 0 and towards_0[16, 26] < 0


def test_padding_takes_part_in_no_pair():
    intensity, target = _scene()
    inside = torch.ones(1, 32, 32, dtype=torch.bool)
    inside[:, :, :8] = False  # the crop reached past the image on the left
    logits = torch.zeros(1, 2, 32, 32)
    logits[:, 1, :, :8] = 8.0  # whatever is predicted on the padding
    logits[:, 0, :, 8:16] = 8.0
    logits[:, 1, :, 16:] = 8.0
    assert affinity_loss(logits, intensity, target, inside) < 0.1 * affinity_loss(logits, intensity, target)
