"""The top layer: how the plugin enters Ultralytics.

Activation (:mod:`.activation`), the registration in Ultralytics (:mod:`.registration`: modes, keys, checks, model
methods, trainers, the exporter's ``fast_dfl``), the ``yolo`` command line (:mod:`.cli`, :mod:`.cli_checks`: help,
``yolo cfg``, one-line errors, the resume arguments) and the ``Model.prune()`` / ``Model.sparse()`` methods
(:mod:`.api`). Nothing below this package imports it; the layers are checked by ``.importlinter`` at the repository
root (``tests/test_layers.py``).
"""
