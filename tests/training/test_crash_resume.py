"""Crash safety of training: real `python -m training fit` processes SIGKILLed at random moments,
many of them in the middle of a checkpoint, state or sample write, and resumed each time.

After every kill each checkpoint on disk loads and the state file loads; after the last resume no
temporary file is left, the run has exactly the requested steps, each logged once, and its
weights equal those of a run that was never killed. The kill moments come from a seeded RNG, so
a failure reproduces with the same seed.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors import safe_open

from model.atomic import remove_stale_temporaries, temporary_target
from model.checkpoint import load_checkpoint
from training.run_dir import STATE_FILE, STATE_FORMAT, load_training_state, read_metrics

FIT_ARGS = [
    "fit",
    "--preset",
    "small32",
    "--batch-size",
    "8",
    "--checkpoint-every",
    "2",
    "--log-every",
    "1",
    "--quiet",
    "--resume-if-present",
]
FIT = [sys.executable, "-m", "training", *FIT_ARGS]
# A killed run is `python -m training` with one difference: before renaming a temporary over a
# file whose name matches $CRASH_TEST_HOLD it sleeps HOLD_S. A temporary otherwise lives for a
# few milliseconds, and a poller on a busy machine can miss all of them (the run then ends before
# the kill it was meant to get); held, every targeted write is caught, either mid-write or at the
# last moment before its rename. Sleeping changes no arithmetic, so resume stays exact.
HOLD_ENV = "CRASH_TEST_HOLD"
HOLD_S = 1.0
HELD_LAUNCHER = textwrap.dedent(
    f"""
    import fnmatch, os, runpy, sys, time
    pattern = os.environ.get("{HOLD_ENV}")
    if pattern:
        rename = os.replace
        def held_rename(source, target, *args, **kwargs):
            if fnmatch.fnmatchcase(os.path.basename(os.fspath(target)), pattern):
                time.sleep({HOLD_S})
            return rename(source, target, *args, **kwargs)
        os.replace = held_rename
    sys.argv[0] = "training"
    runpy.run_module("training", run_name="__main__", alter_sys=True)
    """
)
# Where each kind of write puts its temporary: (subfolder, pattern of the target's name).
WRITES = {
    "checkpoint": ("checkpoints", "step-*.safetensors"),
    "state": (".", STATE_FILE),
    "samples": ("samples", "*.png"),
    "curves": (".", "loss_curves.png"),
    "final": (".", "model.safetensors"),
}
FOLDERS = (".", "checkpoints", "samples")
LAUNCH_TIMEOUT_S = 180


def _env() -> dict[str, str]:
    # One thread everywhere: identical arithmetic in every run (and a busy machine spared).
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}


@dataclass
class Kill:
    """SIGKILL once `write` has been caught mid-write (after `skip` such writes were let
    through), or, without `write`, `delay_s` after the saved state passed `steps` more steps."""

    write: str | None = None
    skip: int = 0
    steps: int = 1
    delay_s: float = 0.0

    def __str__(self) -> str:
        if self.write:
            return f"during {self.write} write #{self.skip + 1}"
        return f"{self.delay_s * 1000:.0f} ms after {self.steps} more saved steps"


@dataclass
class Outcome:
    kill: Kill
    left_behind: list[str] = field(default_factory=list)  # temporaries right after the kill
    saved_step: int = -1


def kill_plan(rng: random.Random, kills: int) -> list[Kill]:
    """`kills` kills: at least one mid-checkpoint and one at a random moment, then two in the
    end of the run: while it writes the loss curves, and while it writes the final checkpoint
    (which must come last: a run with a final checkpoint counts as finished)."""
    kinds: list[str | None] = ["checkpoint", None]
    kinds += [rng.choice(["checkpoint", "state", "samples", None]) for _ in range(kills - 4)]
    rng.shuffle(kinds)
    plan = [
        Kill(kind, skip=rng.randrange(2))
        if kind
        else Kill(steps=rng.randint(1, 3), delay_s=rng.uniform(0.0, 0.3))
        for kind in kinds
    ]
    return [*plan, Kill("curves"), Kill("final")]


def saved_step(run: Path) -> int:
    """The step of the state file, from its header alone; -1 before the first save."""
    try:
        with safe_open(str(run / STATE_FILE), framework="pt") as handle:
            return int(json.loads(handle.metadata()[STATE_FORMAT])["step"])
    except Exception:  # not written yet
        return -1


def temporaries(run: Path) -> list[Path]:
    found = []
    for folder in FOLDERS:
        try:
            found += [Path(e.path) for e in os.scandir(run / folder) if e.name.endswith(".tmp")]
        except FileNotFoundError:
            continue
    return found


def _stopped(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True  # gone
    return state in ("T", "t", "Z")


def _freeze(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGSTOP)
    deadline = time.monotonic() + 5
    while not _stopped(process.pid) and time.monotonic() < deadline:
        time.sleep(0.0005)


def _wait_for(process: subprocess.Popen[bytes], done: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + LAUNCH_TIMEOUT_S
    while not done():
        if process.poll() is not None:
            raise AssertionError(f"the run ended (status {process.returncode}) before {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        # A short poll: temporaries live for milliseconds (write, fsync, rename).
        time.sleep(0.0005)


def launch(
    data: Path, run: Path, steps: int, log: Path, hold: str | None = None
) -> subprocess.Popen[bytes]:
    """Start `fit` on `run`; with `hold`, writes of files matching that pattern are held open."""
    env = _env() | ({HOLD_ENV: hold} if hold else {})
    where = ["--data", str(data), "--out", str(run), "--steps", str(steps)]
    with log.open("ab") as output:
        return subprocess.Popen(
            [sys.executable, "-c", HELD_LAUNCHER, *FIT_ARGS, *where],
            env=env,
            stdout=output,
            stderr=output,
        )


def run_until_killed(process: subprocess.Popen[bytes], run: Path, kill: Kill) -> None:
    """Carry out `kill` on `process`; returns once it is dead."""
    if kill.write is None:
        target = max(saved_step(run), 0) + kill.steps
        _wait_for(process, lambda: saved_step(run) >= target, f"step {target} was saved")
        time.sleep(kill.delay_s)
    else:
        folder, pattern = WRITES[kill.write]
        seen: set[str] = set()

        def caught_mid_write() -> bool:
            for temporary in temporaries(run):
                name = temporary_target(temporary.name)
                if temporary.parent != run / folder or name is None:
                    continue
                if not fnmatchcase(name, pattern) or temporary.name in seen:
                    continue
                seen.add(temporary.name)
                if len(seen) <= kill.skip:
                    continue
                # Frozen, the writer cannot finish; if its temporary is still there the kill
                # lands between creating it and renaming it over the target.
                _freeze(process)
                if temporary.exists():
                    return True
                process.send_signal(signal.SIGCONT)
            return False

        _wait_for(process, caught_mid_write, f"a {kill.write} write")
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL


def check_files_on_disk(run: Path) -> int:
    """Everything a reader might open is whole: every checkpoint, the state, every grid.
    Returns the saved step."""
    for path in sorted((run / "checkpoints").glob("step-*.safetensors")):
        assert load_checkpoint(path).header.step == int(path.stem.split("-")[1]), path
    if (run / "model.safetensors").exists():
        load_checkpoint(run / "model.safetensors")
    for path in sorted((run / "samples").glob("*.png")):
        with Image.open(path) as image:
            image.load()
    if not (run / STATE_FILE).exists():
        return -1
    _, header = load_training_state(run / STATE_FILE)
    return int(header["step"])


def kill_and_resume(data: Path, run: Path, steps: int, plan: list[Kill]) -> list[Outcome]:
    log = run.parent / f"{run.name}.log"
    outcomes = []
    for kill in plan:
        process = launch(data, run, steps, log, WRITES[kill.write][1] if kill.write else None)
        try:
            run_until_killed(process, run, kill)
        except AssertionError as error:
            output = log.read_text()[-3000:]
            raise AssertionError(f"{error} (kill {kill}); log:\n{output}") from None
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        outcome = Outcome(kill, [p.name for p in temporaries(run)])
        outcome.saved_step = check_files_on_disk(run)
        outcomes.append(outcome)
        print(f"killed {kill}: saved step {outcome.saved_step}, left {outcome.left_behind}")
    last = launch(data, run, steps, log)
    try:
        assert last.wait(timeout=LAUNCH_TIMEOUT_S) == 0, log.read_text()[-3000:]
    finally:
        if last.poll() is None:
            last.kill()
            last.wait()
    return outcomes


def check_finished_run(run: Path, straight: Path, steps: int) -> None:
    assert not list(run.rglob("*.tmp")), "temporary files were left behind"
    assert check_files_on_disk(run) == steps
    final = load_checkpoint(run / "model.safetensors")
    assert final.header.step == steps
    assert (run / "loss_curves.png").exists()
    # The metrics log has each step once: lines a killed run wrote past its saved state are gone.
    assert [r["step"] for r in read_metrics(run / "metrics.jsonl")] == list(range(1, steps + 1))
    reference = load_checkpoint(straight / "model.safetensors")
    expected, actual = reference.model.state_dict(), final.model.state_dict()
    assert all(torch.equal(expected[k], actual[k]) for k in expected), "resume must be exact"
    assert final.attributes.keys() == reference.attributes.keys()


def crash_and_resume(data: Path, tmp_path: Path, *, seed: int, kills: int, steps: int) -> None:
    plan = kill_plan(random.Random(seed), kills)
    straight = tmp_path / "straight"
    subprocess.run(
        [*FIT, "--data", str(data), "--out", str(straight), "--steps", str(steps)],
        env=_env(),
        check=True,
        capture_output=True,
        timeout=LAUNCH_TIMEOUT_S,
    )
    run = tmp_path / "killed"
    outcomes = kill_and_resume(data, run, steps, plan)
    # Every write kill froze its writer with the temporary on disk, so the next run had stale
    # temporaries to clean up; the checks above prove it did.
    for outcome in outcomes:
        if outcome.kill.write:
            assert outcome.left_behind, f"kill {outcome.kill} left no temporary"
    saved = [o.saved_step for o in outcomes]
    assert saved == sorted(saved), f"a resumed run lost saved steps: {saved}"
    check_finished_run(run, straight, steps)


def test_sigkilled_training_resumes_to_the_exact_step_with_every_file_whole(
    synthetic_celeba: Path, tmp_path: Path
) -> None:
    crash_and_resume(synthetic_celeba, tmp_path, seed=8, kills=4, steps=30)


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("seed", [1, 2])
def test_many_kills_at_random_moments(synthetic_celeba: Path, tmp_path: Path, seed: int) -> None:
    crash_and_resume(synthetic_celeba, tmp_path, seed=seed, kills=15, steps=80)


def test_a_new_run_clears_what_a_killed_run_left_behind(
    synthetic_celeba: Path, tmp_path: Path
) -> None:
    """Stale temporaries of the run's own files go, other files stay; a run killed before its
    first saved state does not leave its logged steps in the new run's metrics."""
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "samples").mkdir()
    stale = [
        run / ".state.safetensors.k2j4h1x_.tmp",
        run / ".metrics.jsonl.abcdefgh.tmp",
        run / ".model.safetensors.0a1b2c3d.tmp",
        run / "checkpoints" / ".step-0000002.safetensors.zz9yy8xx.tmp",
        run / "samples" / ".samples-0000002.png.q1w2e3r4.tmp",
    ]
    foreign = [run / "notes.tmp", run / ".notes.txt.abcdefgh.tmp", run / "samples" / "mine.png"]
    for path in stale + foreign:
        path.write_bytes(b"half a file")
    (run / "metrics.jsonl").write_text("".join(f'{{"step": {s}}}\n' for s in (1, 2, 3)) + '{"st')

    command = [*FIT, "--data", str(synthetic_celeba), "--out", str(run), "--steps", "2"]
    subprocess.run(command, env=_env(), check=True, capture_output=True, timeout=300)
    assert not [path for path in stale if path.exists()]
    assert all(path.exists() for path in foreign)
    assert [r["step"] for r in read_metrics(run / "metrics.jsonl")] == [1, 2]

    # Re-running a finished run (a restartable job's retry) clears them too.
    for path in stale:
        path.write_bytes(b"half a file")
    again = subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert "already finished 2 steps" in again.stdout
    assert not [path for path in stale if path.exists()]
    assert all(path.exists() for path in foreign)


