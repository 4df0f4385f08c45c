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
from boltzflow.geometry import dihedral_angles
from boltzflow.errors import BoltzflowError
from boltzflow.reference import analyse_umbrella, load_umbrella, run_umbrella
from boltzflow.reference.simulation import FRICTION_PER_PS, TIMESTEP_PS, langevin_context
from boltzflow.reference.umbrella import (CENTRE, MIN_EQUILIBRATION_PS, default_equilibration_ps, default_force_constant,
                                         dihedral_restraint, window_centres)

TINY = dict(cv="phi", windows=4, ps=0.5, equilibration_ps=0.05, sample_interval=50, bins=24)  # weak default κ


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
    assert (default_equilibration_ps(200), default_equilibration_ps(30)) == (20, MIN_EQUILIBRATION_PS)


def test_tiny_umbrella_run_end_to_end(system, tmp_path):
    calls = []
    result = run_umbrella(system, out=tmp_path, progress=lambda d, t: calls.append((d, t)), **TINY)
    assert calls[-1][0] == calls[-1][1] == 4 * (50 + 500)  # equilibration + sampling, per window
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
    run_umbrella(system, out=tmp_path / "uninterrupted", **TINY)
    assert np.array_equal(data["cv"], load_umbrella(tmp_path / "uninterrupted")["cv"])  # the same run
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


TINY_2D = dict(cv="phi,psi", windows=3, ps=0.4, equilibration_ps=0.04, sample_interval=40, force_constant=20.0, bins=12,
               plane_bins=12)


def test_grid_windows_run_in_snake_order_so_each_move_is_one_step():
    centres = np.degrees(window_centres(3, 2))
    np.testing.assert_allclose(centres, [[-180, -180], [-180, -60], [-180, 60], [-60, 60], [-60, -60],
                                         [-60, -180], [60, -180], [60, -60], [60, 60]], atol=1e-12)
    step = np.abs(np.diff(window_centres(12, 2), axis=0)).sum(1)
    assert np.allclose(step, 2 * math.pi / 12)


def test_two_restraints_are_the_two_cv_bias_of_the_analysis(system):
    from boltzflow.reference.umbrella import restraint_parameters

    cvs, kappa = ("phi", "psi"), 80.0
    names = restraint_parameters(cvs)
    forces = [dihedral_restraint(system.dihedrals[c], kappa, *n) for c, n in zip(cvs, names)]
    for force in forces:
        force.setForceGroup(31)
    context = langevin_context(system, "Reference", forces=forces)
    quads = torch.tensor([system.dihedrals[c] for c in cvs])
    rng = np.random.default_rng(1)
    for centre in ((-2.5, 2.9), (1.0, -0.3)):
        for (name, _), value in zip(names, centre):
            context.setParameter(name, value)
        xyz = system.positions + 0.03 * rng.standard_normal((system.n_atoms, 3))
        context.setPositions(xyz)
        energy = context.getState(getEnergy=True, groups={31}).getPotentialEnergy().value_in_unit(
            unit.kilojoule_per_mole)
        angles = dihedral_angles(torch.from_numpy(xyz)[None], quads).numpy()
        assert energy == pytest.approx(umbrella_bias(angles, np.array([centre]), np.array([kappa]))[0, 0], rel=1e-6)


