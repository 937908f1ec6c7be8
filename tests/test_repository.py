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
