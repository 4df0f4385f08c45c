"""Energy + forces throughput of implicit-solvent peptides: OpenMM vs the torch backend.

Contenders, timed side by side in one run (interleaved repeats; medians of rates and of
the per-repeat ratios, since a shared machine's speed drifts):

- ``openmm-loop``: one OpenMM CPU Context (1 thread), conformations set one by one, as
  peer libraries evaluate them;
- ``openmm-reference-loop``: the same with the Reference platform, which on some virtual
  machines is faster per call than the CPU platform (whose threads synchronise on every call);
- ``openmm-pool``: boltzflow's pool of OpenMM worker processes (one per core);
- ``torch``: boltzflow's torch force field on the whole batch (float32, CPU, eager; it cuts
  the batch into cache-sized chunks itself);
- ``torch-compiled``: the same through ``torch.compile`` (``compile=True``);
- ``torch-cuda``: float32 on the GPU, when one is present.

Every contender returns energies and forces (the torch ones by autograd). Figures are
conformations per second and ratios to ``openmm-loop`` (with ``--scaling``: to the faster of the two loops).

    python benchmarks/energy.py [--batch 1024] [--repeats 15] [--markdown]

``--scaling`` times the contenders against atom count instead: alanine di-, tetra- and
hexapeptide (22, 42, 62 atoms) and peptides built by ``boltzflow systems new --sequence``
(``--sequences``, default Ace-(Ala)9-Nme, chignolin's GYDPETGTW and Ace-(Ala)19-Nme: 102,
140 and 202 atoms), all in the tetrapeptide's force field (Amber ff99SB-ILDN, OBC2), so
that only the size changes. It also gives the torch force field's memory: how much one call
on the whole batch raises a fresh process's peak resident memory.

    python benchmarks/energy.py --scaling [--batch 1024] [--repeats 7] [--markdown]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np
import openmm
import torch

from boltzflow.energy.openmm_backend import OpenMMEvaluator, OpenMMPool
from boltzflow.io import read_toml
from boltzflow.systems import load_system

from timing import machine, measure, print_table


def conformations(system, batch: int, seed: int = 0) -> np.ndarray:
    """Thermal-like perturbations of the minimised structure, [batch, N, 3] nm."""
    rng = np.random.default_rng(seed)
    return system.positions[None] + 0.01 * rng.standard_normal((batch, system.n_atoms, 3))


def energy_and_forces(energy, x: torch.Tensor):
    """A call of ``energy`` on positions ``x`` [B, N, 3] nm and its gradient, returning
    (u [B] in kT, ∂u/∂x [B, N, 3] in kT/nm); on CUDA it waits for the kernels."""

    def run():
        positions = x.clone().requires_grad_()
        u = energy(positions)
        (grad,) = torch.autograd.grad(u.sum(), positions)
        if x.device.type == "cuda":
            torch.cuda.synchronize(x.device)
        return u, grad

    return run


def torch_contender(system, xyz: np.ndarray, device: str, compile: bool, dtype: torch.dtype = torch.float32):
    energy = system.energy("torch", compile=compile).to(device, dtype)
    return energy_and_forces(energy, torch.tensor(xyz, dtype=dtype, device=device))


def contenders(system, xyz: np.ndarray, loop_size: int, compiled: bool = True):
    """name → (callable, conformations per call); the OpenMM loop runs on a subset."""
    xml = openmm.XmlSerializer.serialize(system.openmm_system)
    single = OpenMMEvaluator(xml, "CPU")
    pool = OpenMMPool(system.openmm_system, workers=os.cpu_count() or 1, platform="CPU")
    reference = OpenMMEvaluator(xml, "Reference")
    out = {
        "openmm-loop": (lambda: single.evaluate(xyz[:loop_size]), loop_size),
        "openmm-reference-loop": (lambda: reference.evaluate(xyz[:loop_size]), loop_size),
        "openmm-pool": (lambda: pool.evaluate(xyz), len(xyz)),
        "torch": (torch_contender(system, xyz, "cpu", compile=False), len(xyz)),
    }
    if compiled:
        out["torch-compiled"] = (torch_contender(system, xyz, "cpu", compile=True), len(xyz))
    if torch.cuda.is_available():
        out["torch-cuda"] = (torch_contender(system, xyz, "cuda", compile=False), len(xyz))
    return out, pool


def rates_of(system, batch: int, loop_size: int, repeats: int, compiled: bool = True) -> dict:
    """Contender → conformations per second of each repeat (numpy array)."""
    xyz = conformations(system, batch)
    runs, pool = contenders(system, xyz, min(loop_size, batch), compiled)
    try:
        times = measure({name: run for name, (run, _) in runs.items()}, repeats)
    finally:
        pool.close()
    return {name: np.array([runs[name][1] / t for t in ts]) for name, ts in times.items()}


def built_peptides(sequences, folder: str) -> list:
    """Ace-(sequence)-Nme of each sequence in the tetrapeptide's force field, built in ``folder``."""
    from boltzflow.system_builder import new_system

    files = read_toml(load_system("alanine-tetrapeptide").folder / "system.toml")["forcefield"]["files"]
    return [load_system(new_system(os.path.join(folder, f"ace-{sequence.lower()}-nme"), sequence=sequence,
                                   forcefield=files)) for sequence in sequences]