def test_tiny_2d_umbrella_with_repeats_resumes_and_writes_the_reweighted_plane(system, tmp_path):
    def stop_in_second_repeat(done, total):
        if done > 0.6 * total:
            raise Interrupt

    with pytest.raises(Interrupt):
        run_umbrella(system, out=tmp_path, repeats=2, progress=stop_in_second_repeat, **TINY_2D)
    before = load_umbrella(tmp_path)["cv"]
    assert before.shape == (10, 10, 2)  # nine windows of the first repeat, one of the second
    result = run_umbrella(system, out=tmp_path, repeats=2, **TINY_2D)
    data = load_umbrella(tmp_path)
    assert data["cv"].shape == (18, 10, 2) and np.array_equal(data["cv"][:10], before)
    assert not np.array_equal(data["cv"][:9], data["cv"][9:])  # the repeats have their own seeds
    assert data["centres"].shape == (9, 2) and np.all(data["wall_seconds"] > 0)
    assert data["regions"]["C7eq_beta"]["psi"] == pytest.approx((math.radians(50), math.radians(-100)))

    assert set(result.delta_f) == {"phi_negative -> phi_positive", "C7eq_beta -> alphaR",
                                   "C7eq_beta -> alphaL_C7ax"}
    assert len(result.per_repeat) == 2
    for key, estimate in result.delta_f.items():
        values = np.array([each[key].value for each in result.per_repeat])
        assert estimate.n == 2
        if np.isfinite(values).all():
            assert estimate.value == pytest.approx(values.mean())
            assert estimate.error == pytest.approx(abs(values[0] - values[1]) / 2)  # s.d./√2 of two values
        else:  # a 0.4 ps repeat can miss a state on some CPUs: no error can be given
            assert estimate.error == math.inf
    saved = json.loads((tmp_path / "free_energies.json").read_text())
    assert saved["states"]["phi_positive"] == {"phi": [0.0, 180.0]}
    assert [r["seed"] for r in saved["repeats"]] == [0, 1]
    assert saved["repeats"][1]["delta_f"] == pytest.approx({k: v.value for k, v in result.per_repeat[1].items()})
    assert all("too narrow" in e.method for e in result.per_repeat[0].values())  # correlated frames
    assert saved["cost"]["simulated_ns"] == pytest.approx(2 * 9 * 0.44 / 1000)
    assert saved["cost"]["wall_seconds"] == pytest.approx(data["wall_seconds"].sum())
    assert 0 < saved["repeats"][0]["overlap"]["weakest_best_neighbour"] < 1
    with np.load(tmp_path / "ramachandran.npz") as plane:
        assert plane["probability"].shape == (12, 12) and plane["repeats"].shape == (2, 12, 12)
        assert plane["probability"].sum() == pytest.approx(1.0)
        assert np.allclose(plane["probability"], plane["repeats"].mean(0))
    floor = saved["ramachandran"]["noise_floor"]
    assert 0 < floor["between_repeats"]["mean"] <= 1 and len(floor["between_repeats"]["pairs"]) == 1
    assert set(result.files) >= {"ramachandran.npz", "ramachandran.png", "pmf.csv"}
    assert (tmp_path / "ramachandran.png").read_bytes().startswith(b"\x89PNG")
    with pytest.raises(BoltzflowError, match="other settings.*repeats"):
        run_umbrella(system, out=tmp_path, repeats=1, **TINY_2D)  # fewer repeats than were run
    calls = []
    more = run_umbrella(system, out=tmp_path, repeats=3, progress=lambda d, t: calls.append(d), **TINY_2D)
    assert min(calls) > 18 * 440 and len(more.per_repeat) == 3  # only the third repeat ran
    assert np.array_equal(load_umbrella(tmp_path)["cv"][:18], data["cv"])


def test_a_1d_folder_written_before_repeats_existed_still_resumes(system, tmp_path):
    run_umbrella(system, out=tmp_path, **TINY)
    with h5py.File(tmp_path / "umbrella.h5", "a") as f:  # as the first version wrote it
        settings = json.loads(f.attrs["settings"])
        del settings["repeats"], f["wall_seconds"], f.attrs["machine"]
        f.attrs["settings"] = json.dumps(settings)
    calls = []
    result = run_umbrella(system, out=tmp_path, progress=lambda d, t: calls.append(d), **TINY)
    assert calls == [] and "phi_negative -> phi_positive" in result.delta_f


@pytest.mark.parametrize("change, message", [
    ({"cv": "phi,foo"}, "no dihedral 'foo'"), ({"cv": "phi,phi"}, "two different ones"),
    ({"cv": "phi,psi", "windows": 1}, "windows >= 2"), ({"cv": "phi,psi", "repeats": 0}, "repeats >= 1"),
])
def test_bad_2d_input_is_a_user_error_and_writes_nothing(system, tmp_path, change, message):
    with pytest.raises(BoltzflowError, match=message):
        run_umbrella(system, out=tmp_path / "out", **{**TINY_2D, **change})
    assert not (tmp_path / "out").exists()
