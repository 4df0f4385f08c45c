"""Where do a generator's largest importance weights come from?

Draws ``-n`` fresh samples from a trained run and reports, for the top ``--top`` weights
against the bulk:

- the state (basin) they sit in, next to the state's reweighted and raw populations;
- their reduced energy u and flow log-density log q against the bulk's;
- the coordinates on which they are most unusual: per dimension of z, the fraction of the
  top samples in the outer 10% of an interval (interval edges) and the mean |z| in units of
  the bulk's spread, so a flow tail on one bond shows up by name;
- the Kish ESS, PSIS k̂ and the ESS with the top weights removed (how much a handful decide).

    python benchmarks/weights_diagnosis.py runs/alanine-dipeptide-rkl-seed0 -n 100000 --markdown
"""

from __future__ import annotations

import argparse
import json

import torch

from boltzflow.analysis.psis import pareto_khat
from boltzflow.analysis.weights import kish_ess, normalized_log_weights
from boltzflow.training.run import load_run


def diagnose(run_dir: str, n: int, top: int, seed: int = 0) -> dict:
    torch.manual_seed(seed)
    run = load_run(run_dir)
    samples = run.draw_batches(n, 8192)
    log_w = samples["log_w"].double()
    finite = torch.isfinite(log_w)
    order = torch.argsort(torch.where(finite, log_w, torch.full_like(log_w, -torch.inf)), descending=True)
    top_idx, bulk_idx = order[:top], order[top:][finite[order[top:]]]
    w = normalized_log_weights(log_w).exp()
    result = {"samples": n, "ess": kish_ess(log_w).item(), "khat": pareto_khat(log_w.numpy()),
              "ess_without_top": kish_ess(log_w[order[top:]]).item(),
              "top_weight_share": w[top_idx].sum().item(), "largest_weight": w[order[0]].item()}

    cvs = run.system.collective_variables(samples["xyz"])
    states = {}
    for name, state in run.system.states.items():
        inside = state.contains(cvs)
        states[name] = {"reweighted": w[inside].sum().item(), "raw": inside.double().mean().item(),
                        "top": inside[top_idx].double().mean().item()}
    result["states"] = states

    u, log_q = samples["u"].double(), samples["log_q"].double()
    result["u"] = {"top_median": u[top_idx].median().item(), "bulk_median": u[bulk_idx].median().item()}
    result["log_q"] = {"top_median": log_q[top_idx].median().item(), "bulk_median": log_q[bulk_idx].median().item()}

    z = samples["z"].double()
    labels = run.coordinates.labels
    centre, spread = z[bulk_idx].median(0).values, z[bulk_idx].std(0).clamp_min(1e-12)
    deviation = ((z[top_idx] - centre) / spread).abs().mean(0)
    edge = torch.zeros(z.shape[1], dtype=torch.float64)
    for k, domain in enumerate(run.coordinates.domains):
        if domain.kind == "interval":
            margin = 0.1 * (domain.high - domain.low)
            near = (z[:, k] < domain.low + margin) | (z[:, k] > domain.high - margin)
            edge[k] = near[top_idx].double().mean()
    worst = torch.argsort(deviation, descending=True)[:8].tolist()
    result["unusual_coordinates"] = [{"coordinate": labels[k], "kind": run.coordinates.domains[k].kind,
                                      "mean_abs_z_in_bulk_sd": deviation[k].item(),
                                      "top_near_interval_edge": edge[k].item()} for k in worst]
    result["any_top_near_edge"] = edge.max().item()
    return result


def markdown(result: dict) -> str:
    lines = [f"Kish ESS {100 * result['ess']:.2f}% on {result['samples']:,} samples, k̂ {result['khat']:.2f}; "
             f"the top weights carry {100 * result['top_weight_share']:.1f}% of the mass (largest "
             f"{100 * result['largest_weight']:.2f}%); ESS without them {100 * result['ess_without_top']:.2f}%.",
             "", "| state | reweighted | flow (raw) | among top weights |", "|---|---|---|---|"]
    for name, s in result["states"].items():
        lines.append(f"| {name} | {100 * s['reweighted']:.2f}% | {100 * s['raw']:.2f}% | {100 * s['top']:.1f}% |")
    lines += ["", f"u (kT): top median {result['u']['top_median']:.1f}, bulk median {result['u']['bulk_median']:.1f}; "
              f"log q: top median {result['log_q']['top_median']:.1f}, bulk median {result['log_q']['bulk_median']:.1f}",
              "", "| coordinate | kind | top: mean |z − median| / bulk sd | top within 10% of an interval edge |",
              "|---|---|---|---|"]
    for c in result["unusual_coordinates"]:
        lines.append(f"| {c['coordinate']} | {c['kind']} | {c['mean_abs_z_in_bulk_sd']:.2f} | "
                     f"{100 * c['top_near_interval_edge']:.0f}% |")
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", help="a run directory of boltzflow train")
    parser.add_argument("-n", type=int, default=100_000, help="fresh samples")
    parser.add_argument("--top", type=int, default=100, help="how many of the largest weights to examine")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args(argv)
    result = diagnose(args.run, args.n, args.top, args.seed)
    print(markdown(result) if args.markdown else json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
