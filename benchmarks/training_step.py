"""How a training step's time splits between the flow and the energy.

Trains ``--steps`` steps of a preset (annealing off, so that every step is the same reverse-KL
step) through ``boltzflow.training.run.train`` twice, in turn, ``--repeats`` times: with the
system's torch energy, and with the energy replaced by a free one (u = 0, same graph shape
for the flow). The difference of the two times per step is what the energy costs a step,
whatever part of it runs in the forward or the backward pass; the rest is the flow
(sampling, log-densities, backward pass, optimiser) and the internal coordinates.

    python benchmarks/training_step.py [--system alanine-tetrapeptide] [--preset default] [--steps 60] [--repeats 3]
"""

from __future__ import annotations

import argparse
import tempfile

import numpy as np

from boltzflow.energy.reduced import TorchEnergy
from boltzflow.training.config import resolve_config
from boltzflow.training.run import train

from timing import machine, print_table


def seconds_per_step(steps: int, config: dict, free: bool) -> float:
    """Training wall time per step, with the real energy or (``free``) u = 0."""
    forward = TorchEnergy.forward
    if free:
        TorchEnergy.forward = lambda self, xyz: 0 * xyz.sum((1, 2))
    try:
        with tempfile.TemporaryDirectory() as out:
            return train(config, out)["wall_time"] / steps
    finally:
        TorchEnergy.forward = forward


def main(argv=None) -> list:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--system", default="alanine-tetrapeptide")
    parser.add_argument("--preset", default="default")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=3, help="runs of each kind (their median)")
    parser.add_argument("--set", action="append", default=[], dest="assignments", help="KEY=VALUE, as train's --set")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args(argv)

    config = resolve_config(args.system, preset=args.preset, options={"steps": args.steps},
                            assignments=["anneal.start=0.0", "final_samples=256", "eval_batch_size=256",
                                         f"log_every={args.steps}", "checkpoint_every=1000000", *args.assignments])
    times: dict = {"energy": [], "free": []}
    for _ in range(args.repeats):
        for kind in times:
            times[kind].append(seconds_per_step(args.steps, config, free=kind == "free"))
    step, flow = (1e3 * float(np.median(times[kind])) for kind in ("energy", "free"))
    rows = [(args.system, str(config["batch_size"]), f"{step:.1f}", f"{flow:.1f}", f"{step - flow:.1f}",
             f"{100 * (step - flow) / step:.0f}%")]
    print(f"{args.system}, preset {args.preset} without annealing, {args.steps} steps, median of {args.repeats}")
    print(machine())
    print_table(("system", "batch", "ms per step", "ms per step with u = 0", "energy ms per step", "energy's share"),
                rows, args.markdown)
    return rows


if __name__ == "__main__":
    main()
