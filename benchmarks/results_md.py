"""Render the benchmark's raw record as ``results.md`` and ``map_vs_macs.png``.

Every number in the page comes from the record (``results.json``); the few sentences that interpret them are
computed from it too, so that the page stays true for whatever machine ran it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional

PLOT = "map_vs_macs.png"


# Formatting -----------------------------------------------------------------------------------------------------------
def _f(value: Any, fmt: str = "{:.3f}") -> str:
    """Format a number, or an en dash when it is unknown."""
    return "–" if value is None else fmt.format(value)


def _g(macs: Optional[float]) -> str:
    """MACs as GMACs."""
    return _f(None if macs is None else macs / 1e9, "{:.3f}")


def _m(params: Optional[float]) -> str:
    """Parameters in millions."""
    return _f(None if params is None else params / 1e6, "{:.2f}")


def _lat(entry: Optional[Dict[str, float]]) -> str:
    """A latency summary as ``median [p10–p90]``."""
    if not entry:
        return "–"
    return f"{entry['median_ms']:.2f} [{entry['p10_ms']:.2f}–{entry['p90_ms']:.2f}]"


def _table(header: List[str], rows: List[List[str]]) -> List[str]:
    """A markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


def _ok(flag: Optional[bool]) -> str:
    """A budget verdict."""
    return "–" if flag is None else ("met" if flag else "**not met**")


# Sections -------------------------------------------------------------------------------------------------------------
def _header(rec: Dict[str, Any]) -> List[str]:
    """Title, command, machine and versions."""
    env = rec["environment"]
    v = env["versions"]
    minutes = rec["timings_s"].get("total", 0) / 60
    load = lambda xs: " / ".join(f"{x:.2f}" for x in xs) if xs else "–"  # noqa: E731
    parts = ", ".join(f"{k} {rec['timings_s'][k] / 60:.1f} min" for k in rec["parts"] if k in rec["timings_s"])
    lines = [
        "# Benchmark results" + (" (quick smoke run: not representative)" if rec["preset"] == "quick" else ""),
        "",
        f"Command: `{rec['command']}` (`make bench` runs the same in the Makefile's own virtual environment), "
        f"started {rec['started']}, finished {rec.get('finished', '–')}; wall time **{minutes:.1f} min** ({parts}).",
        "",
        f"Machine: {env['cpu']} ({env['cpu_flags'] or 'no AVX flags found'}), {env['cores']} cores, "
        f"{_f(env['memory_gib'], '{:.0f}')} GiB RAM, {env['os']}. Load average (1/5/15 min) at start "
        f"{load(env.get('load_start'))}, at end {load(env.get('load_end'))}"
        + (f"; thread variables set: {env['env_threads']}" if env.get("env_threads") else "")
        + ".",
        "",
        "Versions: Python " + env["python"] + ", "
        + ", ".join(f"{k} {v[k]}" for k in v if v[k]) + (", " + ", ".join(f"{k} not installed" for k in v if not v[k]) if any(not v[k] for k in v) else "")
        + f"; commit {env.get('commit') or '–'} (plus the working tree at the time of the run).",
        "",
    ]
    for rerun in rec.get("reruns", []):
        lines += [
            f"Re-run later: {', '.join(rerun['parts'])} with `{rerun['command']}`, started {rerun['started']} (load "
            f"average at start {load(rerun['environment'].get('load_start'))}, at end {load(rerun.get('load_end'))}); "
            "the other parts are from the run above.",
            "",
        ]
    lines += [
        "Raw numbers: [`results.json`](results.json). MACs are multiply-accumulates as Torch-Pruning counts them "
        "(Ultralytics' GFLOPs ≈ 2 × GMACs). *Speed-up ÷ MACs cut* is (baseline latency / pruned latency) / "
        "(baseline MACs / pruned MACs): 1.0 means the latency falls exactly as fast as the MACs.",
        "",
    ]
    return lines


