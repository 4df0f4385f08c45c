"""A settled reference for a peptide's residues: biased MD on every φ at once, reweighted.

Each repeat is Langevin MD (``boltzflow.reference.biased``) from the minimised structure with
its own seed, with the same bias b(φ) = −λ·kT·max(F(φ) − h, 0) on every residue's φ, a
Fourier fit (order ``--order``) to a φ PMF F (``--profile``: the pmf.csv of ``boltzflow
umbrella DIPEPTIDE --cv phi``, zero at its minimum), λ = ``--scale``, h = ``--floor``; with
``--psi-profile`` every ψ carries the same kind of bias from a ψ PMF (h = ``--psi-floor``). The first ``--equilibration-ns`` of each repeat are discarded;
the other frames are reweighted by exp(+Σᵢ b(φᵢ)/kT). Per repeat: every state's population
and ΔF of the report's pairs (each disjoint group's first state in system.toml order to every
later one), the same from the first and the second half of the repeat, the Kish ESS of the
weights, each φ's committed crossings between φ < 0 and φ > 0 and the weight of frames with
every residue in αR (a helical turn) or every residue in C7eq/β. Over repeats: mean ± s.e.
with a Student-t interval.

Resumable: rerun the same command to continue (each repeat checkpoints every
``--checkpoint-frames`` frames); a finished run is only analysed again. Writes to ``--out``:
``repeat-R.npz`` (frames), ``free_energies.json`` (the format of
``boltzflow/runs/shipped/<system>/free_energies.json``, ready to ship) and ``summary.json``
(populations, halves, transitions, ESS, cost).

    python benchmarks/peptide_reference.py --system alanine-tetrapeptide-hbonds --profile phi-umbrella/pmf.csv \\
        --scale 1 --floor 3.5 --order 12 --ns 1.2 --repeats 4 --out refs/tetra-hb --markdown
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import shlex
import sys
from pathlib import Path

import numpy as np
import torch

from boltzflow.analysis.mbar import repeat_estimate
from boltzflow.io import atomic_path
from boltzflow.reference.biased import (FourierBias, load_frames, log_weights, repeat_free_energies, run_biased,
                                        transitions)
from boltzflow.systems import load_system


def read_profile(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """θ (rad) and F (kT) from an umbrella pmf.csv (columns cv_deg, cv_rad, free_energy_kT, …)."""
    table = np.atleast_2d(np.loadtxt(path, delimiter=",", comments="#"))
    return table[:, 1], table[:, 2]


def every_residue_in(system, cvs: dict, log_w: np.ndarray, kind: str) -> float:
    """Reweighted fraction of frames with every residue in state ``kind`` (e.g. "alphaR": the
    states alphaR1, alphaR2, …): a helical turn, or all extended."""
    tensors = {name: torch.from_numpy(np.asarray(v, float)) for name, v in cvs.items()}
    inside = np.ones(len(log_w), bool)
    for name, state in system.states.items():
        if name.rstrip("0123456789") == kind:
            inside &= state.contains(tensors).numpy()
    w = np.exp(log_w - log_w.max())
    return float(w[inside].sum() / w.sum())


def analyse_repeat(system, path: Path, biases: dict, equilibration_ns: float) -> dict:
    """One repeat's populations, ΔF, halves, Kish ESS and transitions after the equilibration."""
    cvs, time, wall = load_frames(path)
    keep = time > 1e3 * equilibration_ns + 1e-6  # ps from the start at t = 0, round-off aside
    cvs = {name: values[keep] for name, values in cvs.items()}
    log_w = log_weights(cvs, biases, system.kT)
    populations, delta = repeat_free_energies(system, cvs, log_w)
    middle = len(log_w) // 2
    halves = [repeat_free_energies(system, {k: v[part] for k, v in cvs.items()}, log_w[part])[1]
              for part in (slice(0, middle), slice(middle, None))]
    w = np.exp(log_w - log_w.max())
    return {"frames": int(keep.sum()), "simulated_ns": float(time[-1]) / 1e3, "wall_seconds": wall,
            "kish_ess": float(w.sum() ** 2 / (w ** 2).sum() / len(w)), "populations": populations, "delta_f": delta,
            "first_half": halves[0], "second_half": halves[1],
            "transitions": {name: transitions(cvs[name]) for name in biases if name.startswith("phi")},
            "every_residue": {kind: every_residue_in(system, cvs, log_w, kind) for kind in ("alphaR", "C7eq_beta")}}


