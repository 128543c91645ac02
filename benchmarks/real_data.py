"""The benchmark's real photographs: NEON airborne RGB orthophotos with hand-drawn tree-crown boxes.

The ``deepforest`` wheel on PyPI (MIT licence) ships them in ``deepforest/data/``. This script downloads the wheel
with ``pip download --no-deps`` (nothing of it is installed or committed), unpacks only the annotated photographs and
cuts them into 320-px tiles at their native 0.1 m per pixel with :func:`ultralytics_prune_plugin.data.voc_tiles
.make_tiled_dataset`:

* train: ``2019_YELL_2_528000_4978000_image_crop2`` (2299x2472 px, 574 crowns), ``OSBS_029`` and ``SOAP_061``
  (400x400 px, 61 and 37 crowns);
* val: ``2019_YELL_2_541000_4977000_image_crop`` (1249x1035 px, 279 crowns), a different flight line, so no pixel
  of a validation tile is in training.

One class, ``Tree`` (``SOAP_061`` labels its crowns ``Alive`` and ``Dead``; both become ``Tree``); crowns are about 15-60 px across, often touching: a small-object, crowded detection problem.

Usage::

    python benchmarks/real_data.py                  # builds runs/bench_real/data/trees/data.yaml if absent
    python benchmarks/real_data.py --root DIR       # elsewhere
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from ultralytics_prune_plugin.data.voc_tiles import make_tiled_dataset  # noqa: E402

WHEEL = "deepforest==2.1.0"
TRAIN = ("2019_YELL_2_528000_4978000_image_crop2", "OSBS_029", "SOAP_061")
VAL = ("2019_YELL_2_541000_4977000_image_crop",)
TILE = 320
DEFAULT_ROOT = ROOT / "runs" / "bench_real" / "data"


def fetch(cache: Path) -> Path:
    """Download the wheel (once) and unpack its annotated photographs; returns their folder."""
    images = cache / "deepforest_data"
    wanted = [f"{s}{ext}" for s in TRAIN + VAL for ext in (".png", ".xml")]
    if all((images / w).is_file() for w in wanted):
        return images
    wheels = cache / "wheels"
    if not list(wheels.glob("deepforest-*.whl")):
        wheels.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(wheels), WHEEL], check=True
        )
    wheel = sorted(wheels.glob("deepforest-*.whl"))[-1]
    images.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as zf:
        for name in wanted:
            (images / name).write_bytes(zf.read(f"deepforest/data/{name}"))
    return images


def build(root: Path = DEFAULT_ROOT) -> Path:
    """Fetch the photographs if needed and build (or reuse) the tiled dataset; returns its ``data.yaml``."""
    images = fetch(root)
    return make_tiled_dataset(
        root / "trees",
        train=[images / f"{s}.png" for s in TRAIN],
        val=[images / f"{s}.png" for s in VAL],
        tile=TILE,
        rename={"Alive": "Tree", "Dead": "Tree"},
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT, help=f"cache and output folder ({DEFAULT_ROOT})")
    print(build(parser.parse_args().root.resolve()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
