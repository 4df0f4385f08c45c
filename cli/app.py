"""The ``boltzflow`` command: a typer application.

Each command is a thin layer over the Python API; user mistakes raise
``BoltzflowError`` and are printed as one line without a traceback.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from boltzflow.cli.console import console, err_console, progress_bar
from boltzflow.errors import BoltzflowError


app = typer.Typer(
    name="boltzflow",
    help="Sample molecular Boltzmann distributions with normalizing flows.",
    epilog="[bold]Examples[/bold]:\n\n"
           "boltzflow train alanine-dipeptide --out runs/ala  [dim](about 10 min on two cores)[/dim]\n"
           "boltzflow sample runs/ala -n 100000\n"
           "boltzflow free-energy runs/ala --plots figures\n"
           "boltzflow umbrella alanine-dipeptide --cv phi --out reference\n"
           "boltzflow COMMAND --help  [dim](its options and more examples)[/dim]",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
    pretty_exceptions_show_locals=False,
)


systems_app = typer.Typer(help="List the molecular systems and show their details.",
                          invoke_without_command=True, no_args_is_help=False)
app.add_typer(systems_app, name="systems")


@systems_app.callback()
def systems_list(ctx: typer.Context) -> None:
    """List the shipped molecular systems: atoms, flow dimensions and a one-line description.

    [bold]Examples[/bold]: boltzflow systems · boltzflow systems show alanine-tetrapeptide ·
    boltzflow systems new my-peptide --sequence GYDPETGTW
    """
    if ctx.invoked_subcommand is not None:
        return
    from boltzflow.catalog import system_descriptions  # the files alone: no OpenMM, no torch

    table = Table(title="molecular systems")
    table.add_column("name", style="bold", no_wrap=True)
    table.add_column("atoms", justify="right")
    table.add_column("dimensions", justify="right")
    table.add_column("description")
    for name, (description, n_atoms, dimensions) in system_descriptions().items():
        table.add_row(name, str(n_atoms), str(dimensions), description)
    console.print(table)
    console.print("A folder with system.toml, or a .toml path, works wherever a name does; "
                  "[bold]boltzflow systems new[/bold] writes one from a sequence or a PDB file.")


@systems_app.command("new")
def systems_new(
    folder: Path = typer.Argument(..., help="Folder to write (new, or empty): system.toml and structure.pdb."),
    sequence: Optional[str] = typer.Option(None, "--sequence", help="One-letter codes of a peptide, "
                                           "capped with Ace and Nme, e.g. AAA (alanine tetrapeptide)."),
    pdb: Optional[Path] = typer.Option(None, "--pdb", help="A structure instead; hydrogens are added where missing."),
    forcefield: Optional[list[str]] = typer.Option(None, "--forcefield", help="OpenMM force-field XML, repeated "
                                                   "(default: amber99sbildn.xml amber99_obc.xml)."),
    temperature: float = typer.Option(300.0, "--temperature", help="Temperature (K)."),
    name: Optional[str] = typer.Option(None, "--name", help="System name (default: the folder's name)."),
    constraints: str = typer.Option("none", "--constraints", help="Bonds OpenMM constrains: none | hbonds | "
                                    "allbonds | hangles; the flow then holds them fixed (hbonds: the published "
                                    "peptide benchmarks' set-up)."),
) -> None:
    """Write a new system folder from a peptide sequence or a PDB file.

    Hydrogens come from OpenMM's Modeller (pH 7), the structure is minimised, chiral centres
    are found from the bonds with the handedness of the structure, and a peptide's φ/ψ are
    named (phi1, psi1, …) with their states. The folder then works wherever a system name does.

    [bold]Examples[/bold]:

    boltzflow systems new my-peptide --sequence AAA

    boltzflow systems new mine --pdb mine.pdb --forcefield amber14-all.xml --forcefield implicit/obc2.xml

    boltzflow train my-peptide --out runs/my-peptide
    """
    import shlex

    from boltzflow.system_builder import DEFAULT_FORCEFIELD, new_system

    words = ["boltzflow systems new", folder.name] + (["--sequence", sequence] if sequence else [])
    words += (["--pdb", pdb.name] if pdb else []) + [w for f in forcefield or () for w in ("--forcefield", f)]
    words += (["--temperature", f"{temperature:g}"] if temperature != 300.0 else []) + (["--name", name] if name else [])
    words += ["--constraints", constraints] if constraints != "none" else []
    made_by = " ".join(shlex.quote(w) if w != words[0] else w for w in words)
    out = new_system(folder, sequence=sequence, pdb=pdb, forcefield=forcefield or DEFAULT_FORCEFIELD,
                     temperature=temperature, name=name, made_by=made_by, constraints=constraints)
    systems_show(str(out))


@systems_app.command("show")
def systems_show(name: str = typer.Argument(..., help="System name, folder or system.toml path.")) -> None:
    """Show a system: force field, temperature, atoms, named dihedrals and states.

    [bold]Example[/bold]: boltzflow systems show alanine-dipeptide
    """
    from boltzflow.systems import load_system

    system = load_system(name)
    table = Table(title=system.name, show_header=False)
    table.add_row("description", system.description)
    table.add_row("folder", str(system.folder))
    table.add_row("temperature", f"{system.temperature:g} K (kT = {system.kT:.4f} kJ/mol)")
    table.add_row("atoms", f"{system.n_atoms} ({', '.join(str(r) for r in system.topology.residues)})")
    forces = [type(f).__name__ for f in system.openmm_system.getForces()]
    table.add_row("forces", ", ".join(forces))
    table.add_row("constraints", f"{len(system.constrained_bonds)} bonds held fixed (not flow coordinates)")
    for cv, atoms in system.dihedrals.items():
        names = "-".join(str(system.topology.atom(a).name) for a in atoms)
        table.add_row(f"dihedral {cv}", f"{list(atoms)}  ({names})")
    for state in system.states.values():
        ranges = ", ".join(f"{cv} ∈ [{math.degrees(lo):.0f}°, {math.degrees(hi):.0f}°)"
                           for cv, (lo, hi) in state.ranges.items())
        table.add_row(f"state {state.name}", ranges)
    for c in system.chiral_centers:
        table.add_row(f"chiral centre {c.get('name', c['center'])}", f"atom {c['center']}, expected {c.get('expected', '?')}")
    console.print(table)


@app.command()
def info() -> None:
    """Show versions and the compute devices boltzflow can use.

    [bold]Example[/bold]: boltzflow info
    """
    import platform

    import boltzflow

    table = Table(title="boltzflow", show_header=False)
    table.add_row("boltzflow", boltzflow.__version__)
    table.add_row("python", platform.python_version())
    table.add_row("torch", _torch_devices())
    try:
        import openmm

        platforms = [openmm.Platform.getPlatform(i).getName() for i in range(openmm.Platform.getNumPlatforms())]
        table.add_row("openmm", f"{openmm.__version__} (platforms: {', '.join(platforms)})")
    except ImportError:
        table.add_row("openmm", "not installed")
    console.print(table)


def _torch_devices() -> str:
    """torch's version and whether CUDA is available. A build without CUDA (or ROCm) says so in
    its version.py, read here without importing torch (which takes seconds); only a GPU build is
    imported and asked for its devices."""
    import importlib.util
    import runpy

    spec = importlib.util.find_spec("torch")
    build = Path(spec.origin).parent / "version.py" if spec is not None and spec.origin else None
    if build is not None and build.is_file():
        facts = runpy.run_path(str(build))
        if facts.get("cuda") is None and facts.get("hip") is None:
            return f"{facts['__version__']} (CUDA not available: a CPU-only build)"
    import torch

    return f"{torch.__version__} (CUDA {'available' if torch.cuda.is_available() else 'not available'})"


@app.command()
def example(
    name: str = typer.Argument("first-flow", help="Example to run; known: first-flow, cylinder."),
    steps: int = typer.Option(3000, min=1, help="Training steps (first-flow)."),
    seed: int = typer.Option(0, help="Random seed."),
    plot: Optional[Path] = typer.Option(None, help="cylinder: write the target and flow densities to this PNG."),
) -> None:
    """Run a small, self-contained example and print what it learned.

    [bold]first-flow[/bold]: learn N(μ=[5, 5], Σ=0.5·I) with one affine autoregressive layer by maximum likelihood (FlowTorch's first tutorial). About 20 s on a CPU.

    [bold]cylinder[/bold]: x ~ N(0, 1), φ | x ~ von Mises(3x, 1) on (real, circle), learned by reverse KL from the density alone (the normflows paper's example); prints ESS and log Z against the exact value. About 10 s.

    [bold]Examples[/bold]: boltzflow example first-flow --steps 3000 · boltzflow example cylinder --plot cylinder.png
    """
    if name == "cylinder":
        from boltzflow.examples.cylinder import plot_densities, train_cylinder

        with console.status("training the cylinder flow by reverse KL"):
            result = train_cylinder(seed=seed)
        console.print(f"ESS {100 * result.ess:.1f}%, log Z {result.log_z:.4f} (exact {result.target.log_z:.4f})")
        if plot is not None:
            plot_densities(result, plot)
            console.print(f"wrote {plot}")
        return
    if name != "first-flow":
        raise BoltzflowError(f"unknown example {name!r}; known examples: first-flow, cylinder")
    from boltzflow.examples.first_flow import TARGET_MEAN, TARGET_VARIANCE, first_flow

    with progress_bar("training", console, total=steps, info=True) as bar:
        task = bar.add_task("training", total=steps, info="")

        def progress(step: int, loss: float) -> None:
            if step % 50 == 0 or step == steps - 1:
                bar.update(task, completed=step + 1, info=f"NLL {loss:.3f}")

        result = first_flow(steps=steps, seed=seed, progress=progress)
    table = Table(title="first flow: fitted vs target")
    for col in ("", "x₁", "x₂", "target"):
        table.add_column(col, justify="right")
    table.add_row("mean", *(f"{v:.3f}" for v in result.mean.tolist()), f"{TARGET_MEAN:.3f}")
    table.add_row("variance", *(f"{v:.3f}" for v in result.variance.tolist()), f"{TARGET_VARIANCE:.3f}")
    console.print(table)
    console.print(f"negative log-likelihood on 100,000 fresh target samples: {result.nll:.4f} nats; the target's "
                  f"own on the same samples (the optimum) {result.target_nll:.4f}; "
                  f"KL(target ‖ flow) ≈ {result.nll - result.target_nll:.4f}", soft_wrap=True)


# Commands that live in their own modules.
from boltzflow.cli import train as _train  # noqa: E402

app.command("train")(_train.train)

from boltzflow.cli import hpc as _hpc  # noqa: E402

app.command("sweep")(_hpc.sweep)
app.command("collect")(_hpc.collect)

from boltzflow.cli import reference as _reference  # noqa: E402

app.command("md")(_reference.md)
app.command("umbrella")(_reference.umbrella)

from boltzflow.cli import samples as _samples  # noqa: E402

app.command("sample")(_samples.sample)
app.command("export")(_samples.export)
app.command("free-energy")(_samples.free_energy)


def main() -> None:
    """Console entry point: user errors become one red line and exit code 2 (75 for a full or
    read-only disk: the same command continues once it is fixed)."""
    try:
        app()
    except BoltzflowError as exc:
        err_console.print(f"[bold red]error:[/bold red] {exc}", soft_wrap=True)  # one line, however narrow the terminal
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
