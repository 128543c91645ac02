"""Deployment benchmark: each checkpoint exported FP32 and INT8 to ONNX and OpenVINO, validated, sized and timed.

Usage::

    python benchmarks/deploy.py stock=best.pt pruned_macs=pruned.pt --data data.yaml [--imgsz 640] [--val-imgsz 320]
        [--threads 1 all] [--formats onnx openvino] [--no-int8] [--runs 30] [--note "..."]

For each ``label=checkpoint.pt``, and each format and precision:

* the artefact is exported by Ultralytics' own exporter (``deploy/artefacts.export_artefact``; INT8 calibrated on the
  training split of ``--data``: ONNX Runtime's static QDQ for ONNX, NNCF for OpenVINO) once at ``--val-imgsz``
  (default: the checkpoint's training size) and, when it differs, once more at ``--imgsz``, because the artefacts
  have a static input;
* the ``--val-imgsz`` artefact is validated on the val split of ``--data`` by Ultralytics' validator running it in
  its own runtime (mAP50-95, mAP50); the ``--imgsz`` artefact's size is reported in MiB;
* then, per thread setting, ALL ``--imgsz`` artefacts of all checkpoints are opened in their native runtime (ONNX
  files in ONNX Runtime, OpenVINO folders in OpenVINO) and timed interleaved in this one process at batch 1
  (``deploy/latency.time_models``), threads set in the runtime (``intra_op_num_threads``, ``INFERENCE_NUM_THREADS``),
  ``all`` being every logical CPU of the machine. Speed-up is against the reference checkpoint's (``--reference``,
  default ``stock``) FP32 artefact in the same runtime and thread setting.

Writes ``results_deploy.json``, ``results_deploy.md`` and ``results_deploy_map_vs_latency.png`` beside this script
(``--out`` changes the stem); the exported artefacts and validation runs go to ``--work`` (default
``runs/bench_deploy/<date>``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, List, Optional

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from ultralytics_prune_plugin.deploy.artefacts import (  # noqa: E402
    FORMATS,
    artefact_size_mib,
    export_artefact,
    validate_artefact,
)
from ultralytics_prune_plugin.deploy.latency import time_models  # noqa: E402

PRECISIONS = ("fp32", "int8")


def _cpu() -> Dict[str, str]:
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    name = next((ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("model name")), "")
    flags_line = next((ln for ln in text.splitlines() if ln.startswith("flags")), "")
    have = set(flags_line.split(":", 1)[1].split()) if ":" in flags_line else set()
    flags = {f: f in have for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni")}
    return {"cpu": name or platform.processor(), "flags": flags, "cores": str(os.cpu_count())}


def _versions() -> Dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("torch", "ultralytics", "onnxruntime", "openvino", "nncf", "onnx"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def _train_imgsz(weights: Path) -> int:
    """The checkpoint's training image size (``train_args.imgsz``), 640 when it does not say."""
    import torch

    ckpt = torch.load(str(weights), map_location="cpu", weights_only=False)
    size = (ckpt.get("train_args") or {}).get("imgsz", 640)
    return int(size[0] if isinstance(size, (list, tuple)) else size)


def _threads(values: List[str]) -> List[Dict[str, Any]]:
    out = []
    for value in values:
        if value == "all":
            out.append({"name": "all", "threads": os.cpu_count() or 1})
        else:
            n = int(value)
            if n < 1:
                raise SystemExit(f"--threads: {value!r} is not a count >= 1 or 'all'")
            out.append({"name": str(n), "threads": n})
    return out


def _parse_models(items: List[str]) -> Dict[str, Path]:
    models: Dict[str, Path] = {}
    for item in items:
        label, sep, path = item.partition("=")
        if not sep or not label or not path:
            raise SystemExit(f"expected label=checkpoint.pt, got {item!r}")
        if label in models:
            raise SystemExit(f"label {label!r} given twice")
        if not Path(path).is_file():
            raise SystemExit(f"{label}: checkpoint not found: {path}")
        models[label] = Path(path).resolve()
    return models