def _headline(rec: Dict[str, Any]) -> List[str]:
    """The few numbers the README quotes."""
    lines = ["## Headline", ""]
    sp = rec.get("speed")
    if sp:
        focus = f"round_to={sp['settings']['focus_round_to']}"
        for model, entry in sp["models"].items():
            rows = entry["round_to"]
            parts = []
            for label in ("no rounding", focus):
                if label in rows:
                    r = rows[label]
                    parts.append(
                        f"{label}: MACs {r['macs_x']:.2f}× fewer, speed-up {r['speedup']:.2f}×, ratio "
                        f"**{r['ratio']:.2f}** (range {r['ratio_min']:.2f}–{r['ratio_max']:.2f} over "
                        f"{len(r['speedups'])} rounds)"
                    )
            best = max((k for k in rows if k != "baseline"), key=lambda k: rows[k]["speedup"])
            combo = entry.get("best_combination")
            extra = ""
            fast = (entry.get("simplify") or {}).get(f"{focus} fast_dfl")
            if fast and "ratio_vs_own_baseline" in fast:
                extra += (f" {focus} + `fast_dfl=True` (baseline exported alike): speed-up "
                          f"{fast['speedup_vs_own_baseline']:.2f}×, ratio **{fast['ratio_vs_own_baseline']:.2f}**.")
            if combo:
                r = [v for k, v in combo.items() if not k.startswith("baseline")][0]
                extra += (f" The same with one ONNX Runtime thread: speed-up {r['speedup']:.2f}×, ratio "
                          f"**{r['ratio']:.2f}**.")
            lines.append(
                f"- **{model}, rate {sp['settings']['rate']}, {sp['settings']['imgsz']} px, ONNX Runtime CPU batch 1** — "
                + "; ".join(parts) + f". Fastest variant: {best} ({rows[best]['speedup']:.2f}×)." + extra
            )
    acc = rec.get("accuracy")
    if acc:
        base = acc["baseline"]
        for run in acc["runs"]:
            if run["rate"] == 0.5 and not run.get("extra"):
                f = run["report"]["final"]
                src = run["report"]["baseline"]
                lines.append(
                    f"- **{run['method']} at rate 0.5** (yolov8n, {acc['settings']['imgsz']} px hard data): mAP50-95 "
                    f"{_f(src.get('map50_95'))} → {_f(f.get('map50_95'))} after {acc['settings']['ft_epochs']} "
                    f"fine-tune epochs, MACs {src['macs'] / f['macs']:.2f}× fewer"
                    + (" (from the sparse-trained model)" if run["method"] == "slim" else "")
                    + "."
                )
        lines.append(
            f"- Baseline yolov8n after {acc['settings']['base_epochs']} epochs: mAP50-95 {_f(base.get('map50_95'))}, "
            f"+{acc['settings']['sparse_epochs']} plain epochs {_f(acc['plain'].get('map50_95'))}, "
            f"+{acc['settings']['sparse_epochs']} sparse epochs {_f(acc['sparse'].get('map50_95'))} (below 0.9: the "
            "data does not saturate yolov8n)."
        )
    bud = rec.get("budgets")
    if bud:
        ps = bud["prune_step"]
        lines.append(
            f"- Prune step, {ps['model']} at {ps['imgsz']} px: DepGraph {ps['median_depgraph_s']:.2f} s, slim "
            f"{ps['median_slim_s']:.2f} s (budget < 2 s: {_ok(max(ps['median_depgraph_s'], ps['median_slim_s']) < 2)})."
        )
        sparse = bud.get("sparse")
        if sparse:
            lines.append(
                f"- Sparse training: {sparse['overhead_epoch']:+.1%} per epoch ({sparse['overhead_train_epoch']:+.1%} "
                f"for the training loop, {sparse['overhead_batch']:+.1%} per batch) against plain training "
                f"(budget < 5 %: {_ok(sparse['overhead_epoch'] < 0.05)})."
            )
        for group in bud.get("memory", []):
            prunes = "; ".join(f"`yolo prune` ({k}) {_f(v['peak_rss_mib'], '{:.0f}')} MiB" for k, v in group["prunes"].items())
            lines.append(
                f"- Peak memory, {group['label']}: `yolo val` {_f(group['val']['peak_rss_mib'], '{:.0f}')} MiB; {prunes}."
            )
    return lines + [""]


