"""Umbrella sampling: the OpenMM restraint is the bias MBAR assumes; a tiny run goes end to
end, resumes per window and refuses mismatched settings."""

import json
import math

import h5py
import numpy as np
import openmm
import openmm.unit as unit
import pytest
import torch

from boltzflow.analysis.mbar import umbrella_bias
from boltzflow.energy.terms import dihedral_angles
from boltzflow.errors import BoltzflowError
from boltzflow.reference import analyse_umbrella, load_umbrella, run_umbrella
from boltzflow.reference.simulation import FRICTION_PER_PS, TIMESTEP_PS, langevin_context
from boltzflow.reference.umbrella import CENTRE, default_force_constant, dihedral_restraint, window_centres

TINY = dict(cv="phi", windows=4, ps=0.5, sample_interval=50, bins=24)  # weak default κ: windows overlap


class Interrupt(Exception):
    pass


def test_restraint_energy_is_the_periodic_bias_of_the_analysis(system):
    kappa, atoms = 150.0, system.dihedrals["phi"]
    restraint = dihedral_restraint(atoms, kappa)
    restraint.setForceGroup(31)
    context = langevin_context(system, "Reference", forces=[restraint])
    assert system.openmm_system.getNumForces() == context.getSystem().getNumForces() - 1  # system not mutated
    rng = np.random.default_rng(0)
    for centre in (-math.pi, -2.0, 0.5, 3.0):
        context.setParameter(CENTRE, centre)
        for _ in range(5):
            xyz = system.positions + 0.03 * rng.standard_normal((system.n_atoms, 3))
            context.setPositions(xyz)
            energy = context.getState(getEnergy=True, groups={31}).getPotentialEnergy()
            energy = energy.value_in_unit(unit.kilojoule_per_mole)
            phi = dihedral_angles(torch.from_numpy(xyz)[None], torch.tensor([atoms]))[0].numpy()
            expected = umbrella_bias(phi, np.array([centre]), np.array([kappa]))[0, 0]
            assert energy == pytest.approx(expected, rel=1e-6, abs=1e-9)


def test_langevin_settings_and_window_layout(system):
    integrator = langevin_context(system, "Reference").getIntegrator()
    assert isinstance(integrator, openmm.LangevinMiddleIntegrator)
    assert integrator.getStepSize().value_in_unit(unit.picosecond) == TIMESTEP_PS
    assert integrator.getFriction().value_in_unit(unit.picosecond**-1) == FRICTION_PER_PS
    assert integrator.getTemperature().value_in_unit(unit.kelvin) == system.temperature
    assert np.degrees(window_centres(4)).tolist() == pytest.approx([-180, -90, 0, 90])
    kappa = default_force_constant(36, system.kT)
    assert math.sqrt(system.kT / kappa) == pytest.approx(math.radians(10) / 2)  # width: half the spacing


def test_tiny_umbrella_run_end_to_end(system, tmp_path):
    calls = []
    result = run_umbrella(system, out=tmp_path, progress=lambda d, t: calls.append((d, t)), **TINY)
    assert calls[-1][0] == calls[-1][1] == 4 * (50 + 500)  # equilibration ps/10 + sampling, per window
    assert {p.name for p in tmp_path.iterdir()} == {"umbrella.h5", "pmf.csv", "pmf.png", "free_energies.json"}
    data = load_umbrella(tmp_path)
    assert data["cv"].shape == (4, 10) and np.all(np.abs(data["cv"]) <= math.pi)
    assert data["regions"]["phi_negative"] == pytest.approx((-math.pi, 0.0))
    assert set(result.delta_f) == {"phi_negative -> phi_positive", "phi_negative -> alphaL_C7ax"}
    pmf = np.loadtxt(tmp_path / "pmf.csv", delimiter=",")
    assert pmf.shape == (24, 5) and np.nanmin(pmf[:, 2]) == 0.0
    saved = json.loads((tmp_path / "free_energies.json").read_text())
    assert saved["unit"] == "kT" and set(saved["delta_f"]) == set(result.delta_f)
    assert (tmp_path / "pmf.png").read_bytes().startswith(b"\x89PNG")


def test_umbrella_resumes_at_the_next_window(system, tmp_path):
    def stop_in_third_window(done, total):
        if done > 2 * total // 4:
            raise Interrupt

    with pytest.raises(Interrupt):
        run_umbrella(system, out=tmp_path, progress=stop_in_third_window, **TINY)
    first_two = load_umbrella(tmp_path)["cv"]
    assert first_two.shape == (2, 10)
    calls = []
    run_umbrella(system, out=tmp_path, progress=lambda d, t: calls.append(d), **TINY)
    data = load_umbrella(tmp_path)
    assert np.array_equal(data["cv"][:2], first_two) and data["cv"].shape == (4, 10)
    assert min(calls) > 2 * 550  # only windows three and four ran
    calls.clear()
    run_umbrella(system, out=tmp_path, progress=lambda d, t: calls.append(d), **TINY)
    assert calls == []  # finished: analysed again, nothing simulated
    with pytest.raises(BoltzflowError, match="other settings.*windows"):
        run_umbrella(system, out=tmp_path, **{**TINY, "windows": 6})


def test_umbrella_user_errors(system, tmp_path):
    with pytest.raises(BoltzflowError, match="no dihedral 'chi'.*phi, psi"):
        run_umbrella(system, cv="chi", out=tmp_path)
    with pytest.raises(BoltzflowError, match="does not exist"):
        analyse_umbrella(tmp_path / "nothing")
    with h5py.File(tmp_path / "umbrella.h5", "w") as f:  # an unfinished run
        f.attrs["settings"] = json.dumps({**TINY, "windows": 4})
        f.attrs["kT"], f.attrs["regions"] = 2.49, "{}"
        f["centres"], f["cv"] = window_centres(4), np.zeros((1, 3))
    with pytest.raises(BoltzflowError, match="holds 1 of 4 windows"):
        analyse_umbrella(tmp_path)
