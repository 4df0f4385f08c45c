"""A stand-in for ``boltzflow train`` that keeps its run-directory contract, for fast tests of
job scripts: ``fake_train.py train SYSTEM [--seed S] [--steps N] [--set K=V ...] --out OUT [--resume]``.

Every step (0.05 s) appends to ``metrics.jsonl`` and records the step in
``checkpoints/last.pt``; USR1 or TERM stops it with exit 75; at the end it writes
``summary.json``. ``--resume`` continues from the recorded step.
"""

import argparse
import json
import signal
import sys
import time
from pathlib import Path

parser = argparse.ArgumentParser()
parser.add_argument("command", choices=["train"])
parser.add_argument("system")
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--steps", type=int, default=20)
parser.add_argument("--out", type=Path, required=True)
parser.add_argument("--resume", action="store_true")
args, _ = parser.parse_known_args()

stop = []
for s in (signal.SIGUSR1, signal.SIGTERM):
    signal.signal(s, lambda n, f: stop.append(signal.Signals(n).name))
checkpoint = args.out / "checkpoints" / "last.pt"
checkpoint.parent.mkdir(parents=True, exist_ok=True)
step = int(checkpoint.read_text()) if args.resume and checkpoint.is_file() else 0
(args.out / "config.toml").write_text(f'system = "{args.system}"\nobjective = "rkl"\nseed = {args.seed}\n')
with open(args.out / "metrics.jsonl", "a") as metrics:
    while step < args.steps and not stop:
        time.sleep(0.05)
        step += 1
        metrics.write(json.dumps({"step": step, "loss": 1.0 / step, "ess": 0.5}) + "\n")
        metrics.flush()
checkpoint.write_text(str(step))
summary = {"system": args.system, "objective": "rkl", "seed": args.seed, "step": step, "steps": args.steps,
           "stopped": "signal" if stop else "done", "ess": 0.1 * (args.seed + 1)}
(args.out / "summary.json").write_text(json.dumps(summary))
sys.exit(75 if stop else 0)
