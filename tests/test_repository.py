"""The README's set-up commands are the ones CI runs, and its examples run as written, so they
cannot silently rot."""

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "docs" / "examples"


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


def test_the_readme_serve_command_needs_nothing_but_the_package():
    readme = (ROOT / "README.md").read_text()
    (command,) = [
        line.strip()
        for block in _shell_blocks(readme)
        for line in block.splitlines()
        if "pip install" in line and "vaegan-serve" in line
    ]
    # The bundled demo model: no data to generate, no training, no checkpoint argument.
    assert command.endswith("pip install -e . && vaegan-serve"), command
    from model.demo import demo_checkpoint_path

    assert demo_checkpoint_path().is_file()


def test_ci_installs_the_local_cpu_torch_first():
    ci = (ROOT / ".ci" / "run").read_text()
    assert ci.index("pip install torch==2.13.0") < ci.index('pip install -e ".[dev]"')


def test_readme_python_examples_run(tmp_path, monkeypatch):
    from training.synth import generate_synthetic_celeba

    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.DOTALL)
    # Examples that talk to a running service say so on their first line.
    code = "\n".join(b for b in blocks if not b.startswith("# needs a running service"))
    assert "open_dataset" in code and "save_checkpoint" in code
    monkeypatch.chdir(tmp_path)
    generate_synthetic_celeba(tmp_path / "data" / "synthetic", 80, seed=0, progress=False)
    exec(compile(code, "README.md", "exec"), {"__name__": "readme"})
    assert (tmp_path / "run" / "model.safetensors").is_file()


def test_every_relative_link_and_picture_in_the_docs_exists():
    documents = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    pattern = re.compile(r"\]\(([^)\s]+)\)|<img [^>]*src=\"([^\"]+)\"")
    checked = 0
    for document in documents:
        for match in pattern.finditer(document.read_text()):
            target = (match[1] or match[2]).split("#")[0]
            if not target or "://" in target or target.startswith("mailto:"):
                continue
            assert (document.parent / target).exists(), f"{document.name} links {target}"
            checked += 1
    assert checked >= 10  # the README's and the results page's pictures at least


def _repository_texts() -> list[Path]:
    folders = ("model", "training", "service", "tests", "scripts", "benchmarks", "docs")
    files = [ROOT / "README.md"]
    for folder in folders:
        files += [p for p in (ROOT / folder).rglob("*") if p.suffix in {".py", ".md", ".sh"}]
    return files


def test_design_references_name_sections_of_the_design_page_in_the_repository():
    headings = re.findall(r"^## (\d+)\. ", (ROOT / "docs" / "design.md").read_text(), re.M)
    sections = set(headings)
    assert sections == {str(n) for n in range(1, 8)}
    cited = 0
    for path in _repository_texts():
        text = path.read_text(errors="replace")
        if path.name != "test_repository.py":
            # A design document outside the repository is one a reader cannot open.
            assert not re.search(r"\bDESIGN(\.md)?\b", text), f"{path} cites DESIGN"
        for section in re.findall(r"design\.md section (\d+)", text):
            assert section in sections, f"{path} cites docs/design.md section {section}"
            cited += 1
    assert cited >= 5


def test_the_readme_layout_section_names_every_module_and_nothing_else():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## How the code is laid out", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"`([a-z_]+)\.py`", section))
    packages = set(re.findall(r"`([a-z_]+)/`", section))
    modules: set[str] = set()
    for package in ("model", "training", "service"):
        for path in (ROOT / package).rglob("*.py"):
            if path.parent != ROOT / package:
                # A subpackage (commands/, routes/) is described as a whole.
                assert path.parent.name in packages, f"README's layout misses {path.parent.name}/"
            elif path.name not in {"__init__.py", "__main__.py"}:
                modules.add(path.stem)
    assert modules - named == set(), "README's layout section misses these modules"
    subpackage_modules = {p.stem for p in ROOT.glob("*/*/*.py")}
    unknown = named - modules - subpackage_modules
    assert unknown == set(), "README's layout section names modules that do not exist"


# --------------------------------------------------------------------------------------------
# the README's shell examples, run against a real vaegan-serve

# A block the test must not run (Docker, GPUs) says why on the line before it.
SKIP_MARKER = re.compile(r"<!-- not run by the README test: (.+?) -->\n```(?:bash|sh|shell)\n")


