"""Is an umbrella reference equilibrated? ΔF from the first and from the second half of every window.

For each repeat of a finished ``boltzflow umbrella`` folder, one MBAR over the first half of
every window's frames and one over the second half (the same windows, the same states).
Windows that start out of equilibrium (each starts from its neighbour's last state) bias the
first half more than the second; a drift between the halves that is large against its
standard error over repeats says the windows are too short.

    python benchmarks/umbrella_halves.py refs/umbrella2d [--markdown]
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

from boltzflow.analysis.mbar import mbar_free_energies
from boltzflow.reference.umbrella import load_umbrella, region_pairs


def halves(folder: Path) -> list[dict]:
    """Per repeat: ΔF (kT) of every state pair from the first and from the second half of each window."""
    data = load_umbrella(folder)
    settings = data["settings"]
    cvs = settings["cv"].split(",")
    named = {k: (v if isinstance(v, dict) else {cvs[0]: v}) for k, v in data["regions"].items()}
    regions = {k: {cvs.index(c): r for c, r in v.items()} for k, v in named.items()}
    pairs = region_pairs(named)
    per_repeat = len(data["centres"])
    rows = []
    for r in range(len(data["cv"]) // per_repeat):
        windows = data["cv"][r * per_repeat:(r + 1) * per_repeat]
        middle = windows.shape[1] // 2
        row = {"repeat": r}
        for half, part in (("first", windows[:, :middle]), ("second", windows[:, middle:])):
            result = mbar_free_energies(list(part), data["centres"], settings["force_constant"], data["kT"],
                                        regions=regions, decorrelate=False)
            row[half] = {f"{a} -> {b}": result.delta_f(a, b).value for a, b in pairs}
        rows.append(row)
    return rows


def summary(rows: list[dict]) -> dict:
    """Mean ± standard error over repeats of each half and of their difference (second − first)."""
    out = {}
    for key in rows[0]["first"]:
        first = [r["first"][key] for r in rows]
        second = [r["second"][key] for r in rows]
        drift = [b - a for a, b in zip(first, second)]
        out[key] = {name: (float(np.mean(v)), float(np.std(v, ddof=1) / len(v) ** 0.5) if len(v) > 1 else math.nan)
                    for name, v in (("first", first), ("second", second), ("second - first", drift))}
    return out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args(argv)
    rows = halves(args.folder)
    result = summary(rows)
    settings = load_umbrella(args.folder)["settings"]
    print(f"{args.folder}: {len(rows)} repeats, windows of {settings['equilibration_ps']:g} + {settings['ps']:g} ps, "
          "halves of the sampled part; ± the standard error over the repeats")
    if args.markdown:
        print("| ΔF (kT) | first half | second half | second − first |\n|---|---|---|---|")
    for key, values in result.items():
        cells = [f"{m:.3f} ± {e:.3f}" for m, e in values.values()]
        print(f"| {key.replace('->', '→')} | " + " | ".join(cells) + " |" if args.markdown
              else f"{key}: " + ", ".join(f"{name} {cell}" for name, cell in zip(values, cells)))
    return result


if __name__ == "__main__":
    main()
