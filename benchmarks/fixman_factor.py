"""How much does Fixman's mass-metric factor move a population of a constrained system?

MD with the constraints (OpenMM, LangevinMiddle, 2 fs, friction 1/ps, the system's
temperature) samples exp(−u) det(Z_m)^½ on the constraint surface; the flow's target is
exp(−u) with the Z-matrix measure (``boltzflow.coordinates.fixman``). Reweighting every
frame by det(Z_m)^−½ turns the one into the other: the table gives, for every named state,
its fraction of the MD frames and the reweighted fraction, on the same frames. The MD is
short, so neither is a converged population; their difference is the factor's effect.

    python benchmarks/fixman_factor.py alanine-tetrapeptide-hbonds --ps 200 [--markdown]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import openmm
import openmm.unit as unit
import torch

from boltzflow.analysis.weights import kish_ess
from boltzflow.coordinates import fixman_log_factor
from boltzflow.systems import load_system

TIMESTEP_PS = 0.002
FRAME_PS = 0.5


def constrained_md(system, ps: float, equilibration_ps: float, seed: int) -> np.ndarray:
    """Frames [n, n_atoms, 3] (nm) every ``FRAME_PS`` of Langevin MD with the System's constraints."""
    integrator = openmm.LangevinMiddleIntegrator(system.temperature * unit.kelvin, 1 / unit.picosecond,
                                                 TIMESTEP_PS * unit.picoseconds)
    integrator.setRandomNumberSeed(seed + 1)
    context = openmm.Context(system.openmm_system, integrator, openmm.Platform.getPlatformByName("CPU"),
                             {"Threads": "1"})
    context.setPositions(system.positions)
    context.applyConstraints(1e-8)
    openmm.LocalEnergyMinimizer.minimize(context)
    context.setVelocitiesToTemperature(system.temperature * unit.kelvin, seed + 1)
    steps = round(FRAME_PS / TIMESTEP_PS)
    integrator.step(round(equilibration_ps / TIMESTEP_PS))
    frames = []
    for _ in range(max(1, round(ps / FRAME_PS))):
        integrator.step(steps)
        frames.append(context.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(unit.nanometer))
    return np.array(frames)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("system", help="a system with constraints, e.g. alanine-tetrapeptide-hbonds")
    parser.add_argument("--ps", type=float, default=200.0, help="sampled MD (ps), a frame every 0.5 ps")
    parser.add_argument("--equilibration-ps", type=float, default=20.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args(argv)
    system = load_system(args.system)
    if not system.constrained_bonds:
        parser.error(f"{args.system} has no constraints; choose one such as alanine-tetrapeptide-hbonds")
    start = time.perf_counter()
    xyz = torch.tensor(constrained_md(system, args.ps, args.equilibration_ps, args.seed))
    seconds = time.perf_counter() - start
    masses = [system.openmm_system.getParticleMass(i).value_in_unit(unit.dalton) for i in range(system.n_atoms)]
    factor = fixman_log_factor(xyz, [c[:2] for c in system.constrained_bonds], masses)
    log_w = -(factor - factor.mean())
    weights = torch.softmax(log_w, 0)
    cvs = system.collective_variables(xyz)
    states = {}
    for name, state in system.states.items():
        inside = state.contains(cvs).double()
        states[name] = {"md": inside.mean().item(), "reweighted": (weights * inside).sum().item()}
    result = {"frames": len(xyz), "md_seconds": seconds, "factor_std": factor.std().item(),
              "factor_range": (factor.max() - factor.min()).item(), "ess": kish_ess(log_w).item(), "states": states}
    print(f"{args.system}: {len(xyz)} frames of constrained MD ({args.ps:g} ps after {args.equilibration_ps:g} ps, "
          f"{seconds:.0f} s on one CPU thread); ½ log det Z_m: std {result['factor_std']:.4f}, "
          f"range {result['factor_range']:.4f}; Kish ESS of the weights {100 * result['ess']:.2f}%")
    if args.markdown:
        print("| state | MD fraction | reweighted to the flow's target | ratio |\n|---|---:|---:|---:|")
    for name, s in states.items():
        ratio = s["reweighted"] / s["md"] if s["md"] > 0 else float("nan")
        print(f"| {name} | {s['md']:.4f} | {s['reweighted']:.4f} | {ratio:.4f} |" if args.markdown
              else f"{name}: MD {s['md']:.4f}, reweighted {s['reweighted']:.4f} (ratio {ratio:.4f})")
    return result


if __name__ == "__main__":
    main()