def _accuracy(rec: Dict[str, Any], out: Path) -> List[str]:
    """Section 1: the accuracy table (and the plot, written next to the page)."""
    acc = rec.get("accuracy")
    if not acc:
        return []
    s = acc["settings"]
    runs = acc["runs"]
    lines = [
        "## 1. Accuracy against cost (yolov8n, generated hard data)",
        "",
        f"Data: `make_dataset(n_train={s['n_train']}, n_val={s['n_val']}, imgsz={s['imgsz']}, n_classes={s['n_classes']}, "
        f"seed={s['seed']}, difficulty=\"hard\")`: 1–6 small, low-contrast, overlapping shapes per image among clutter. "
        f"Baseline: yolov8n from `yolov8n.yaml`, {s['base_epochs']} epochs, batch {s['batch']}, seed {s['seed']} "
        f"(`deterministic=False`, about twice as fast on CPU). Then {s['sparse_epochs']} more epochs twice: plain, "
        f"and with `sparse=True sr={s['sr']}`. DepGraph prunes the plain model, slim the sparse-trained one, so both "
        f"start from {s['base_epochs'] + s['sparse_epochs']} epochs of training. Every pruned model gets "
        f"{s['ft_epochs']} fine-tune epochs in all (DepGraph: {s['depgraph_steps']} step(s) × "
        f"{max(1, s['ft_epochs'] // s['depgraph_steps'])} epochs; slim: one threshold, then {s['ft_epochs']} epochs), "
        f"`max_map_drop=1` so that every rate is kept, `round_to={s.get('round_to')}` (the plugin's default) unless "
        "stated.",
        "",
        "mAP50 / mAP50-95: Ultralytics validation of the PyTorch model (rect batches, as during training). "
        "*PT b1* and *ORT*: the same model at batch 1 without rect batches, in PyTorch and as ONNX in ONNX Runtime "
        "(how Ultralytics validates every exported model). Latency: ONNX Runtime CPU, batch 1, at "
        f"{s['imgsz']} px, median [p10–p90] of 30 runs after 5 warm-up runs, each model alternating with its "
        "unpruned input in the same process (the prune run's own measurement).",
        "",
    ]
    header = ["model", "GMACs", "params (M)", "mAP50", "mAP50-95", "mAP50-95 PT b1", "mAP50 ORT", "mAP50-95 ORT",
              "ONNX (MB)", "ORT ms", "speed-up", "speed-up ÷ MACs cut"]
    rows = []
    ref = acc.get("reference", {})
    first = {m: next((r for r in runs if r["method"] == m), None) for m in ("depgraph", "slim")}
    base = acc["baseline"]
    rows.append([f"baseline ({s['base_epochs']} ep)", "", "", _f(base.get("map50")), _f(base.get("map50_95")),
                 "", "", "", "", "", "", ""])
    for method, key, label in (("depgraph", "plain", "plain"), ("slim", "sparse", "sparse-trained")):
        if not first[method]:
            continue
        rep = first[method]["report"]
        b, r = rep["baseline"], ref.get(key, {})
        rows.append([f"+{s['sparse_epochs']} ep {label} ({method} input)", _g(b["macs"]), _m(b["params"]),
                     _f(b.get("map50")), _f(b.get("map50_95")), _f(r.get("pytorch_map50_95")), _f(r.get("onnx_map50")),
                     _f(r.get("onnx_map50_95")), _f(rep["onnx"]["file_mb"]["baseline"], "{:.2f}"),
                     _lat(rep["onnx"]["latency_ms"]["baseline"]), "1.00", "–"])
    for run in runs:
        rep = run["report"]
        f, o = rep["final"], rep.get("onnx", {})
        macs_x = rep["baseline"]["macs"] / f["macs"]
        speedup = o.get("speedup")
        label = f"{run['method']} {run['rate']:g}" + (f" round_to={run['round_to']}" if run.get("extra") else "")
        if f.get("step") != len(rep["steps"]) or f.get("step") == 0:
            label += f" (kept step {f.get('step')})"
        rows.append([label, _g(f["macs"]), _m(f["params"]), _f(f.get("map50")), _f(f.get("map50_95")),
                     _f(o.get("pytorch_map50_95")), _f(o.get("onnx_map50")), _f(o.get("onnx_map50_95")),
                     _f(o.get("file_mb", {}).get("pruned"), "{:.2f}"), _lat(o.get("latency_ms", {}).get("pruned")),
                     _f(speedup, "{:.2f}"), _f(None if speedup is None else speedup / macs_x, "{:.2f}")])
    lines += _table(header, rows)
    gamma = first["slim"]["report"].get("slim", {}).get("gamma_before") if first["slim"] else None
    if gamma:
        lines += [
            "",
            f"BatchNorm scales of the sparse-trained model before slim pruning: {gamma['fraction_below']:.1%} of the "
            f"prunable |γ| below 0.01, median |γ| {gamma['median']:.3f}"
            + (" — the sparse training was too short to make the scales sparse, so slim pruning here is close to plain "
               "|γ|-magnitude pruning." if not gamma.get("sparse") else "."),
        ]
    lines += [
        "",
        f"At {s['imgsz']} px the whole network runs in a few milliseconds, so fixed per-run costs weigh more and the "
        "speed-ups here understate those at deployment sizes; section 2 measures them at 640 px.",
        "",
        f"![mAP50-95 against MACs]({PLOT})",
        "",
        "Training and run times: baseline "
        f"{acc['baseline']['wall_s'] / 60:.1f} min, plain {acc['plain']['wall_s'] / 60:.1f} min, sparse "
        f"{acc['sparse']['wall_s'] / 60:.1f} min; prune runs: "
        + ", ".join(f"{r['name']} {r['report']['wall_s'] / 60:.1f} min" for r in runs)
        + ".",
        "",
    ]
    _plot(acc, out / PLOT)
    return lines


