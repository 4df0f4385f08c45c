"""A real (non-editable) install: build the wheel, install it into a fresh virtual
environment and run the ``boltzflow`` command from an unrelated directory."""

import os
import shutil
import site
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def source_modules():
    """Dotted names of every module the distribution must contain."""
    layout = {"boltzflow": ROOT / "boltzflow", "boltzflow.cli": ROOT / "cli",
              "boltzflow.system_files": ROOT / "systems"}
    names = []
    for package, folder in layout.items():
        for path in folder.rglob("*.py"):
            rel = path.relative_to(folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            if any(p.startswith(".") or p == "__pycache__" for p in rel.parts):
                continue
            if package == "boltzflow" and rel.parts[0] in ("cli", "system_files"):
                continue
            names.append(".".join([package, *parts]))
    return sorted(set(names))


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
        ".git", "__pycache__", "*.egg-info", "build", "dist", ".pytest_cache"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(tmp / "dist"), str(src)], check=True)
    wheel = next((tmp / "dist").glob("boltzflow-*.whl"))
    env_dir = tmp / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    bindir = env_dir / ("Scripts" if os.name == "nt" else "bin")
    py = bindir / "python"
    # dependencies come from this interpreter's site-packages through a plain path entry;
    # that does not activate this checkout's editable install, so boltzflow itself must
    # come from the wheel
    env_site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                              capture_output=True, text=True, check=True).stdout.strip()
    deps = [sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"], *site.getsitepackages()]
    Path(env_site, "host-dependencies.pth").write_text("\n".join(dict.fromkeys(deps)) + "\n")
    subprocess.run([str(py), "-m", "pip", "install", "--no-deps", "-q", str(wheel)], check=True)
    return py, bindir, tmp


def test_console_script_runs_from_any_directory(installed):
    py, bindir, tmp = installed
    elsewhere = tmp / "elsewhere"
    elsewhere.mkdir()
    proc = subprocess.run([str(bindir / "boltzflow"), "--help"], cwd=elsewhere,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "Sample molecular Boltzmann distributions" in proc.stdout


def test_wheel_holds_every_module_and_is_what_gets_imported(installed):
    py, bindir, tmp = installed
    modules = source_modules()
    code = ("import importlib, boltzflow, sys; "
            f"[importlib.import_module(m) for m in {modules!r}]; print(boltzflow.__file__); "
            "from boltzflow.runs.references import SHIPPED; "  # package data beside the modules
            "assert (SHIPPED / 'alanine-dipeptide' / 'free_energies.json').is_file()")
    proc = subprocess.run([str(py), "-c", code], cwd=tmp, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert Path(proc.stdout.strip()).is_relative_to(tmp / "venv"), proc.stdout


def test_every_module_imports_first():
    """Each module imports on its own, as the first boltzflow module of a process: an import
    cycle cannot hide behind the order in which other modules happened to be imported."""
    script = (
        "import importlib, sys\n"
        "failed = []\n"
        f"for name in {source_modules()!r}:\n"
        "    for loaded in [m for m in sys.modules if m == 'boltzflow' or m.startswith('boltzflow.')]:\n"
        "        del sys.modules[loaded]\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception as error:\n"
        "        failed.append(f'{name}: {error}')\n"
        "print('\\n'.join(failed))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", result.stdout
