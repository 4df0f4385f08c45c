"""The README's commands are the ones CI runs and they name things that exist."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def code_lines():
    blocks = re.findall(r"```bash\n(.*?)```", README, flags=re.S)
    return [line.strip() for block in blocks for line in block.splitlines()]


def test_ci_runs_the_readme_test_command():
    test_command = next(line for line in code_lines() if "pytest" in line)
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test_command in [line.strip() for line in ci]


def test_architecture_section_names_existing_files():
    section = README.split("## Architecture", 1)[1].split("\n## ", 1)[0]
    for name in re.findall(r"^\s+([\w/]+\.py)\b", section, flags=re.M):
        matches = list(ROOT.glob(f"boltzflow/**/{name}"))
        assert matches, f"README architecture names {name}, which does not exist"
    for folder in re.findall(r"^(\w+)/\s", section, flags=re.M):
        assert (ROOT / folder).is_dir(), f"README names folder {folder}/, which does not exist"


def test_architecture_section_lists_every_module():
    section = README.split("## Architecture", 1)[1].split("\n## ", 1)[0]
    for path in (ROOT / "boltzflow").rglob("*.py"):
        if path.name != "__init__.py":
            assert path.name in section, f"{path.relative_to(ROOT)} is missing from the README"
