"""What a person watching `vaegan-train fit` sees: the bar, the log lines and the legend."""

import re
import sys
from pathlib import Path

from tests.processes import run_measured
from training.progress import explain

VENV_BIN = Path(sys.executable).parent
LEGEND = 'README: "Reading the training output"'


def _fit(data: Path, out: Path, *extra: str):
    command = [str(VENV_BIN / "vaegan-train"), "fit", "--data", str(data), "--out", str(out)]
    command += ["--preset", "small32", "--batch-size", "8", "--device", "cpu", *extra]
    result = run_measured(command, timeout=180)
    assert result.returncode == 0, result.stderr
    return result


def _bar_states(stderr: str) -> list[str]:
    """Each state the bar was drawn in: tqdm redraws its line after a carriage return."""
    return [part.strip() for part in re.split(r"[\r\n]", stderr) if part.strip().startswith("step")]


def test_the_bar_counts_steps_and_shows_the_figures_from_the_first_step(synthetic_celeba, tmp_path):
    # --log-every above --steps: the figures at step 1 cannot come from a log line.
    result = _fit(synthetic_celeba, tmp_path / "run", "--steps", "3", "--log-every", "50")
    states = _bar_states(result.stderr)
    first = next(state for state in states if state.startswith("step 1/3 "))
    for name in ("L_prior", "L_llike", "L_gan", "D_x", "D_G_z", "skip_D", "skip_dec"):
        assert f"{name}=" in first, first
    # The elapsed time, the ETA and the rate, per step (s/step when a step takes over a second).
    assert re.search(r"\d\d:\d\d<\d\d:\d\d, +[\d.]+(step/s|s/step)", first), first
    assert any(state.startswith("step 3/3 100%") for state in states), states
    assert not any("img" in state for state in states), "the bar counts steps, not images"
    # The figures are explained once, before the bar shows them.
    assert result.stderr.count(LEGEND) == 1
    assert result.stderr.index(LEGEND) < result.stderr.index(first)
    assert "paused D because it was winning" in result.stderr


def test_quiet_logs_a_line_every_log_every_steps_and_a_resumed_bar_counts_on(
    synthetic_celeba, tmp_path
):
    out = tmp_path / "run"
    quiet = _fit(synthetic_celeba, out, "--steps", "4", "--log-every", "2", "--quiet")
    lines = [line for line in quiet.stderr.splitlines() if " INFO step " in line]
    assert [line.split(" INFO ")[1].split()[0:2] for line in lines] == [
        ["step", "2/4"],
        ["step", "4/4"],
    ]
    line = r"step 2/4 [\d.]+ img/s L_prior=\S+ L_llike=\S+ L_gan=\S+ D_x=\S+ D_G_z=\S+ "
    assert re.search(line + r"skip_D=\d+% skip_dec=\d+%$", lines[0]), lines[0]
    assert quiet.stderr.count(LEGEND) == 1
    assert not _bar_states(quiet.stderr), "--quiet draws no bar"

    resumed = _fit(synthetic_celeba, out, "--steps", "6", "--resume", "--log-every", "50")
    states = _bar_states(resumed.stderr)
    assert states[0].startswith("step 4/6 "), states
    assert "L_llike=" in next(state for state in states if state.startswith("step 5/6 "))


def test_the_legend_names_only_the_figures_a_run_shows():
    ali = explain({"L_gan", "L_gen", "D_x", "D_G_z", "real_cost", "lr"}, equilibrium=False)
    assert "L_gen" in ali and "D_G_z" in ali
    assert "L_prior" not in ali and "skip_D" not in ali and "real_cost" not in ali
    vae = explain({"L_prior", "L_llike", "L_dec", "lr"}, equilibrium=False)
    assert "pixels for --objective vae" in vae and "D_x" not in vae
    vaegan = explain({"L_prior", "L_llike", "L_gan", "D_x", "D_G_z"}, equilibrium=True)
    assert "skip_D" in vaegan and "skip_dec" in vaegan
