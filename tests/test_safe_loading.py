"""The restricted-loading check that the flows apply to every checkpoint a run writes (``safe_load_param_counts``)
really restricts: Ultralytics 8.4's ``ULTRALYTICS_SAFE_LOAD=1`` loads a stock model, and refuses the same model once
it holds a class outside Ultralytics' allow-list (the plugin's ``C2f_v2``, which no saved checkpoint may contain).

The flows that write the checkpoints check them: ``test_series_flows.py`` (detect, every family: ``pruned.pt``,
``step_1.pt``, the fine-tune's ``best.pt`` and ``last.pt``, a sparse-trained ``last.pt``) and ``test_task_flows.py``
(the same for segment, pose, obb and classify).
"""

from __future__ import annotations

import pytest

from run_checks import safe_load_param_counts, ultralytics_has_safe_load

pytestmark = pytest.mark.skipif(not ultralytics_has_safe_load(), reason="ULTRALYTICS_SAFE_LOAD arrived in 8.4")


def test_restricted_loading_takes_stock_classes_and_refuses_others(tmp_path):
    from ultralytics import YOLO

    from ultralytics_prune_plugin.nn.c2f_v2 import unsplit_blocks

    stock = YOLO("yolov8n.yaml")
    stock.save(tmp_path / "stock.pt")
    (count,) = safe_load_param_counts(tmp_path / "stock.pt", imgsz=64)
    assert count == sum(p.numel() for p in stock.model.parameters())

    converted = YOLO("yolov8n.yaml")
    assert unsplit_blocks(converted.model) > 0
    converted.save(tmp_path / "c2f_v2.pt")
    with pytest.raises(AssertionError, match="C2f_v2"):
        safe_load_param_counts(tmp_path / "c2f_v2.pt", imgsz=64)
