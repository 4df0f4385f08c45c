"""A flow on a cylinder (the normflows paper's example): x ~ N(0, 1), φ | x ~ von Mises(3x, 1).

A spline flow over (Real, Circle) trained by reverse KL from the unnormalised density
alone; its importance-sampling ESS and log Z estimate are checked against the exact
log Z, and ``plot_densities`` draws the flow's density beside the target's.
Run ``python -m boltzflow.examples.cylinder [figure.png]``.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import torch

from boltzflow.analysis import kish_ess, log_normalizer
from boltzflow.energy.toys import Cylinder
from boltzflow.flows import Flow, spline_flow
from boltzflow.training import reverse_kl


@dataclass
class CylinderResult:
    flow: Flow
    target: Cylinder
    ess: float      # Kish ESS fraction of 20 000 samples
    log_z: float    # importance-sampling estimate; target.log_z is exact


def train_cylinder(steps: int = 300, batch_size: int = 256, lr: float = 3e-3, seed: int = 0) -> CylinderResult:
    """Train a 4-layer spline flow by reverse KL (about 5 s on a CPU)."""
    torch.manual_seed(seed)
    target = Cylinder()
    flow = spline_flow(target.domains, layers=4, bins=8, hidden=(32, 32))
    log_p = lambda x: -target(x)  # noqa: E731
    optimizer = torch.optim.Adam(flow.parameters(), lr=lr)
    for _ in range(steps):
        loss, _ = reverse_kl(flow, log_p, batch_size)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        x, log_q = flow.sample_and_log_prob(20_000)
        log_w = log_p(x) - log_q
    return CylinderResult(flow, target, kish_ess(log_w).item(), log_normalizer(log_w).item())


def plot_densities(result: CylinderResult, path: Union[str, Path], grid: int = 200) -> None:
    """Target density and flow density on x ∈ [-3, 3], φ ∈ [-π, π), side by side (PNG)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from boltzflow.io import atomic_path

    xs, phis = torch.linspace(-3, 3, grid), torch.linspace(-math.pi, math.pi, grid + 1)[:-1]
    points = torch.cartesian_prod(xs, phis)
    with torch.no_grad():
        target = torch.exp(-result.target(points) - result.target.log_z).reshape(grid, grid)
        flow = result.flow.log_prob(points).exp().reshape(grid, grid)
    figure = Figure(figsize=(8, 3.4), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, 2, sharey=True)
    for ax, density, title in zip(axes, (target, flow), ("target", f"flow (ESS {100 * result.ess:.1f}%)")):
        image = ax.imshow(density.T.numpy(), origin="lower", aspect="auto", extent=(-3, 3, -math.pi, math.pi),
                          cmap="viridis", vmin=0, vmax=float(target.max()))
        ax.set(title=title, xlabel="x")
    axes[0].set_ylabel("φ (rad)")
    figure.colorbar(image, ax=axes, label="density")
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=110)


def main(argv: Optional[list[str]] = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    result = train_cylinder()
    print(f"ESS {100 * result.ess:.1f}%, log Z {result.log_z:.4f} (exact {result.target.log_z:.4f})")
    if argv:
        plot_densities(result, argv[0])
        print(f"wrote {argv[0]}")


if __name__ == "__main__":
    main()