def scaling_systems(sequences, folder: str) -> list:
    """Alanine di-, tetra-, hexapeptide and the ``built_peptides``, all in the tetrapeptide's force field."""
    return [load_system(name) for name in ("alanine-dipeptide-amber99sbildn", "alanine-tetrapeptide",
                                           "alanine-hexapeptide")] + built_peptides(sequences, folder)


PEAK_MEMORY = """
import resource, sys, torch
from boltzflow.systems import load_system
sys.path.insert(0, {bench!r})
from energy import conformations, energy_and_forces
system = load_system({system!r})
xyz = torch.tensor(conformations(system, {batch}), dtype=torch.float32)
run = energy_and_forces(system.energy("torch").float(), xyz)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
run()
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)
"""


def peak_memory(system, batch: int) -> float:
    """Bytes by which one torch energy + forces call of ``batch`` conformations (float32) raises
    a fresh process's peak resident memory (after loading the system): what the call's
    temporaries need beyond what loading already took."""
    code = PEAK_MEMORY.format(bench=os.path.dirname(os.path.abspath(__file__)), system=str(system.folder), batch=batch)
    kib = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return 1024 * float(kib)


def report(title: str, header: tuple, rows: list, markdown: bool) -> None:
    print(title)
    print(machine(OpenMM=openmm.__version__))
    print_table(header, rows, markdown)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--system", default="alanine-dipeptide")
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--loop-size", type=int, default=128, help="conformations per OpenMM-loop call")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--scaling", action="store_true", help="time the contenders against atom count")
    parser.add_argument("--sequences", default="AAAAAAAAA,GYDPETGTW,AAAAAAAAAAAAAAAAAAA",
                        help="the built peptides of --scaling, comma-separated")
    parser.add_argument("--eager", action="store_true", help="leave out torch-compiled (minutes of compilation)")
    parser.add_argument("--markdown", action="store_true", help="print a markdown table")
    args = parser.parse_args(argv)

    if args.scaling:
        rows = []
        with tempfile.TemporaryDirectory() as folder:
            for system in scaling_systems(args.sequences.split(","), folder):
                # the machine is shared: its speed drifts, so ratios are taken within each repeat
                rates = rates_of(system, args.batch, args.loop_size, args.repeats, compiled=not args.eager)
                base = np.maximum(rates["openmm-loop"], rates["openmm-reference-loop"])   # the faster context
                torches = [name for name in rates if name.startswith("torch")]
                rows.append((system.name, str(system.n_atoms),
                             *(f"{1e6 / np.median(r):.1f}" for r in rates.values()),
                             *(f"{np.median(rates[name] / base):.1f}x" for name in torches),
                             f"{peak_memory(system, args.batch) / 2**20:.0f}"))
        header = ("system", "atoms", *(f"{name} µs/conformation" for name in rates),
                  *(f"{name} vs the faster loop" for name in torches), "torch call's peak MiB")
        report(f"energy + forces against size, batch {args.batch}, median of {args.repeats}", header, rows,
               args.markdown)
        return
    system = load_system(args.system)
    rates = rates_of(system, args.batch, args.loop_size, args.repeats)
    base = rates["openmm-loop"]
    rows = [(name, f"{np.median(r):,.0f}", f"{1e6 / np.median(r):.1f}", f"{np.median(r / base):.1f}x")
            for name, r in rates.items()]
    header = ("contender", "conformations/s", "µs/conformation", "vs openmm-loop (median ratio)")
    report(f"{system.name}, batch {args.batch}, energy + forces, median of {args.repeats}", header, rows,
                args.markdown)


if __name__ == "__main__":
    main()
