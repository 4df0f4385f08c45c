"""Speed of boltzflow's mixed circle/interval spline flow against normflows and a matrix-product floor.

The flow is the one a Boltzmann generator of alanine dipeptide needs: 60 dimensions
(21 bonds and 20 angles as intervals, 19 dihedrals as circles), 12 coupling layers of
rational-quadratic splines with 8 bins, conditioners with 2 residual blocks of 256 units
(normflows' ``num_blocks=2, num_hidden_channels=256``; see ``build_boltzflow``), batch 1024,
float32 on the CPU.

Three operations, each timed for every flow:

- ``sample_and_log_prob``: one sampling pass, without gradients;
- ``ML step``: log-density of a fixed data batch, backward, Adam step;
- ``reverse-KL step``: sampling pass with gradients, a quadratic stand-in target,
  loss ``mean(log_q - log_p)``, backward, Adam step.

Contenders: ``boltzflow``; ``normflows`` (its ``CircularCoupledRationalQuadraticSpline``
layers as normflows builds them, which add an unconditional elementwise spline on the
conditioning half of every layer); ``normflows-lean`` (the same layers with that extra
spline removed, so that the two libraries compute the same architecture); and the
``floor``: the conditioner networks' matrix products alone, at the same shapes and dtype
(``addmm`` forward; for the steps also the backward's two products per Linear).

Contenders are interleaved (A, B, C, A, B, C, ...); the table gives medians of the times
and medians of the per-repeat ratios, because a shared machine's speed drifts.

    python benchmarks/flows.py [--batch 1024] [--repeats 15] [--dtype float32] [--markdown]
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch
from torch import nn

from boltzflow.flows import Circle, Interval, spline_flow

from timing import machine, measure, print_table

OPERATIONS = ("sample_and_log_prob", "ML step", "reverse-KL step")
ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU}


@dataclass
class Config:
    batch: int = 1024
    layers: int = 12
    bins: int = 8
    hidden: int = 256
    blocks: int = 2
    activation: str = "gelu"
    dtype: torch.dtype = torch.float32
    seed: int = 0
    device: str = "cpu"


def domains(n_bonds: int = 21, n_angles: int = 20, n_dihedrals: int = 19):
    """Internal-coordinate domains in Z-matrix order [bonds | angles | dihedrals]."""
    return ([Interval(0.05, 0.25)] * n_bonds + [Interval(0.0, math.pi)] * n_angles
            + [Circle()] * n_dihedrals)


# ----------------------------------------------------------------------------- models
def build_boltzflow(doms, cfg: Config) -> nn.Module:
    """boltzflow's ``spline_flow`` with a residual conditioner of normflows' size.

    normflows' ResidualNet with ``num_blocks`` blocks is Linear(in, H), ``num_blocks``
    blocks of two Linear(H, H), Linear(H, out). boltzflow's residual MLP with
    ``hidden=(H,) * (2 * num_blocks + 1)`` has the same Linear layers (its skips go around
    each hidden Linear instead of each pair). Alternating masks, uniform base on circles
    and intervals, a learned ``CircularShift`` of the dihedrals between layers (defaults).
    """
    torch.manual_seed(cfg.seed)
    flow = spline_flow(doms, layers=cfg.layers, bins=cfg.bins,
                       hidden=(cfg.hidden,) * (2 * cfg.blocks + 1), residual=True,
                       activation=ACTIVATIONS[cfg.activation], seed=cfg.seed)
    return flow.to(cfg.device, cfg.dtype)


def build_normflows(doms, cfg: Config, unconditional: bool = True) -> nn.Module:
    """The same flow in normflows, as close as it can express it.

    * Layer ``i``: ``CircularCoupledRationalQuadraticSpline(60, num_blocks, H, ind_circ,
      num_bins, tail_bound, activation, reverse_mask=i % 2 == 1, init_identity=True)``
      (alternating masks, ResidualNet conditioner, circular features of the dihedrals),
      with a ``PeriodicShift`` of the dihedrals between layers (fixed, not learned).
    * normflows has no [a, b] interval: its splines act on [-B, B] with linear tails
      outside. The model therefore works on interval coordinates centred on the interval's
      midpoint, with ``B`` = half-width; dihedrals get circular splines on [-π, π].
    * ``unconditional=False`` removes the unconditional elementwise spline that normflows'
      wrapper always adds on the conditioning half (``apply_unconditional_transform=True``),
      which boltzflow's layer does not have.
    * Base: uniform on the box [-B, B] (a small class below: normflows' ``Uniform`` takes
      scalar bounds only). Its cost is negligible, like boltzflow's uniform base.
    """
    import normflows as nf

    dim = len(doms)
    ind_circ = [i for i, d in enumerate(doms) if d.kind == "circle"]
    bound = torch.tensor([(d.high - d.low) / 2 for d in doms], dtype=cfg.dtype)

    class BoxUniform(nf.distributions.BaseDistribution):
        def __init__(self, half_width):
            super().__init__()
            self.register_buffer("half_width", half_width)

        def forward(self, num_samples=1, context=None):
            u = torch.rand(num_samples, len(self.half_width), dtype=self.half_width.dtype,
                           device=self.half_width.device)
            z = (2 * u - 1) * self.half_width
            return z, self.log_prob(z)

        def log_prob(self, z, context=None):
            lp = -torch.log(2 * self.half_width).sum().expand(len(z))
            inside = (z.abs() <= self.half_width).all(-1)
            return torch.where(inside, lp, torch.full_like(lp, -math.inf))

    torch.manual_seed(cfg.seed)
    layers = []
    for i in range(cfg.layers):
        layer = nf.flows.CircularCoupledRationalQuadraticSpline(
            dim, cfg.blocks, cfg.hidden, ind_circ, num_bins=cfg.bins, tail_bound=bound,
            activation=ACTIVATIONS[cfg.activation], reverse_mask=i % 2 == 1, init_identity=True)
        if not unconditional:
            layer.prqct.unconditional_transform = None
        layers.append(layer)
        if i < cfg.layers - 1:
            layers.append(nf.flows.PeriodicShift(ind_circ, bound=math.pi, shift=0.5))
    return nf.NormalizingFlow(BoxUniform(bound), layers).to(cfg.device, cfg.dtype)


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def linear_shapes(module: nn.Module) -> list[tuple[int, int]]:
    """(in, out) of every Linear layer, in order."""
    return [(m.in_features, m.out_features) for m in module.modules() if isinstance(m, nn.Linear)]


# ----------------------------------------------------------------------------- contenders
def quadratic_target(center: torch.Tensor, scale: torch.Tensor) -> Callable:
    """log p(x) = -½ Σ ((x - center) / scale)², a cheap stand-in for a molecular energy."""
    return lambda x: -0.5 * (((x - center) / scale) ** 2).sum(-1)


def data_batch(doms, n: int, dtype, centred: bool, seed: int = 1, device: str = "cpu") -> torch.Tensor:
    """Fixed points inside the domains (centred on the interval midpoints for normflows)."""
    g = torch.Generator().manual_seed(seed)
    low = torch.tensor([d.low for d in doms], dtype=torch.float64)
    high = torch.tensor([d.high for d in doms], dtype=torch.float64)
    u = 0.02 + 0.96 * torch.rand(n, len(doms), generator=g, dtype=torch.float64)
    x = low + (high - low) * u
    return (x - (low + high) / 2 if centred else x).to(device, dtype)


def flow_contenders(name: str, flow: nn.Module, sample: Callable, log_prob: Callable,
                    data: torch.Tensor, target: Callable, batch: int) -> dict:
    """The three operations of one flow, as argument-less callables keyed (operation, name)."""
    opt = torch.optim.Adam(flow.parameters(), lr=1e-6)

    def sample_only():
        with torch.no_grad():
            return sample(batch)

    def ml_step():
        opt.zero_grad(set_to_none=True)
        loss = -log_prob(data).mean()
        loss.backward()
        opt.step()

    def rkl_step():
        opt.zero_grad(set_to_none=True)
        x, log_q = sample(batch)
        loss = (log_q - target(x)).mean()
        loss.backward()
        opt.step()

    return {(OPERATIONS[0], name): sample_only, (OPERATIONS[1], name): ml_step,
            (OPERATIONS[2], name): rkl_step}


def floor_contenders(shapes: Sequence[tuple[int, int]], batch: int, dtype, device: str = "cpu") -> dict:
    """The conditioners' matrix products alone: forward, and forward + backward.

    Per Linear(in, out) at batch B: forward ``addmm`` [B, in] x [in, out] (as nn.Linear);
    backward ``mm`` [B, out] x [out, in] (gradient of the input) and [out, B] x [B, in]
    (gradient of the weight).
    """
    g = torch.Generator().manual_seed(2)
    mats = [(torch.randn(batch, n_in, generator=g).to(device, dtype),
             (torch.randn(n_out, n_in, generator=g) / n_in ** 0.5).to(device, dtype),
             torch.zeros(n_out, dtype=dtype, device=device),
             torch.randn(batch, n_out, generator=g).to(device, dtype)) for n_in, n_out in shapes]

    def forward():
        for x, w, b, _ in mats:
            torch.addmm(b, x, w.t())

    def forward_backward():
        forward()
        for x, w, _, grad_y in reversed(mats):
            torch.mm(grad_y, w)
            torch.mm(grad_y.t(), x)

    return {(OPERATIONS[0], "floor"): forward, (OPERATIONS[1], "floor"): forward_backward,
            (OPERATIONS[2], "floor"): forward_backward}


def build_contenders(cfg: Config, with_normflows: bool = True):
    """(operation, contender) → callable, ordered by operation; and the models by name."""
    doms = domains()
    mid = torch.tensor([(d.low + d.high) / 2 for d in doms], dtype=cfg.dtype, device=cfg.device)
    half = torch.tensor([(d.high - d.low) / 2 for d in doms], dtype=cfg.dtype, device=cfg.device)
    flow = build_boltzflow(doms, cfg)
    models = {"boltzflow": flow}
    runs = flow_contenders("boltzflow", flow, flow.sample_and_log_prob, flow.log_prob,
                           data_batch(doms, cfg.batch, cfg.dtype, centred=False, device=cfg.device),
                           quadratic_target(mid, half / 2), cfg.batch)
    if with_normflows:
        for name, unconditional in (("normflows", True), ("normflows-lean", False)):
            model = build_normflows(doms, cfg, unconditional)
            models[name] = model
            runs.update(flow_contenders(
                name, model, model.sample, model.log_prob,
                data_batch(doms, cfg.batch, cfg.dtype, centred=True, device=cfg.device),
                quadratic_target(torch.zeros_like(mid), half / 2), cfg.batch))
    runs.update(floor_contenders(linear_shapes(flow), cfg.batch, cfg.dtype, cfg.device))
    order = sorted(runs, key=lambda key: OPERATIONS.index(key[0]))  # stable: keeps contenders' order
    return {key: runs[key] for key in order}, models


# ----------------------------------------------------------------------------- measuring
def summarize(times: dict) -> list[dict]:
    """One row per operation: median times (s) and medians of the per-repeat ratios."""
    ratio = lambda a, b: statistics.median(x / y for x, y in zip(a, b))
    rows = []
    for op in OPERATIONS:
        bf, fl = times[(op, "boltzflow")], times[(op, "floor")]
        row = {"operation": op, "boltzflow": statistics.median(bf),
               "floor": statistics.median(fl), "boltzflow/floor": ratio(bf, fl)}
        for name in ("normflows", "normflows-lean"):
            if (op, name) in times:
                row[name] = statistics.median(times[(op, name)])
                row[f"{name}/boltzflow"] = ratio(times[(op, name)], bf)
        rows.append(row)
    return rows


def normflows_version() -> str:
    try:
        import normflows
    except ImportError:
        return "not installed"
    return normflows.__version__


def table_cells(rows: list[dict]) -> tuple[list[str], list[list[str]]]:
    """The header and the cells of the table of ``summarize``'s rows (times in ms, ratios)."""
    ms = lambda s: f"{1e3 * s:.1f}"
    header = ["operation", "boltzflow ms"]
    with_nf = "normflows" in rows[0]
    if with_nf:
        header += ["normflows ms", "normflows / boltzflow", "normflows-lean ms",
                   "normflows-lean / boltzflow"]
    header += ["matmul floor ms", "boltzflow / floor"]
    cells = []
    for r in rows:
        c = [r["operation"], ms(r["boltzflow"])]
        if with_nf:
            c += [ms(r["normflows"]), f"{r['normflows/boltzflow']:.2f}x",
                  ms(r["normflows-lean"]), f"{r['normflows-lean/boltzflow']:.2f}x"]
        c += [ms(r["floor"]), f"{r['boltzflow/floor']:.2f}x"]
        cells.append(c)
    return header, cells