def _example_commands(markdown: str) -> tuple[list[str], list[str]]:
    """The README's commands that talk to the service (`curl`) and its `vaegan-train edit`
    example, each with its continuation lines joined; and the reasons of the skipped blocks.

    That is the rule: other commands set up, train or benchmark (minutes to hours), and the
    other tests in this file check the set-up ones.
    """
    commands, skipped = [], []
    blocks = re.finditer(r"(?:<!-- [^\n]+? -->\n)?```(?:bash|sh|shell)\n(.*?)```", markdown, re.S)
    for block in blocks:
        skip = SKIP_MARKER.match(block[0])
        if skip is not None:
            skipped.append(skip[1])
            continue
        text = block[1]
        for command in re.sub(r"\\\n\s*", " ", text).splitlines():
            if command.startswith(("curl ", "vaegan-train edit ")):
                commands.append(command)
    return commands, skipped


def test_the_example_faces_are_the_ones_their_command_makes(tmp_path):
    from training.synth import generate_synthetic_celeba

    # docs/examples/README.md: `vaegan-train synth --out faces --count 10 --seed 1`.
    generate_synthetic_celeba(tmp_path, 10, seed=1, progress=False)
    for name, index in (("face.jpg", 1), ("face2.jpg", 10)):
        made = tmp_path / "img_align_celeba" / f"{index:06d}.jpg"
        # Pixels rather than bytes: another libjpeg may encode the same picture differently.
        shipped, fresh = (np.asarray(Image.open(p), np.int16) for p in (EXAMPLES / name, made))
        assert shipped.shape == (218, 178, 3) and np.abs(shipped - fresh).mean() < 1, name


@pytest.fixture(scope="module")
def demo_service() -> Iterator[int]:
    """`vaegan-serve` on a free port, serving the bundled demo model as the README starts it."""
    from tests.service.conftest import free_port, wait_until_ready

    port = free_port()
    script = Path(sys.executable).parent / "vaegan-serve"
    serve = [str(script)] if script.exists() else [sys.executable, "-m", "service"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("VAEGAN_")}
    process = subprocess.Popen(
        [*serve, "--port", str(port), "--device", "cpu"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until_ready(f"http://127.0.0.1:{port}", process, timeout=120)
        yield port
    finally:
        process.terminate()
        process.communicate(timeout=30)


def test_readme_shell_examples_run_against_the_service(demo_service, tmp_path):
    missing = [tool for tool in ("bash", "curl", "jq") if shutil.which(tool) is None]
    if missing:
        message = f"the README's shell examples need {' and '.join(missing)} (apt-get install)"
        if os.environ.get("CI"):
            pytest.fail(message)  # .ci/run installs them
        pytest.skip(message)
    readme = (ROOT / "README.md").read_text()
    commands, skipped = _example_commands(readme)
    assert skipped == [
        "needs Docker and a GPU",
        "needs Docker",
        "needs Docker",
        "needs a Kubernetes cluster",
    ]
    assert len(commands) == 10  # nine curl examples and the edit
    assert any("/decode" in command for command in commands)
    assert any(command.startswith("vaegan-train edit ") for command in commands)

    # The repository's root as the README's reader has it: the sample faces, and the model
    # the Training section trains in runs/small (the demo model stands in for it).
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "examples").symlink_to(EXAMPLES)
    (tmp_path / "runs" / "small").mkdir(parents=True)
    from model.demo import demo_checkpoint_path

    shutil.copy(demo_checkpoint_path(), tmp_path / "runs" / "small" / "model.safetensors")
    env = {k: v for k, v in os.environ.items() if not k.startswith("VAEGAN_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"

    for command in commands:
        # Only the address changes.
        run = command.replace("localhost:8000", f"127.0.0.1:{demo_service}")
        result = subprocess.run(
            ["bash", "-o", "pipefail", "-c", run],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert result.returncode == 0, (command, result.stderr)
        written = re.search(r"(?:-o|--out) (\S+)", command.split("|")[-1])
        if written:
            # An error answer saved under a .png name is no PNG.
            with Image.open(tmp_path / written[1]) as image:
                assert image.format == "PNG", command
                assert image.width >= 64 and image.height >= 64, command
        else:
            answer = json.loads(result.stdout)
            assert isinstance(answer, dict) and "detail" not in answer, (command, answer)
