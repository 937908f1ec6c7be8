import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from model.checkpoint import read_checkpoint_header
from tests.processes import run_measured
from training.cli import main
from training.run_dir import read_metrics, truncate_metrics

VENV_BIN = Path(sys.executable).parent


def _run(*args, cwd=None):
    return subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=cwd)


def test_python_dash_m_training_synth_writes_a_celeba_folder(tmp_path):
    result = _run(
        sys.executable,
        "-m",
        "training",
        "synth",
        "--out",
        str(tmp_path / "d"),
        "--count",
        "12",
        "--seed",
        "4",
        "--quiet",
    )
    assert result.returncode == 0, result.stderr
    assert "wrote 12 faces" in result.stdout
    assert len(list((tmp_path / "d" / "img_align_celeba").glob("*.jpg"))) == 12
    assert (tmp_path / "d" / "list_attr_celeba.txt").read_text().startswith("12\n")


def test_console_script_matches_python_dash_m(tmp_path):
    script = _run(
        str(VENV_BIN / "vaegan-train"),
        "synth",
        "--out",
        str(tmp_path / "a"),
        "--count",
        "5",
        "--quiet",
    )
    module = _run(
        sys.executable,
        "-m",
        "training",
        "synth",
        "--out",
        str(tmp_path / "b"),
        "--count",
        "5",
        "--quiet",
    )
    assert script.returncode == module.returncode == 0
    for name in ("list_attr_celeba.txt", "list_eval_partition.txt", "img_align_celeba/000005.jpg"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_existing_output_is_refused_without_overwrite(tmp_path, capsys):
    out = tmp_path / "d"
    assert main(["synth", "--out", str(out), "--count", "3", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["synth", "--out", str(out), "--count", "3", "--quiet"]) == 2
    error = capsys.readouterr().err
    assert "vaegan-train synth: error:" in error and str(out) in error
    assert main(["synth", "--out", str(out), "--count", "3", "--quiet", "--overwrite"]) == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--count", "0"], "must be at least 1"),
        (["--count", "many"], "expected a whole number"),
        (["--seed", "-3"], "must be at least 0"),
    ],
)
def test_bad_arguments_get_a_usage_error(tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as info:
        main(["synth", "--out", str(tmp_path), *args])
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_a_command_is_required(capsys):
    with pytest.raises(SystemExit):
        main([])
    assert "COMMAND" in capsys.readouterr().err


def test_fit_skips_a_fifo_among_the_images_instead_of_hanging(synthetic_celeba, tmp_path):
    data = tmp_path / "faces"
    data.mkdir()
    for name in ("000001.jpg", "000002.jpg", "000003.jpg"):
        shutil.copyfile(synthetic_celeba / "img_align_celeba" / name, data / name)
    fifo = data / "000000.jpg"
    os.mkfifo(fifo)  # nothing ever writes to it: reading it used to block the run forever
    out = tmp_path / "run"
    command = [str(VENV_BIN / "vaegan-train"), "fit", "--data", str(data), "--out", str(out)]
    command += ["--preset", "small64", "--steps", "1", "--batch-size", "4", "--workers", "0"]
    result = run_measured([*command, "--device", "cpu", "--quiet"], timeout=120)
    assert result.returncode == 0, result.stderr
    assert f"skipping {fifo}: not a regular file (a FIFO)" in result.stderr
    header = read_checkpoint_header(out / "model.safetensors")
    assert header.evaluation["training"]["damaged_images"] >= 1


def test_resume_refuses_a_fifo_in_place_of_the_metrics_in_one_line(synthetic_celeba, tmp_path):
    out = tmp_path / "run"
    command = [str(VENV_BIN / "vaegan-train"), "fit", "--data", str(synthetic_celeba)]
    command += ["--out", str(out), "--preset", "small32", "--batch-size", "4", "--device", "cpu"]
    first = run_measured([*command, "--steps", "1", "--quiet"], timeout=120)
    assert first.returncode == 0, first.stderr
    metrics = out / "metrics.jsonl"
    metrics.unlink()
    os.mkfifo(metrics)  # reading it would block the resume forever
    result = run_measured([*command, "--steps", "2", "--resume", "--quiet"], timeout=120)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(lines) == 1 and "not a regular file (a FIFO)" in lines[0], result.stderr


def test_metric_lines_a_kill_or_an_editor_damaged_are_left_out(tmp_path):
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text(
        '{"step": 1, "L_gan": 1.0}\n'
        + "[" * 100_000  # nesting deep enough to exhaust a recursive parser
        + '\n{"step": 2, "L_gan": NaN}\n{"step": 3, "L_g'
    )
    assert [r["step"] for r in read_metrics(metrics)] == [1, 2]
    truncate_metrics(metrics, 1)
    assert [r["step"] for r in read_metrics(metrics)] == [1]


def test_fit_sizes_its_threads_by_the_cores_it_may_use(synthetic_celeba, tmp_path):
    """One core in the affinity mask (as taskset or a cpuset gives): one torch thread, said so;
    --threads wins; OMP_NUM_THREADS, the usual way to pin a background run, is respected."""
    data = tmp_path / "faces"
    data.mkdir()
    for name in ("000001.jpg", "000002.jpg"):
        shutil.copyfile(synthetic_celeba / "img_align_celeba" / name, data / name)
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}

    def fit(out: str, *extra: str, **popen) -> str:
        command = [str(VENV_BIN / "vaegan-train"), "fit", "--data", str(data)]
        command += ["--out", str(tmp_path / out), "--preset", "small32", "--steps", "1"]
        command += ["--batch-size", "2", "--device", "cpu", "--quiet", *extra]
        result = run_measured(command, timeout=120, **({"env": env} | popen))
        assert result.returncode == 0, result.stderr
        return result.stderr

    one_core = fit("pinned", preexec_fn=lambda: os.sched_setaffinity(0, {0}))
    assert "torch threads: 1 (this process may use 1 core (affinity))" in one_core
    assert "torch threads: 3 (--threads)" in fit("flag", "--threads", "3")
    assert "torch threads: 1 (OMP_NUM_THREADS)" in fit("omp", env=env | {"OMP_NUM_THREADS": "1"})