def _export_all(models: Dict[str, Path], args, work: Path, record: Dict[str, Any], save) -> List[Dict[str, Any]]:
    """Export, validate and size every artefact; return one row per artefact."""
    from ultralytics_prune_plugin.report.console import SPEED, hidden

    rows: List[Dict[str, Any]] = []
    precisions = PRECISIONS if args.int8 else ("fp32",)
    for label, weights in models.items():
        val_imgsz = args.val_imgsz or _train_imgsz(weights)
        for fmt in args.formats:
            for precision in precisions:
                int8 = precision == "int8"
                folder = work / label
                folder.mkdir(parents=True, exist_ok=True)
                row: Dict[str, Any] = {"label": label, "checkpoint": str(weights), "format": fmt,
                                       "precision": precision, "runtime": FORMATS[fmt][1], "val_imgsz": val_imgsz,
                                       "imgsz": args.imgsz}
                start = time.perf_counter()
                val_path = export_artefact(weights, fmt, val_imgsz, folder, stem=f"{label}_{precision}_{val_imgsz}",
                                           int8=int8, data=args.data if int8 else None, fast_dfl=args.fast_dfl)
                time_path = val_path if val_imgsz == args.imgsz else export_artefact(
                    weights, fmt, args.imgsz, folder, stem=f"{label}_{precision}_{args.imgsz}", int8=int8,
                    data=args.data if int8 else None, fast_dfl=args.fast_dfl)
                row["export_s"] = round(time.perf_counter() - start, 1)
                row.update(val_path=str(val_path), path=str(time_path), size_mib=artefact_size_mib(time_path))
                start = time.perf_counter()
                with hidden(SPEED):
                    metrics = validate_artefact(val_path, args.data, val_imgsz, project=str(work / "val"),
                                                name=f"{label}_{fmt}_{precision}", plots=False, verbose=False)
                row.update(map50_95=float(metrics["map50_95"]), map50=float(metrics["map50"]),
                           val_backend=metrics["backend"], val_s=round(time.perf_counter() - start, 1))
                print(f"deploy: {label} {fmt} {precision}: mAP50-95 {row['map50_95']:.4f} at {val_imgsz} px, "
                      f"{row['size_mib']:.2f} MiB, export {row['export_s']} s", flush=True)
                rows.append(row)
                record["artefacts"] = rows
                save()
    return rows


def _key(row: Dict[str, Any]) -> str:
    return f"{row['label']}/{row['format']}/{row['precision']}"


def _time_all(rows: List[Dict[str, Any]], args, settings, reference: str, record, save) -> None:
    """Time all artefacts interleaved in one process per thread setting; speed-up vs the reference's FP32."""
    timing: Dict[str, Any] = {}
    for setting in settings:
        load_before = os.getloadavg()
        start = time.perf_counter()
        latency = time_models({_key(r): (r["runtime"], r["path"]) for r in rows}, args.imgsz, runs=args.runs,
                              warmup=args.warmup, threads=setting["threads"], alternate=True)
        entries = {}
        for row in rows:
            ref = f"{reference}/{row['format']}/fp32"
            lat = latency[_key(row)]
            entries[_key(row)] = {**lat, "speedup": latency[ref]["median_ms"] / lat["median_ms"],
                                  "speedup_min": latency[ref]["min_ms"] / lat["min_ms"]}
        timing[setting["name"]] = {"threads": setting["threads"], "load_before": [round(x, 2) for x in load_before],
                                   "load_after": [round(x, 2) for x in os.getloadavg()],
                                   "seconds": round(time.perf_counter() - start, 1), "latency": entries}
        print(f"deploy: timed {len(rows)} artefacts at {setting['threads']} thread(s) in "
              f"{timing[setting['name']]['seconds']} s", flush=True)
        record["timing"] = timing
        save()


