"""The one shared definition of what channel pruning may touch, for both DepGraph pruning and Network Slimming.

Never pruned: every Ultralytics ``Detect`` head (``Detect`` and its subclasses ``Segment``, ``Pose``, ``OBB``,
``WorldDetect``), as whole module instances. Their outputs are the box distribution (``4 * reg_max``) and the class
scores (``nc``), which must keep their width. A head's *input* channels still shrink when the neck convolution that
feeds it is pruned: that group is rooted outside the head, and Torch-Pruning prunes the head's first convolutions'
input channels along with it.

Torch-Pruning 1.6 only honours ``nn.Module`` instances (and ``nn.Parameter``) in ``ignored_layers``; a class such as
``Detect`` is silently dropped, which would let the pruner cut the head's outputs. Hence instances here.

BatchNorms whose channels meet at a residual add (the Bottleneck shortcut inside ``C2f_v2``: ``cv1``'s BN and every
bottleneck ``cv2`` BN in the chain) are **prunable**. DepGraph puts all convolutions and BNs coupled by the add into
one group and removes the same channel indices from all of them, so the add stays consistent. A per-layer pruner
(such as a Network Slimming threshold applied BN by BN) must not cut them independently: it has to decide on the
coupled set jointly, e.g. by pruning through DepGraph groups. The L1 penalty itself is harmless on them, so sparse
training penalises exactly :func:`prunable_batchnorms`.
"""

from __future__ import annotations

from typing import List, Set, Tuple

import torch.nn as nn
from ultralytics.nn.modules.head import Detect


def ignored_layers(model: nn.Module) -> List[nn.Module]:
    """Return the module instances that pruning must leave intact: every ``Detect`` head inside ``model``.

    Args:
        model: An Ultralytics detection model (``DetectionModel``, or ``YOLO(...).model``).

    Returns:
        The head instances (usually one, ``model.model[-1]``), outermost only.
    """
    heads = [module for module in model.modules() if isinstance(module, Detect)]
    nested = {id(sub) for head in heads for sub in head.modules() if sub is not head}
    return [head for head in heads if id(head) not in nested]


def ignored_module_ids(model: nn.Module) -> Set[int]:
    """Return the ``id`` of every module inside an ignored layer, the ignored layers included."""
    return {id(sub) for layer in ignored_layers(model) for sub in layer.modules()}


def prunable_batchnorms(model: nn.Module) -> List[Tuple[str, nn.BatchNorm2d]]:
    """Return the BatchNorms that channel pruning may remove channels from, with their qualified names.

    These are all ``nn.BatchNorm2d`` outside :func:`ignored_layers`, including those coupled by residual adds (see
    the module docstring). Sparse training applies its L1 penalty to exactly these.

    Args:
        model: An Ultralytics detection model.

    Returns:
        ``(name, bn)`` pairs in ``named_modules`` order.
    """
    ignored = ignored_module_ids(model)
    return [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, nn.BatchNorm2d) and id(module) not in ignored
    ]


def prunable_convs(model: nn.Module) -> List[Tuple[str, nn.Conv2d]]:
    """Return the convolutions whose output channels pruning may remove, with their qualified names.

    Args:
        model: An Ultralytics detection model.

    Returns:
        ``(name, conv)`` pairs in ``named_modules`` order, for every ``nn.Conv2d`` outside :func:`ignored_layers`.
    """
    ignored = ignored_module_ids(model)
    return [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, nn.Conv2d) and id(module) not in ignored
    ]
