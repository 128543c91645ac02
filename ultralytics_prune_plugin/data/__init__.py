"""Datasets for tests and benchmarks of the pruning plugin."""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .synthetic import make_dataset

__all__ = ["make_dataset"]


def __getattr__(name):
    # Lazy re-export: an eager ``from .synthetic import make_dataset`` makes
    # ``python -m ultralytics_prune_plugin.data.synthetic`` warn (runpy RuntimeWarning).
    if name == "make_dataset":
        from .synthetic import make_dataset

        return make_dataset
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