def test_a_killed_writer_leaves_a_temporary_that_names_its_target(tmp_path: Path) -> None:
    """A real SIGKILL inside atomic_write_bytes: the target is untouched and the temporary left
    behind is recognised (and only removed) by remove_stale_temporaries."""
    target = tmp_path / "model.safetensors"
    target.write_bytes(b"the old file")
    script = textwrap.dedent(
        f"""
        import os, signal
        from pathlib import Path
        from model.atomic import atomic_write_bytes
        os.fsync = lambda fd: os.kill(os.getpid(), signal.SIGKILL)  # die after the data
        atomic_write_bytes(Path({str(target)!r}), b"the new file")
        """
    )
    killed = subprocess.run([sys.executable, "-c", script], env=_env(), timeout=120)
    assert killed.returncode == -signal.SIGKILL
    assert target.read_bytes() == b"the old file"
    (temporary,) = tmp_path.glob("*.tmp")
    assert temporary.read_bytes() == b"the new file"
    assert temporary_target(temporary.name) == target.name

    assert remove_stale_temporaries(tmp_path, lambda name: name == "other") == []
    assert temporary.exists()
    assert remove_stale_temporaries(tmp_path, lambda name: name == target.name) == [temporary]
    assert not temporary.exists()
    assert target.read_bytes() == b"the old file"
