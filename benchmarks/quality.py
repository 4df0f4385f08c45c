"""Sample quality of a training preset, judged honestly: several seeds, fresh samples, a reference.

For each seed, trains ``boltzflow train SYSTEM --preset P --set seed=S`` into ``--out``
(a finished run is judged again, not retrained; an interrupted one resumes), then draws
``--samples`` fresh samples (a seed of their own) and reports, per run and as the median
over seeds:

- cost: target evaluations and wall time of training (threads as the run had them);
- Kish ESS without weight clipping, and PSIS k̂ next to it;
- the reweighted φ > 0 population and ΔF(φ < 0 → φ > 0) with its bootstrap interval;
- against ``--reference`` (an umbrella folder of ``boltzflow umbrella``; by default the system's
  shipped reference, ``boltzflow/runs/shipped/<system>/``, when it has one): ΔF − ΔF_ref (every
  residue's φ < 0 → φ > 0 for a longer peptide) and, for a 2-D (φ, ψ) folder, the total
  variation of the reweighted Ramachandran histogram;
- with ``--ais K``: the same for samples corrected by annealed importance sampling (K levels,
  HMC with 3 leapfrog steps, as ``boltzflow sample --ais K --ais-leapfrog 3``), written to
  ``RUN/ais-K.h5`` (kept: a later call judges that file again), with its cost per sample;
- the published anchors of the same system (CMT paper, Table 1), for scale.

    python benchmarks/quality.py --preset default --seeds 0,1,2 --reference refs/umbrella2d --markdown
    python benchmarks/quality.py --preset default --seeds 2 --ais 16 --reference refs/umbrella2d
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from boltzflow.runs import free_energy_report, load_reference, samples_for
from boltzflow.runs.references import shipped_reference
from boltzflow.systems import load_system
from boltzflow.io import read_attributes
from boltzflow.runs import write_samples
from boltzflow.training.config import resolve_config
from boltzflow.training.correction import AISCorrection
from boltzflow.training.run import load_run, train

# published Kish ESS of the same systems, GPU runs (CMT paper, Table 1): name, target evaluations, ESS
PUBLISHED = {
    "alanine-dipeptide": [("reverse KL (CMT paper, Table 1)", "2.56e8", 0.941), ("FAB", "2.13e8", 0.948),
                          ("TA-BG", "1e8", 0.958), ("CMT", "1e8", 0.977)],
    "alanine-tetrapeptide": [("FAB (CMT paper, Table 1)", "1e8–2e8", 0.636), ("TA-BG", "1e8–2e8", 0.658),
                             ("CMT", "1e8–2e8", 0.686)],
    "alanine-hexapeptide": [("CMT (CMT paper, Table 1)", "4e8", 0.296)],
}


def quality(drawn, reference=None, prefix: str = "") -> dict:
    """ESS, k̂, φ > 0 and ΔF(φ < 0 → φ > 0) (and against ``reference``) of weighted samples, for
    the first residue (``phi`` or ``phi1``) and, for longer peptides, the φ > 0 population of
    every residue; keys start with ``prefix``."""
    report = free_energy_report(drawn, reference, run=None)
    residues = [name[3:-len("_positive")] for name in report.populations
                if name.startswith("phi") and name.endswith("_positive")]
    first = f"phi{residues[0]}_negative -> phi{residues[0]}_positive"
    delta = report.delta_f.get(first)
    row = {"ess": report.ess, "khat": report.psis.khat,
           "phi_positive": report.populations[f"phi{residues[0]}_positive"].value,
           "delta_f": None if delta is None else delta.value,
           "delta_f_interval": None if delta is None else [delta.low, delta.high]}
    if len(residues) > 1:
        row["phi_positive_by_residue"] = [report.populations[f"phi{r}_positive"].value for r in residues]
    if reference is not None and report.comparison is not None:
        difference = report.comparison.delta_f_difference
        row["delta_f_minus_reference"] = difference.get(first)
        if len(residues) > 1:
            row["delta_f_minus_reference_by_residue"] = [difference.get(f"phi{r}_negative -> phi{r}_positive")
                                                         for r in residues]
        plane = report.comparison.ramachandran
        row["ramachandran_tv"] = None if plane is None else plane["total_variation"]
    return {prefix + key: value for key, value in row.items()}


def judge(run_dir: Path, samples: int, seed: int, reference=None, ais: int = 0) -> dict:
    """Fresh-sample quality of a trained run directory (and of its AIS-corrected samples)."""
    summary = json.loads((run_dir / "summary.json").read_text())
    drawn, _ = samples_for(run_dir, n=samples, seed=seed)
    row = {"run": str(run_dir), "seed": summary["seed"], "evaluations": summary["evaluations"],
           "wall_time_min": summary["wall_time"] / 60, "samples": samples, **quality(drawn, reference)}
    if ais:
        path = run_dir / f"ais-{ais}.h5"
        if not path.is_file() or read_attributes(path)["n"] < samples:
            write_samples(load_run(run_dir), path, samples, batch_size=1024, seed=seed, run_dir=run_dir,
                          correction=AISCorrection(ais, "hmc", leapfrog=3))
        attrs = read_attributes(path)
        corrected, _ = samples_for(path)
        row.update({"ais_levels": ais, "ais_samples": attrs["n"],
                    "ais_gradient_evaluations_per_sample": attrs["ais_gradient_evaluations_per_sample"],
                    "ais_ms_per_sample": 1e3 * attrs["sampling_seconds"] / attrs["n"],
                    **quality(corrected, reference, "ais_")})
    return row


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--system", default="alanine-dipeptide")
    parser.add_argument("--preset", default="default")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated training seeds")
    parser.add_argument("--set", dest="assignments", action="append", default=[], help="extra KEY=VALUE")
    parser.add_argument("--samples", type=int, default=100_000, help="fresh samples to judge each run on")
    parser.add_argument("--reference", type=Path,
                        help="umbrella folder to compare ΔF with; default the system's shipped reference, if any")
    parser.add_argument("--ais", type=int, default=0, help="also judge AIS-corrected samples with this many levels")
    parser.add_argument("--out", type=Path, default=Path("runs/quality"))
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args(argv)
    system = load_system(args.system)
    reference = shipped_reference(system) if args.reference is None else load_reference(args.reference, system)
    print(f"reference: {'none' if reference is None else reference.path}", flush=True)
    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        config = resolve_config(args.system, args.preset, options={"seed": seed}, assignments=args.assignments)
        run_dir = args.out / f"{args.preset}-seed{seed}"
        if not (run_dir / "model.pt").is_file():
            train(config, run_dir, resume=True)
        rows.append(judge(run_dir, args.samples, 10_000 + seed, reference, args.ais))
        print(json.dumps(rows[-1]), flush=True)
    if args.markdown:
        print(table(rows, args.preset, args.system))
    return rows


def table(rows: list[dict], preset: str, system: str) -> str:
    lines = ["| run | target evaluations | wall time | Kish ESS | PSIS k̂ | φ > 0 (reweighted, by residue) "
             "| ΔF(φ<0 → φ>0), first residue | − reference "
             "| Ramachandran TV |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(_line(f"{preset}, seed {r['seed']}", f"{r['evaluations']:.2e}", f"{r['wall_time_min']:.1f} min", r))
        if "ais_ess" in r:
            lines.append(_line(f"{preset}, seed {r['seed']} + AIS {r['ais_levels']}",
                               f"+ {r['ais_gradient_evaluations_per_sample']} gradients per sample",
                               f"{r['ais_ms_per_sample']:.1f} ms per sample",
                               {k[4:]: v for k, v in r.items() if k.startswith("ais_")}))
    ess = [r["ess"] for r in rows]
    lines.append(f"| **median of {len(rows)}** | | | **{100 * statistics.median(ess):.1f}%** "
                 f"(range {100 * min(ess):.1f}–{100 * max(ess):.1f}%) | | | | | |")
    for name, evaluations, published in PUBLISHED.get(system, []):
        lines.append(f"| published {name} | {evaluations} | GPU | {100 * published:.1f}% | | | | | |")
    return "\n".join(lines)


def _differences(r: dict) -> str:
    """ΔF − reference (kT) of the first residue, or of every residue (" / "), "–" where none."""
    values = r.get("delta_f_minus_reference_by_residue", [r.get("delta_f_minus_reference")])
    return " / ".join("–" if d is None else f"{d:+.2f}" for d in values) + ("" if values == [None] else " kT")


def _line(name: str, cost: str, wall: str, r: dict) -> str:
    low, high = r["delta_f_interval"] or (float("nan"), float("nan"))
    delta = float("nan") if r["delta_f"] is None else r["delta_f"]
    populations = " / ".join(f"{100 * p:.3f}%" for p in r.get("phi_positive_by_residue", [r["phi_positive"]]))
    return (f"| {name} | {cost} | {wall} | {100 * r['ess']:.1f}% | {r['khat']:.2f} | {populations} | "
            f"{delta:.2f} ({low:.2f}–{high:.2f}) kT | " + _differences(r) + " | "
            + ("–" if r.get("ramachandran_tv") is None else f"{r['ramachandran_tv']:.3f}") + " |")


if __name__ == "__main__":
    main()