def _plot(acc: Dict[str, Any], path: Path) -> None:
    """mAP50-95 and mAP50 against MACs for both methods, with the baseline and sparse model as starting points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    runs = acc["runs"]
    for ax, key, title in ((axes[0], "map50_95", "mAP50-95"), (axes[1], "map50", "mAP50")):
        for method, colour in (("depgraph", "tab:blue"), ("slim", "tab:orange")):
            chosen = sorted((r for r in runs if r["method"] == method and not r.get("extra")), key=lambda r: r["rate"])
            if not chosen:
                continue
            source = chosen[0]["report"]["baseline"]
            xs = [source["macs"] / 1e9] + [r["report"]["final"]["macs"] / 1e9 for r in chosen]
            ys = [source.get(key)] + [r["report"]["final"].get(key) for r in chosen]
            label = "DepGraph (from plain)" if method == "depgraph" else "slim (from sparse-trained)"
            ax.plot(xs, ys, "o-", color=colour, label=label)
            for r in chosen:
                ax.annotate(f"{r['rate']:g}", (r["report"]["final"]["macs"] / 1e9, r["report"]["final"].get(key)),
                            textcoords="offset points", xytext=(4, 4), fontsize=8, color=colour)
            for r in (r for r in runs if r["method"] == method and r.get("extra")):
                ax.plot(r["report"]["final"]["macs"] / 1e9, r["report"]["final"].get(key), "s", color=colour,
                        mfc="none", label=f"{method} {r['rate']:g} round_to={r['round_to']}")
        first_run = runs[0]["report"]["baseline"] if runs else None
        if first_run and acc["baseline"].get(key) is not None:
            ax.plot(first_run["macs"] / 1e9, acc["baseline"][key], "*", color="grey", ms=10,
                    label=f"baseline ({acc['settings']['base_epochs']} epochs)")
        ax.set_xlabel(f"GMACs at {acc['settings']['imgsz']} px")
        ax.set_ylabel(title)
        ax.set_title(f"yolov8n on hard generated data: {title} against MACs")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _speed(rec: Dict[str, Any]) -> List[str]:
    """Section 2: speed-up against MACs cut at the deployment size."""
    sp = rec.get("speed")
    if not sp:
        return []
    st = sp["settings"]
    focus = f"round_to={st['focus_round_to']}"
    lines = [
        f"## 2. Does the speed-up track the MACs cut? ({st['imgsz']} px, rate {st['rate']}, ONNX Runtime CPU, batch 1)",
        "",
        f"Untrained models from `yolov8n.yaml` / `yolov8s.yaml` (80 classes; latency does not depend on the weights), "
        f"pruned with `YOLO(...).prune(rate={st['rate']}, iterative_steps=1, epochs=0, imgsz={st['imgsz']}, "
        "round_to=...)` and exported by the run with Ultralytics' exporter (opset 17, `simplify=False`). Latency: the "
        f"plugin's `measure_latency` (session options of `session_options()`: graph optimisation ALL, no thread "
        f"spinning, ONNX Runtime's default thread count), all variants of a model in one process taking turns run by "
        f"run, {st['runs']} timed runs each after {st['warmup']} warm-up runs, the whole set repeated "
        f"{st['repeats']} times. Latency: median of the rounds' medians [p10–p90 of the first round]; speed-up and "
        "ratio: median over the rounds [min–max].",
        "",
    ]
    for model, entry in sp["models"].items():
        rows = entry["round_to"]
        lines += [f"### {model}", "", f"Load average (1/5/15 min) before: {entry['load_before']}; after: {entry['load_after']}.", ""]
        table = []
        for label, r in rows.items():
            v = entry["variants"].get(label)
            mb = (next(iter(entry["variants"].values()))["base_onnx_mb"] if label == "baseline" else v["onnx_mb"])
            params = (next(iter(entry["variants"].values()))["base_params"] if label == "baseline" else v["params"])
            table.append([label, _g(r["macs"]), f"{r['macs_x']:.2f}×", _m(params), f"{mb:.2f}",
                          f"{r['median_ms']:.2f} [{r['p10_ms']:.2f}–{r['p90_ms']:.2f}]", f"{r['speedup']:.2f}×",
                          "–" if label == "baseline" else f"**{r['ratio']:.2f}** [{r['ratio_min']:.2f}–{r['ratio_max']:.2f}]"])
        lines += _table(["variant", "GMACs", "MACs cut", "params (M)", "ONNX (MB)", "ORT ms", "speed-up",
                         "speed-up ÷ MACs cut"], table)
        lines.append("")
        simp = entry.get("simplify")
        tools = entry.get("simplify_tools", {})
        lines.append(
            "**Export variants** (" + ", ".join(f"{k}: {v}" for k, v in tools.items()) + "): `onnxsim` is what "
            "Ultralytics runs for `simplify=True`; *fast_dfl* is the plugin's `fast_dfl=True`: the "
            "Detect head's DFL exported as `Softmax(axis=-1)` + `MatMul` instead of `Transpose` + `Softmax(axis=1)` + "
            f"`Conv` (same maths; largest difference on random logits {_f(entry.get('dfl_max_abs_diff'), '{:.1e}')}). "
            f"All files of a model taking turns, {st['repeats']} rounds."
        )
        lines.append("")
        if simp:
            t = []
            for label, r in simp.items():
                own = r.get("speedup_vs_own_baseline")
                t.append([
                    label, f"{r['median_ms']:.2f}", f"{r['speedup']:.2f}×",
                    "–" if label.startswith("baseline") else f"{r['ratio']:.2f}",
                    "–" if own is None else f"{own:.2f}× / **{r['ratio_vs_own_baseline']:.2f}** "
                    f"[{r['ratio_vs_own_baseline_min']:.2f}–{r['ratio_vs_own_baseline_max']:.2f}]",
                ])
            lines += _table(["model file", "ORT ms", "speed-up vs plain baseline", "ratio vs plain baseline",
                             "speed-up / ratio vs the baseline exported the same way"], t)
            lines.append("")
        best = entry.get("best_combination")
        if best:
            r = [v for k, v in best.items() if not k.startswith("baseline")][0]
            b = [v for k, v in best.items() if k.startswith("baseline")][0]
            lines += [
                f"**Combination** ({focus}, fast_dfl=True, 1 ONNX Runtime thread, {st['repeats']} rounds): baseline "
                f"{b['median_ms']:.2f} ms, pruned {r['median_ms']:.2f} ms, speed-up {r['speedup']:.2f}×, ratio "
                f"**{r['ratio']:.2f}** [{r['ratio_min']:.2f}–{r['ratio_max']:.2f}].",
                "",
            ]
        thr = entry.get("threads_1")
        so = entry.get("session_options", {})
        t = []
        default = {k: rows[k] for k in thr} if thr else {}
        variants = [k for k in (thr or {}) if k != "baseline"]
        if thr:
            t.append(["ONNX Runtime default threads (table above)"] + [f"{default[k]['median_ms']:.2f}" for k in thr]
                     + [f"{default[k]['speedup']:.2f}× / {default[k]['ratio']:.2f}" for k in variants])
            t.append(["1 thread"] + [f"{thr[k]['median_ms']:.2f}" for k in thr]
                     + [f"{thr[k]['speedup']:.2f}× / {thr[k]['ratio']:.2f}" for k in variants])
        for name, res in so.items():
            t.append([name] + [f"{res[k]['median_ms']:.2f}" for k in res]
                     + [f"{res[k]['speedup']:.2f}× / {res[k]['ratio']:.2f}" for k in res if k != "baseline"])
        if t:
            labels = list(thr or next(iter(so.values())))
            lines.append(f"**Threads and session options** (one round of {st['runs']} runs each):")
            lines.append("")
            lines += _table(["setting"] + [f"{k} ms" for k in labels]
                            + [f"{k}: speed-up / ratio" for k in labels if k != "baseline"], t)
            lines.append("")
        lines += _profile(entry, focus)
    trained = sp.get("trained")
    if trained:
        lines += [
            f"### The benchmark's own trained models (part 1, 6 classes) exported at {st['imgsz']} px",
            "",
        ]
        t = [[label, _g(r["macs"]), f"{r['macs_x']:.2f}×", f"{r['median_ms']:.2f} [{r['p10_ms']:.2f}–{r['p90_ms']:.2f}]",
              f"{r['speedup']:.2f}×", "–" if label == "baseline" else f"{r['ratio']:.2f} [{r['ratio_min']:.2f}–{r['ratio_max']:.2f}]"]
             for label, r in trained["rows"].items()]
        lines += _table(["model", "GMACs", "MACs cut", "ORT ms", "speed-up", "speed-up ÷ MACs cut"], t)
        lines.append("")
    lines += _findings(sp)
    return lines


def _profile(entry: Dict[str, Any], focus: str) -> List[str]:
    """The per-category profile table of one model."""
    prof = entry.get("profile")
    if not prof:
        return []
    labels = list(prof)
    cats = list(next(iter(prof.values()))["categories"])
    t = []
    for cat in cats + ["total"]:
        row = [cat]
        for label in labels:
            p = prof[label]
            if cat == "total":
                ms, macs = p["total_ms"], sum(c["macs"] for c in p["categories"].values())
            else:
                ms, macs = p["categories"][cat]["ms"], p["categories"][cat]["macs"]
            row.append(f"{ms:.2f} ms ({ms / p['total_ms']:.0%})" + (f", {macs / 1e9:.3f} G" if macs else ""))
        t.append(row)
    lines = [
        "**Where the time and the MACs sit** (ONNX Runtime node profiler, median per node over the runs, summed per "
        "category; MACs from the profiled shapes):",
        "",
    ]
    graph = [prof[label].get("graph") for label in labels]
    if all(graph):
        t.append(["graph as optimised: NCHWc / NCHW convolutions, reorders in / out"]
                 + [f"{g['nchwc_conv']} / {g['nchw_conv']}, {g['reorder_input']} / {g['reorder_output']}" for g in graph])
    lines += _table(["category"] + labels, t)
    lines.append("")
    return lines


def _profile_facts(entry: Dict[str, Any], label: str) -> Optional[Dict[str, float]]:
    """Numbers drawn from the profile of the baseline and of variant ``label``, for the findings."""
    prof = entry.get("profile", {})
    if "baseline" not in prof or label not in prof:
        return None
    b, p = prof["baseline"], prof[label]

    def macs(x, cat=None):
        return x["categories"][cat]["macs"] if cat else sum(c["macs"] for c in x["categories"].values())

    fixed = "head post-processing"
    b_ms, p_ms = b["total_ms"], p["total_ms"]
    macs_x = macs(b) / macs(p)
    bf, pf = b["categories"][fixed]["ms"], p["categories"][fixed]["ms"]
    return {
        "head_macs_share_before": macs(b, "conv Detect head") / macs(b),
        "head_macs_share_after": macs(p, "conv Detect head") / macs(p),
        "post_ms_before": bf,
        "post_ms_after": pf,
        "post_share_after": pf / p_ms,
        "ratio_profile": (b_ms / p_ms) / macs_x,
        "ratio_without_post": ((b_ms - bf) / (p_ms - pf)) / macs_x,
        "backbone_conv_ratio": (b["categories"]["conv backbone+neck"]["ms"] / p["categories"]["conv backbone+neck"]["ms"])
        / (macs(b, "conv backbone+neck") / macs(p, "conv backbone+neck")),
        "head_conv_ratio": (b["categories"]["conv Detect head"]["ms"] / p["categories"]["conv Detect head"]["ms"])
        / (macs(b, "conv Detect head") / macs(p, "conv Detect head")),
        "silu_ms_before": b["categories"]["SiLU"]["ms"],
        "silu_ms_after": p["categories"]["SiLU"]["ms"],
        "reorder_ms_before": b["categories"]["layout reorders"]["ms"],
        "reorder_ms_after": p["categories"]["layout reorders"]["ms"],
        "dfl_softmax_ms": sum(n["ms"] for n in b["nodes"] if n["op"] == "Softmax" and "/dfl/" in n["name"]),
    }


def _findings(sp: Dict[str, Any]) -> List[str]:
    """What moved the ratio and what did not, model by model, in sentences computed from the numbers."""
    st = sp["settings"]
    focus = f"round_to={st['focus_round_to']}"
    lines = ["### What moved the ratio and what did not", ""]
    for model, entry in sp["models"].items():
        rows = entry["round_to"]
        variants = [k for k in rows if k != "baseline"]
        ratios = ", ".join(f"{k} {rows[k]['ratio']:.2f} ({rows[k]['speedup']:.2f}× for {rows[k]['macs_x']:.2f}× fewer MACs)"
                           for k in variants)
        lines.append(f"- **{model}, channel rounding**: {ratios}. A coarser multiple keeps more channels, so it lowers "
                     "the MACs cut as well as the latency; compare speed-ups, not only ratios.")
        thr = entry.get("threads_1")
        if thr:
            lines.append(
                f"- **{model}, threads**: with 1 thread the ratio is "
                + ", ".join(f"{k} {thr[k]['ratio']:.2f}" for k in thr if k != "baseline")
                + " against "
                + ", ".join(f"{rows[k]['ratio']:.2f}" for k in thr if k != "baseline")
                + " with the default thread count."
            )
        so = entry.get("session_options", {})
        if so:
            lines.append(
                f"- **{model}, session options**: "
                + "; ".join(
                    f"{name}: " + ", ".join(f"{k} {res[k]['ratio']:.2f}" for k in res if k != "baseline")
                    + f" (baseline {res['baseline']['median_ms']:.1f} ms)"
                    for name, res in so.items()
                )
                + "."
            )
        simp = entry.get("simplify")
        if simp:
            parts = []
            for tool in entry.get("simplify_tools", {}):
                key = f"{focus} {tool}"
                if key in simp and f"baseline {tool}" in simp:
                    parts.append(
                        f"{tool}: baseline {simp['baseline']['median_ms']:.1f} → {simp[f'baseline {tool}']['median_ms']:.1f} ms, "
                        f"{focus} {simp[focus]['median_ms']:.1f} → {simp[key]['median_ms']:.1f} ms, ratio "
                        f"{simp[focus]['ratio']:.2f} → {simp[key]['ratio_vs_own_baseline']:.2f}"
                    )
            if parts:
                lines.append(f"- **{model}, export variants**: " + "; ".join(parts) + ".")
        best = entry.get("best_combination")
        if best:
            r = [v for k, v in best.items() if not k.startswith("baseline")][0]
            lines.append(f"- **{model}, combination** ({focus} + fast_dfl=True + 1 thread): speed-up {r['speedup']:.2f}×, "
                         f"ratio {r['ratio']:.2f}.")
        facts = _profile_facts(entry, focus) or _profile_facts(entry, "no rounding")
        if facts:
            lines.append(
                f"- **{model}, where the remaining cost sits** ({focus}): the Detect head, which is never pruned, holds "
                f"{facts['head_macs_share_before']:.0%} of the MACs before and {facts['head_macs_share_after']:.0%} "
                f"after pruning. Its post-processing (DFL softmax, box decoding, concatenations) costs "
                f"{facts['post_ms_before']:.1f} ms before and {facts['post_ms_after']:.1f} ms after (the DFL's softmax node "
                f"alone {facts['dfl_softmax_ms']:.1f} ms) — a fixed cost "
                f"with no MACs, {facts['post_share_after']:.0%} of the pruned model's time; without it the ratio "
                f"would be {facts['ratio_without_post']:.2f} instead of {facts['ratio_profile']:.2f} (profile sums). "
                f"Per MAC, the backbone+neck convolutions of the pruned model run at {facts['backbone_conv_ratio']:.2f}× "
                f"and the head convolutions at {facts['head_conv_ratio']:.2f}× the baseline's efficiency. SiLU "
                f"{facts['silu_ms_before']:.1f} → {facts['silu_ms_after']:.1f} ms, layout reorders "
                f"{facts['reorder_ms_before']:.1f} → {facts['reorder_ms_after']:.1f} ms."
            )
    lines.append("")
    return lines


def _budgets(rec: Dict[str, Any]) -> List[str]:
    """Section 3: prune-step time, sparse-training overhead, peak memory."""
    bud = rec.get("budgets")
    if not bud:
        return []
    ps = bud["prune_step"]
    lines = [
        "## 3. Time and memory budgets",
        "",
        f"**Prune step** ({ps['model']}, {ps['imgsz']} px, rate {ps['rate']}, round_to {ps['round_to']}, freshly "
        f"built model, median of {ps['repeats']}): DepGraph `prune_once` {ps['median_depgraph_s']:.2f} s (of which "
        f"the pruner's build + step {ps['median_depgraph_pruner_s']:.2f} s; the rest counts MACs before and after "
        f"at {ps['imgsz']} px), `slim_prune` {ps['median_slim_s']:.2f} s; the C2f → C2f_v2 swap beforehand "
        f"{ps['median_prepare_s']:.2f} s. Budget < 2 s: {_ok(max(ps['median_depgraph_s'], ps['median_slim_s']) < 2)}.",
        "",
    ]
    sparse = bud.get("sparse")
    if sparse:
        b, t, e = sparse["median_batch_s"], sparse["median_train_epoch_s"], sparse["median_epoch_s"]
        lines += [
            f"**Sparse training** against plain training of the part-1 baseline on the same data: {sparse['rounds']} "
            "pairs of one-epoch runs, alternating (plain, sparse, then sparse, plain, ...) so that changes in the "
            "machine's load hit both alike. Overheads: the pooled median batch time, and the median over the pairs of "
            "the per-pair ratio of epoch times.",
            "",
        ]
        lines += _table(
            ["median", "plain", "sparse (`sparse=True`)", "sparse overhead"],
            [
                ["batch, s", f"{b['plain']:.3f}", f"{b['sparse']:.3f}", f"{sparse['overhead_batch']:+.1%}"],
                ["training loop of an epoch, s", f"{t['plain']:.2f}", f"{t['sparse']:.2f}",
                 f"{sparse['overhead_train_epoch']:+.1%}"],
                ["whole epoch (training, validation, saving, sparsity report), s", f"{e['plain']:.2f}",
                 f"{e['sparse']:.2f}", f"{sparse['overhead_epoch']:+.1%}"],
            ],
        )
        acc = rec.get("accuracy")
        if acc and acc["plain"].get("timing") and acc["sparse"].get("timing"):
            pt, st = acc["plain"]["timing"], acc["sparse"]["timing"]
            lines += ["", f"For reference, part 1's continuous {acc['settings']['sparse_epochs']}-epoch runs (one after "
                      f"the other, not alternating): median epoch {_f(pt['median_epoch_s'], '{:.2f}')} s plain, "
                      f"{_f(st['median_epoch_s'], '{:.2f}')} s sparse; median batch {_f(pt['median_batch_s'], '{:.3f}')} s "
                      f"plain, {_f(st['median_batch_s'], '{:.3f}')} s sparse."]
        lines += ["", f"Sparse-training budget (< 5 % per epoch): {_ok(sparse['overhead_epoch'] < 0.05)}.", ""]
    mem = bud.get("memory", [])
    if mem:
        t = []
        for group in mem:
            t.append([group["label"], "`yolo val`", _f(group["val"]["peak_rss_mib"], "{:.0f}"), f"{group['val']['wall_s']:.1f}"])
            for label, r in group["prunes"].items():
                t.append([group["label"], f"`yolo prune` ({label})", _f(r["peak_rss_mib"], "{:.0f}"), f"{r['wall_s']:.1f}"])
        lines += [
            "**Peak memory**: each command in its own child process, which records its own peak resident set size "
            "(`VmHWM`) as it exits (`benchmarks/peak_child.py`). A prune run includes validation, ONNX export, ONNX "
            "Runtime validation and timing; with `epochs` > 0 also the fine-tune's training.",
            "",
        ]
        lines += _table(["model", "command", "peak RSS (MiB)", "wall (s)"], t)
        failed = [r["command"] for g in mem for r in [g["val"], *g["prunes"].values()] if r["returncode"] != 0]
        if failed:
            lines += ["", "Failed commands (see their logs): " + "; ".join(f"`{c}`" for c in failed)]
        lines.append("")
    return lines


def _target(rec: Dict[str, Any]) -> List[str]:
    """Section 4: target_macs runs, target against reached."""
    acc = rec.get("accuracy")
    if not acc or not acc.get("target_runs"):
        return []
    t = []
    for run in acc["target_runs"]:
        rep = run["report"]
        tm = rep.get("target_macs", {})
        slim = rep.get("slim", {})
        t.append([
            run["method"], _f(tm.get("requested"), "{:g}"), _g(rep["baseline"]["macs"]), _g(tm.get("goal_macs")),
            _g(tm.get("reached_macs")), {True: "yes", False: "no"}.get(tm.get("met"), "–"), str(len(rep["steps"])),
            _f(slim.get("target_macs_search", {}).get("rate"), "{:.3f}") if slim else "–",
            rep.get("stop_reason", ""),
        ])
    lines = [
        "## 4. Pruning to a MACs target",
        "",
        f"`yolo prune rate=0.9 target_macs={acc['settings']['target_macs']} epochs=0` on the part-1 models "
        "(DepGraph with `iterative_steps=8` from the plain model, slim from the sparse-trained model): DepGraph stops "
        "at the first step whose MACs meet the target; slim, which has a single threshold, searches the smallest "
        "rate (≤ `rate`) that meets it.",
        "",
    ]
    lines += _table(["method", "target_macs", "baseline GMACs", "goal GMACs", "reached GMACs", "met", "steps", "slim rate",
                     "stop reason"], t)
    return lines + [""]


def write(rec: Dict[str, Any], out: Path) -> Path:
    """Write ``results.md`` (and the plot, when part 1 ran) into ``out``; return the page's path."""
    out = Path(out)
    lines = _header(rec) + _headline(rec) + _accuracy(rec, out) + _speed(rec) + _budgets(rec) + _target(rec)
    path = out / "results.md"
    path.write_text("\n".join(lines).rstrip() + "\n", encoding="utf-8")
    return path


if __name__ == "__main__":  # redraw results.md and the plot from results.json: python benchmarks/results_md.py
    import json

    here = Path(__file__).resolve().parent
    print(write(json.loads((here / "results.json").read_text(encoding="utf-8")), here))