def render(rows: list[dict], markdown: bool) -> None:
    header, cells = table_cells(rows)
    print_table(header, cells, markdown, width=max(100, 20 * len(header)))


def parse(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls of each contender")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--layers", type=int, default=12, help="coupling layers")
    parser.add_argument("--bins", type=int, default=8)
    parser.add_argument("--hidden", type=int, default=256, help="width of the conditioners")
    parser.add_argument("--blocks", type=int, default=2,
                        help="residual blocks of two Linear(hidden, hidden) per conditioner")
    parser.add_argument("--activation", choices=sorted(ACTIVATIONS), default="gelu")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: the cores this process may use)")
    parser.add_argument("--no-normflows", action="store_true",
                        help="time boltzflow and the floor only")
    parser.add_argument("--markdown", action="store_true", help="print a markdown table")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> list[dict]:
    args = parse(argv)
    if args.threads:
        threads = args.threads
    elif hasattr(os, "sched_getaffinity"):
        threads = len(os.sched_getaffinity(0))
    else:
        threads = os.cpu_count() or 1
    torch.set_num_threads(threads)
    with_normflows = not args.no_normflows
    if with_normflows:
        try:
            import normflows  # noqa: F401
        except ImportError:
            print("normflows is not installed (pip install 'boltzflow[bench]'): "
                  "timing boltzflow and the floor only")
            with_normflows = False
    cfg = Config(batch=args.batch, layers=args.layers, bins=args.bins, hidden=args.hidden,
                 blocks=args.blocks, activation=args.activation, dtype=getattr(torch, args.dtype))
    runs, models = build_contenders(cfg, with_normflows)
    rows = summarize(measure(runs, args.repeats, args.warmup))
    print(f"{len(domains())}-dim flow (19 circle + 41 interval), {cfg.layers} coupling layers, "
          f"{cfg.bins} bins, conditioner Linear(in, {cfg.hidden}) + {cfg.blocks} x 2 "
          f"Linear({cfg.hidden}, {cfg.hidden}) + Linear({cfg.hidden}, out), {cfg.activation}, "
          f"batch {cfg.batch}, {args.dtype}; medians of {args.repeats} interleaved repeats")
    print("parameters: " + ", ".join(f"{k} {n_params(m):,}" for k, m in models.items()))
    print(machine(normflows=normflows_version()))
    render(rows, args.markdown)
    return rows


if __name__ == "__main__":
    main()