def estimate(values: list) -> dict:
    """Mean ± s.e. of the finite repeat values (t interval), as free_energies.json holds it
    (none finite: their mean, error inf)."""
    finite = [v for v in values if math.isfinite(v)]
    result = dataclasses.asdict(repeat_estimate(finite or values))
    result["n_excluded"] = len(values) - result["n"]
    return result


def summarise(rows: list, args, biases: dict, command: str) -> tuple[dict, dict]:
    """free_energies.json (the shipped format) and summary.json from the repeats' ``rows``."""
    keys, states = list(rows[0]["delta_f"]), list(rows[0]["populations"])
    settings = {"system": args.system, "cv": ",".join(biases), "method": "fixed-bias Langevin MD, reweighted",
                "profile": str(args.profile), "psi_profile": args.psi_profile and str(args.psi_profile),
                "scale": args.scale, "floor": args.floor, "psi_floor": args.psi_floor, "order": args.order,
                "bias_kJ_per_mol": {name: bias.as_dict() for name, bias in biases.items()},
                "ns": args.ns, "equilibration_ns": args.equilibration_ns, "repeats": args.repeats, "seed": args.seed,
                "sample_interval": args.sample_interval}
    method = (f"fixed bias on {', '.join(biases)} (−{args.scale}·kT·max(F − h, 0), F of {args.profile}, "
              f"h = {args.floor}" + (f"; of {args.psi_profile} for ψ, h = {args.psi_floor}" if args.psi_profile else "")
              + "), reweighted")
    free = {"unit": "kT",
            "source": f"benchmarks/RESULTS.md, 'References for the tetra- and hexapeptide (issue 22)': {method}, "
                      f"{len(rows)} independent repeats of {args.ns} ns",
            "command": command, "settings": settings,
            "delta_f": {k: estimate([r["delta_f"][k] for r in rows]) for k in keys},
            "per_repeat_delta_f": {k: [round(r["delta_f"][k], 3) for r in rows] for k in keys},
            "populations": {s: estimate([r["populations"][s] for r in rows]) for s in states},
            "uncertainty": "standard error over independent repeats (Student-t interval)"}
    halves = {k: {"first": estimate([r["first_half"][k] for r in rows]),
                  "second": estimate([r["second_half"][k] for r in rows]),
                  "second_minus_first": estimate([r["second_half"][k] - r["first_half"][k] for r in rows])}
              for k in keys}
    summary = {"settings": settings, "command": command, "repeats": rows, "halves": halves,
               "cost": {"simulated_ns": sum(r["simulated_ns"] for r in rows),
                        "wall_seconds": sum(r["wall_seconds"] for r in rows), "threads": args.threads,
                        "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count()}}
    return free, summary


def markdown(free: dict, summary: dict) -> str:
    """The table of ΔF, populations, halves and transitions for RESULTS.md."""
    lines = ["| ΔF pair | ΔF (kT), mean ± s.e. [95% t interval] | first half | second half | per repeat |",
             "|---|---|---|---|---|"]
    for key, e in free["delta_f"].items():
        h = summary["halves"][key]
        lines.append(f"| {key} | {e['value']:.2f} ± {e['error']:.2f} [{e['low']:.2f}, {e['high']:.2f}] "
                     f"| {h['first']['value']:.2f} ± {h['first']['error']:.2f} "
                     f"| {h['second']['value']:.2f} ± {h['second']['error']:.2f} "
                     f"| {', '.join(f'{v:.2f}' for v in free['per_repeat_delta_f'][key])} |")
    lines += ["", "| state | population, mean ± s.e. [95% t interval] |", "|---|---|"]
    for state, e in free["populations"].items():
        lines.append(f"| {state} | {100 * e['value']:.3f}% ± {100 * e['error']:.3f}% "
                     f"[{100 * e['low']:.3f}, {100 * e['high']:.3f}] |")
    rows = summary["repeats"]
    lines += ["", "| repeat | ns | wall | Kish ESS of the weights | crossings φ<0 ↔ φ>0 per dihedral "
              "| every residue αR / C7eq-β (reweighted) |", "|---|---|---|---|---|---|"]
    for i, r in enumerate(rows):
        crossings = ", ".join(f"{k} {v}" for k, v in r["transitions"].items())
        lines.append(f"| {i} | {r['simulated_ns']:.2f} | {r['wall_seconds'] / 60:.1f} min | {100 * r['kish_ess']:.1f}% "
                     f"| {crossings} | {100 * r['every_residue']['alphaR']:.1f}% / "
                     f"{100 * r['every_residue']['C7eq_beta']:.1f}% |")
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--system", required=True)
    parser.add_argument("--profile", type=Path, required=True, help="pmf.csv of a φ umbrella (kT)")
    parser.add_argument("--scale", type=float, default=0.8, help="λ: the bias is −λ·kT·F(φ)")
    parser.add_argument("--order", type=int, default=6, help="Fourier order of the fitted bias")
    parser.add_argument("--floor", type=float, default=0.0,
                        help="h (kT): the bias is −λ·kT·max(F − h, 0), F zero at its minimum")
    parser.add_argument("--psi-profile", type=Path, help="pmf.csv of a ψ umbrella: bias every psi* too")
    parser.add_argument("--psi-floor", type=float, default=0.0, help="h (kT) of the ψ bias")
    parser.add_argument("--ns", type=float, required=True, help="simulated time per repeat (ns)")
    parser.add_argument("--equilibration-ns", type=float, default=0.1, help="discarded at the start of each repeat")
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--seed", type=int, default=200, help="repeat r uses seed + r")
    parser.add_argument("--sample-interval", type=int, default=100, help="steps between frames")
    parser.add_argument("--checkpoint-frames", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args(argv)
    system = load_system(args.system)
    shapes = {"phi": FourierBias.from_profile(*read_profile(args.profile), system.kT, args.scale, args.order,
                                              args.floor)}
    if args.psi_profile is not None:
        shapes["psi"] = FourierBias.from_profile(*read_profile(args.psi_profile), system.kT, args.scale, args.order,
                                                 args.psi_floor)
    biases = {name: shapes[name[:3]] for name in system.dihedrals if name[:3] in shapes}
    command = "python benchmarks/peptide_reference.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    rows = []
    for r in range(args.repeats):
        path = args.out / f"repeat-{r}.npz"
        run_biased(system, biases, args.ns, path, seed=args.seed + r, sample_interval=args.sample_interval,
                   checkpoint_frames=args.checkpoint_frames, properties={"Threads": str(args.threads)},
                   progress=lambda done, total, r=r: print(f"repeat {r}: {done}/{total} frames", flush=True))
        rows.append(analyse_repeat(system, path, biases, args.equilibration_ns))
        print(json.dumps({"repeat": r, **{k: rows[-1][k] for k in ("kish_ess", "transitions", "delta_f")}}), flush=True)
    free, summary = summarise(rows, args, biases, command)
    for name, content in (("free_energies.json", free), ("summary.json", summary)):
        with atomic_path(args.out / name) as tmp:
            tmp.write_text(json.dumps(content, indent=1) + "\n")
    if args.markdown:
        print(markdown(free, summary))
    return free


if __name__ == "__main__":
    main()
