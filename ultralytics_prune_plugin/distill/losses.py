"""Logit distillation losses on head outputs: one definition for every Ultralytics series and task.

Detection-family heads (Detect, Segment, Pose, OBB and the end-to-end heads), per anchor:

* class scores: the Bernoulli KL divergence of the student's sigmoid scores from the teacher's, summed over classes,
  written as the soft-target BCE minus the teacher's own entropy, so that it is exactly 0 when the outputs agree;
* boxes: with DFL (``reg_max > 1``), the KL divergence of the student's softmax over the ``reg_max`` bins from the
  teacher's, averaged over the four sides; without DFL (YOLO26, ``reg_max = 1``: the box outputs are distances), the
  smooth-L1 distance between the outputs, averaged over the four sides.

Each anchor's term is weighted by the teacher's highest class probability, so that the background anchors, which
are the vast majority, do not drown the objects; the loss is the weighted mean (the weights are normalised by their
sum over the batch). End-to-end heads have two branches, and the loss is the mean of the two.

Classifiers: the KL divergence of the student's softmax from the teacher's at temperature
:data:`CLASSIFY_TEMPERATURE`, times its square (Hinton et al., 2015), averaged over the batch.

Everything is computed in float32.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch
import torch.nn.functional as F

from ultralytics_prune_plugin.distill.outputs import HeadOutputs

CLASSIFY_TEMPERATURE = 2.0  # softens the softmax of a classifier's logits; the loss is scaled by its square


def class_score_kl(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Per-anchor Bernoulli KL divergence of sigmoid class scores, summed over classes.

    Args:
        student: Student class logits ``[B, nc, N]``.
        teacher: Teacher class logits ``[B, nc, N]``.

    Returns:
        ``[B, N]``: ``sum_c KL(Bernoulli(σ(t_c)) || Bernoulli(σ(s_c)))``, 0 where the logits agree.
    """
    target = teacher.sigmoid()
    cross_entropy = F.binary_cross_entropy_with_logits(student, target, reduction="none")
    entropy = F.binary_cross_entropy_with_logits(teacher, target, reduction="none")
    return (cross_entropy - entropy).sum(1)


def box_distance(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Per-anchor distance between box outputs, averaged over the four sides.

    Args:
        student: Student box outputs ``[B, 4 * reg_max, N]``.
        teacher: Teacher box outputs of the same shape.

    Returns:
        ``[B, N]``: the KL divergence between the softmaxes over the ``reg_max`` bins (DFL), or, with ``reg_max = 1``,
        the smooth-L1 distance between the outputs.
    """
    b, channels, n = student.shape
    reg_max = channels // 4
    if reg_max == 1:
        return F.smooth_l1_loss(student, teacher, reduction="none").mean(1)
    log_s = student.view(b, 4, reg_max, n).log_softmax(2)
    log_t = teacher.view(b, 4, reg_max, n).log_softmax(2)
    return (log_t.exp() * (log_t - log_s)).sum(2).mean(1)


def detection_kd(student: HeadOutputs, teacher: HeadOutputs) -> torch.Tensor:
    """The detection-family distillation loss: the teacher-confidence-weighted mean over anchors, averaged over
    branches (see the module docstring)."""
    terms = []
    for (s_boxes, s_scores), (t_boxes, t_scores) in zip(student.branches, teacher.branches):
        s_boxes, s_scores, t_boxes, t_scores = (x.float() for x in (s_boxes, s_scores, t_boxes, t_scores))
        weight = t_scores.detach().sigmoid().amax(1)  # [B, N]: the teacher's confidence in each anchor
        per_anchor = class_score_kl(s_scores, t_scores) + box_distance(s_boxes, t_boxes)
        terms.append((per_anchor * weight).sum() / weight.sum().clamp_min(1e-9))
    return torch.stack(terms).mean()


def classification_kd(student: torch.Tensor, teacher: torch.Tensor, temperature: float = CLASSIFY_TEMPERATURE):
    """KL divergence of the student's softened softmax from the teacher's, times ``temperature**2``, batch mean.

    Args:
        student: Student logits ``[B, nc]``.
        teacher: Teacher logits ``[B, nc]``.
        temperature: The softmax temperature T.

    Returns:
        A scalar, 0 when the logits agree.
    """
    log_s = F.log_softmax(student.float() / temperature, dim=1)
    log_t = F.log_softmax(teacher.float() / temperature, dim=1)
    return F.kl_div(log_s, log_t, reduction="batchmean", log_target=True) * temperature**2


def distillation_loss(student: HeadOutputs, teacher: HeadOutputs) -> torch.Tensor:
    """The distillation loss between a student's and a teacher's head outputs, as a float32 scalar.

    Args:
        student: The student's outputs, with their autograd history.
        teacher: The teacher's outputs (computed without gradients), of the same layout.

    Returns:
        The loss: :func:`classification_kd` for classifiers, :func:`detection_kd` for detection-family heads.
    """
    device_type = (student.logits if student.is_classifier else student.branches[0][1]).device.type
    with torch.autocast(device_type, enabled=False) if device_type in ("cuda", "cpu") else nullcontext():
        if student.is_classifier:
            return classification_kd(student.logits, teacher.logits)
        return detection_kd(student, teacher)
