"""The README's set-up commands are the ones CI runs, so they cannot silently rot."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _shell_blocks(markdown: str) -> list[str]:
    return re.findall(r"```(?:bash|sh|shell)\n(.*?)```", markdown, flags=re.DOTALL)


def test_ci_runs_the_readme_test_command_verbatim():
    readme = (ROOT / "README.md").read_text()
    commands = [
        line.strip()
        for block in _shell_blocks(readme)
        for line in block.splitlines()
        if "pytest" in line and "pip install" in line
    ]
    assert len(commands) == 1, "README must show exactly one install-and-test command"
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert commands[0] in ci_lines


def test_ci_installs_the_local_cpu_torch_first():
    ci = (ROOT / ".ci" / "run").read_text()
    assert ci.index("pip install torch==2.13.0") < ci.index('pip install -e ".[dev]"')