def _markdown(record: Dict[str, Any]) -> str:
    machine, versions, a = record["machine"], record["versions"], record["args"]
    flags = ", ".join(f"{f} {'yes' if v else 'no'}" for f, v in machine["flags"].items())
    lines = [
        "# Deployment benchmark: ONNX Runtime and OpenVINO, FP32 and INT8",
        "",
        f"`{record['command']}`",
        "",
        f"- Machine: {machine['cpu']}, {machine['cores']} logical CPUs; flags: {flags}.",
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + ".",
        f"- Date: {record['updated']} (total {record.get('total_s', '?')} s).",
        f"- mAP: each artefact exported at {a['val_imgsz'] or 'the training size'} px and validated there by "
        f"Ultralytics' validator in its own runtime on the val split of `{a['data']}`. Latency: "
        + (f"the same checkpoint exported again at {a['imgsz']} px (INT8 calibrated again at that size), " if
           a['val_imgsz'] and a['val_imgsz'] != a['imgsz'] else f"the same artefact at {a['imgsz']} px, ")
        + f"batch 1, fixed random input, {a['warmup']} warm-up + {a['runs']} timed runs per "
        "artefact, all artefacts of all checkpoints interleaved in one process; ONNX files in ONNX Runtime "
        "(CPU EP), OpenVINO folders in OpenVINO (CPU, LATENCY hint); threads set in the runtime.",
        f"- INT8: Ultralytics' exporter, calibrated on the training split of the data (ONNX: ONNX Runtime static "
        "QDQ; OpenVINO: NNCF). Speed-up: the reference's FP32 artefact median over this artefact's median, in "
        f"the same runtime and thread setting (reference: `{record['reference']}`).",
    ]
    if not (machine["flags"].get("avx512_vnni") or machine["flags"].get("avx_vnni")):
        lines += ["- **No VNNI on this CPU** (neither AVX-512 VNNI nor AVX-VNNI): INT8 convolutions run on AVX2 "
                  "(8-bit products widened to 16 bits and added in several instructions instead of one), so INT8 "
                  "gains less here than on a VNNI CPU, and ONNX Runtime's QDQ model can be slower than FP32."]
    if a.get("note"):
        lines += [f"- **Note:** {a['note']}"]
    lines += ["", "Checkpoints: " + ", ".join(f"`{k}` = `{v}`" for k, v in record["models"].items()), ""]
    rows = record["artefacts"]
    for name, timing in record.get("timing", {}).items():
        lines += [f"## {timing['threads']} thread{'s' if timing['threads'] > 1 else ''}"
                  f"{' (all)' if name == 'all' else ''}", "",
                  f"Load average before/after timing: {timing['load_before'][0]} / {timing['load_after'][0]}; "
                  f"timing took {timing['seconds']} s.", "",
                  "| label | format | precision | mAP50-95 | mAP50 | median ms | min ms | speed-up (median) "
                  "| speed-up (min) | MiB |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for row in rows:
            t = timing["latency"][_key(row)]
            lines.append(f"| {row['label']} | {row['format']} | {row['precision']} | {row['map50_95']:.4f} | "
                         f"{row['map50']:.4f} | {t['median_ms']:.1f} | {t['min_ms']:.1f} | {t['speedup']:.2f}× | "
                         f"{t['speedup_min']:.2f}× | {row['size_mib']:.2f} |")
        lines.append("")
    if not record.get("timing"):
        lines += ["(not timed)", ""]
    lines += [f"Plot: `{record['plot']}` (mAP50-95 against median latency, one marker per artefact)." if
              record.get("plot") else "", ""]
    return "\n".join(lines)


def _plot(record: Dict[str, Any], path: Path) -> Optional[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    timings = record.get("timing", {})
    if not timings:
        return None
    rows = record["artefacts"]
    labels = list(record["models"])
    colours = {label: f"C{i}" for i, label in enumerate(labels)}
    markers = {("onnx", "fp32"): "o", ("onnx", "int8"): "s", ("openvino", "fp32"): "^", ("openvino", "int8"): "D"}
    fig, axes = plt.subplots(1, len(timings), figsize=(6 * len(timings), 4.5), squeeze=False)
    for ax, (name, timing) in zip(axes[0], timings.items()):
        for row in rows:
            t = timing["latency"][_key(row)]
            ax.scatter(t["median_ms"], row["map50_95"], color=colours[row["label"]],
                       marker=markers.get((row["format"], row["precision"]), "x"), s=60,
                       label=f"{row['label']} {row['format']} {row['precision']}")
        ax.set_xlabel(f"median latency, ms ({record['args']['imgsz']} px, batch 1)")
        ax.set_ylabel(f"mAP50-95 (val, {rows[0]['val_imgsz']} px)")
        ax.set_title(f"{timing['threads']} thread{'s' if timing['threads'] > 1 else ''}"
                     f"{' (all)' if name == 'all' else ''}")
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7, loc="best")
    fig.suptitle(record["machine"]["cpu"], fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv=None) -> Dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", help="label=checkpoint.pt, e.g. stock=best.pt pruned_macs=pruned.pt")
    parser.add_argument("--data", help="data.yaml: mAP (val split) and INT8 calibration (train split)")
    parser.add_argument("--imgsz", type=int, default=640, help="timing size")
    parser.add_argument("--val-imgsz", type=int, default=None, help="mAP size (default: training size)")
    parser.add_argument("--threads", nargs="+", default=["1", "all"], help="thread settings: counts and/or 'all'")
    parser.add_argument("--formats", nargs="+", default=["onnx", "openvino"], choices=list(FORMATS))
    parser.add_argument("--int8", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--fast-dfl", action="store_true", help="export ONNX with the last-axis DFL (all checkpoints)")
    parser.add_argument("--reference", default=None, help="speed-up reference label (default: stock)")
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--work", type=Path, default=None,
                        help="artefacts and validation runs (default runs/bench_deploy/<date>)")
    parser.add_argument("--note", default="", help="a line for the results markdown (e.g. the machine's load)")
    parser.add_argument("--out", default="results_deploy", help="stem of the results files beside this script")
    parser.add_argument("--out-dir", type=Path, default=HERE)
    parser.add_argument("--render", action="store_true", help="only rewrite the markdown and plot from the json")
    args = parser.parse_args(argv)
    out_json = args.out_dir / f"{args.out}.json"
    out_md = args.out_dir / f"{args.out}.md"
    out_png = args.out_dir / f"{args.out}_map_vs_latency.png"
    if args.render:
        record = json.loads(out_json.read_text())
        plot = _plot(record, out_png)
        record["plot"] = plot.name if plot else None
        out_md.write_text(_markdown(record))
        print(f"deploy: rewrote {out_md}" + (f", {out_png}" if plot else ""), flush=True)
        return record
    if not args.models or not args.data:
        parser.error("give label=checkpoint.pt arguments and --data")

    import ultralytics  # noqa: F401  (fail early when missing)

    from ultralytics_prune_plugin.deploy.artefacts import check_deployment_request

    models = _parse_models(args.models)
    reference = args.reference or ("stock" if "stock" in models else next(iter(models)))
    if reference not in models:
        raise SystemExit(f"--reference {reference!r} is not one of the labels {list(models)}")
    settings = _threads(args.threads)
    check_deployment_request(args.formats, args.int8, "onnxruntime", True, "--int8")
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    work = (args.work or Path("runs") / "bench_deploy" / stamp).resolve()
    work.mkdir(parents=True, exist_ok=True)
    record: Dict[str, Any] = {
        "command": "python benchmarks/deploy.py " + shlex.join(argv if argv is not None else sys.argv[1:]),
        "machine": _cpu(), "versions": _versions(),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "models"},
        "models": {k: str(v) for k, v in models.items()}, "reference": reference, "work": str(work),
        "updated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }

    def save():
        out_json.write_text(json.dumps(record, indent=1) + "\n")

    start = time.perf_counter()
    rows = _export_all(models, args, work, record, save)
    _time_all(rows, args, settings, reference, record, save)
    record["total_s"] = round(time.perf_counter() - start, 1)
    record["updated"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    plot = _plot(record, out_png)
    record["plot"] = plot.name if plot else None
    save()
    out_md.write_text(_markdown(record))
    print(f"deploy: wrote {out_json}, {out_md}" + (f", {out_png}" if plot else ""), flush=True)
    return record


if __name__ == "__main__":
    main()
