"""Sampling-time AIS correction against the flow alone, from samples files of ``boltzflow sample --ais``.

Each file written with ``--ais K`` holds the AIS weights (``log_w``) and the flow-only
weights of the same draws (``log_w_flow``), so one file gives both rows of a comparison.
For every file this prints: the AIS settings, samples, gradient evaluations and all target
evaluations per sample, production wall time per sample (warm-up excluded, shown apart),
Kish ESS without clipping and PSIS k̂ of the flow and of flow + AIS, the reweighted φ > 0
population of both, and the range of the per-level acceptance.

Usage (after ``boltzflow sample RUN -n 100000 --ais 16 --ais-leapfrog 3 --out ais16.h5`` …)::

    python benchmarks/ais_correction.py ais16.h5 ais8.h5 mala32.h5 [--markdown]
    python benchmarks/ais_correction.py ais16-s0.h5,ais16-s1.h5,ais16-s2.h5   # runs pooled
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch

from boltzflow.analysis import kish_ess
from boltzflow.analysis.psis import pareto_khat
from boltzflow.io import read_samples

STATE = "phi_positive"


def _pooled(paths) -> tuple[dict, dict, np.ndarray, float, float]:
    """Unnormalised AIS and flow log-weights of several files of one setting, pooled; the φ > 0
    labels, summed production wall time and warm-up time."""
    parts: dict = {"ais": [], "flow": [], "inside": []}
    seconds = warmup = 0.0
    attrs = None
    for path in paths:
        samples = read_samples(path, positions=False)
        attrs = attrs or samples.attrs
        parts["ais"].append(samples.log_w_unnormalized)
        flow = samples.log_w_flow if samples.log_w_flow is not None else samples.log_w
        key = "log_w_flow_logsumexp" if samples.log_w_flow is not None else "log_w_logsumexp"
        parts["flow"].append(flow + samples.attrs[key])
        parts["inside"].append(samples.states.get(STATE, np.zeros(len(flow), dtype=bool)))
        seconds += float(samples.attrs["sampling_seconds"])
        warmup += float(samples.attrs.get("ais_warmup_seconds", 0.0))
    weights = {key: np.concatenate(parts[key]) for key in ("ais", "flow")}
    return attrs, weights, np.concatenate(parts["inside"]), seconds, warmup


def summarise(path) -> dict:
    """One row of the table for a samples file (with or without ``--ais``), or for several
    files of the same setting pooled (paths joined by commas): independent runs, each with
    its own warm-up, whose unbiased weights pool into one sample."""
    paths = str(path).split(",")
    attrs, weights, inside, seconds, warmup = _pooled(paths)
    n = len(weights["ais"])
    levels = int(attrs.get("ais_levels", 0))
    row = {"file": str(path), "files": len(paths), "n": n, "levels": levels,
           "kernel": attrs.get("ais_kernel", "—") if levels else "flow only",
           "leapfrog": int(attrs.get("ais_leapfrog", 0)), "steps": int(attrs.get("ais_steps_per_level", 0)),
           "precondition": attrs.get("ais_precondition", "spread"),  # files before the option: spread
           "gradient_evaluations": int(attrs.get("ais_gradient_evaluations_per_sample", 0)),
           "evaluations": 1.0 + float(attrs.get("ais_extra_evaluations_per_sample", 0.0)),
           "ms_per_sample": 1e3 * seconds / n, "warmup_s": warmup / len(paths),
           "warmup_evaluations": int(attrs.get("ais_warmup_evaluations", 0))}
    for key, log_w in weights.items():
        log_w = torch.from_numpy(log_w)
        row[f"ess_{key}"] = float(kish_ess(log_w))
        row[f"khat_{key}"] = float(pareto_khat(log_w))
        row[f"pop_{key}"] = float(torch.softmax(log_w, 0)[torch.from_numpy(inside)].sum())
    if levels:  # of the first file
        acceptance = attrs["ais_acceptance"]
        row["acceptance"] = f"{acceptance.min():.2f}–{acceptance.max():.2f}"
    return row


COLUMNS = [("setting", lambda r: "flow only" if not r["levels"] else
            f"{r['kernel']} K={r['levels']}" + (f" L={r['leapfrog']}" if r["kernel"] == "hmc" else "")
            + (f" S={r['steps']}" if r["steps"] > 1 else "") + f", {r['precondition']}"),
           ("samples", lambda r: f"{r['n']:,}" + (f" ({r['files']} runs)" if r["files"] > 1 else "")),
           ("grad. evals / sample", lambda r: str(r["gradient_evaluations"])),
           ("all target evals / sample", lambda r: f"{r['evaluations']:.0f}"),
           ("ms / sample", lambda r: f"{r['ms_per_sample']:.2f}"),
           ("warm-up (s per run)", lambda r: f"{r['warmup_s']:.0f}"),
           ("acceptance", lambda r: r.get("acceptance", "—")),
           ("ESS flow", lambda r: f"{100 * r['ess_flow']:.2f}%"),
           ("k̂ flow", lambda r: f"{r['khat_flow']:.2f}"),
           ("ESS flow+AIS", lambda r: f"{100 * r['ess_ais']:.2f}%" if r["levels"] else "—"),
           ("k̂ flow+AIS", lambda r: f"{r['khat_ais']:.2f}" if r["levels"] else "—"),
           ("φ>0 flow", lambda r: f"{100 * r['pop_flow']:.3f}%"),
           ("φ>0 flow+AIS", lambda r: f"{100 * r['pop_ais']:.3f}%" if r["levels"] else "—")]


def table(rows: list[dict], markdown: bool = False) -> str:
    cells = [[name for name, _ in COLUMNS]] + [[f(r) for _, f in COLUMNS] for r in rows]
    if markdown:
        lines = ["| " + " | ".join(c) + " |" for c in cells]
        lines.insert(1, "|" + "|".join("---" for _ in COLUMNS) + "|")
        return "\n".join(lines)
    widths = [max(len(c[i]) for c in cells) for i in range(len(COLUMNS))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(c, widths)) for c in cells)


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", help="samples files from boltzflow sample (with or without --ais); "
                                                 "a,b,c pools the files of independent runs of one setting")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = parser.parse_args(argv)
    rows = [summarise(path) for path in args.files]
    print(table(rows, args.markdown))
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
