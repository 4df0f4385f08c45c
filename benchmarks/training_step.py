"""How a training step's time splits between the flow and the energy.

Trains ``--steps`` steps of a preset (annealing off, so that every step is the same reverse-KL
step) through ``boltzflow.training.run.train``, counting the conformations the energy
evaluates, then times energy + forces on a batch of the step's size on its own. The energy's
share of a step is (conformations per step × time per conformation) / time per step; the rest
is the flow (sampling, log-densities, backward pass, optimiser) and the internal coordinates.

    python benchmarks/training_step.py [--system alanine-tetrapeptide] [--preset default] [--steps 60]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

from boltzflow.energy.reduced import TorchEnergy
from boltzflow.systems import load_system
from boltzflow.training.config import resolve_config
from boltzflow.training.run import train

from energy import conformations, energy_and_forces
from timing import machine, measure, print_table


def counted(steps: int, config: dict) -> tuple[float, int]:
    """Seconds per step and conformations evaluated per step by the torch energy."""
    seen = [0]
    forward = TorchEnergy.forward

    def counting(self, xyz):
        seen[0] += len(xyz)
        return forward(self, xyz)

    TorchEnergy.forward = counting
    try:
        with tempfile.TemporaryDirectory() as out:
            summary = train(config, out)
    finally:
        TorchEnergy.forward = forward
    evaluated = seen[0] - config["final_samples"]     # the final evaluation is not a step
    return summary["wall_time"] / steps, round(evaluated / steps)


def main(argv=None) -> list:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--system", default="alanine-tetrapeptide")
    parser.add_argument("--preset", default="default")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=7, help="timed energy calls (their median)")
    parser.add_argument("--set", action="append", default=[], dest="assignments", help="KEY=VALUE, as train's --set")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args(argv)

    config = resolve_config(args.system, preset=args.preset, options={"steps": args.steps},
                            assignments=["anneal.start=0.0", "final_samples=256", "eval_batch_size=256",
                                         f"log_every={args.steps}", "checkpoint_every=1000000", *args.assignments])
    step_seconds, per_step = counted(args.steps, config)
    system = load_system(args.system)
    dtype = getattr(torch, config["dtype"])
    energy = system.energy("torch").to(dtype)
    run = energy_and_forces(energy, torch.tensor(conformations(system, per_step), dtype=dtype))
    energy_seconds = sorted(measure({"energy": run}, args.repeats)["energy"])[args.repeats // 2]
    rows = [(system.name, f"{config['batch_size']}", f"{per_step}", f"{1e3 * step_seconds:.1f}",
             f"{1e3 * energy_seconds:.1f}", f"{100 * energy_seconds / step_seconds:.0f}%")]
    print(f"{args.system}, preset {args.preset} without annealing, {args.steps} steps")
    print(machine())
    print_table(("system", "batch", "conformations per step", "ms per step", "energy + forces ms", "energy's share"),
                rows, args.markdown)
    return rows


if __name__ == "__main__":
    main()
