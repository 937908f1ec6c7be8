import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from model import load_checkpoint, save_checkpoint
from tests.checkpoint_variants import rewrite_checkpoint
from tests.processes import as_unprivileged_user, folder_anyone_can_enter, run_measured
from tests.training.conftest import PREPROCESSING
from training.attributes import compute_attribute_vectors
from training.cli import main
from training.data import CelebADataset
from training.evaluate import METRIC_NAMES
from training.inference import InferenceOptions

VAEGAN_TRAIN = Path(sys.executable).parent / "vaegan-train"
CELL = 64 + 2  # a 64-pixel image plus make_grid's 2-pixel padding


@pytest.fixture(scope="module")
def plain_checkpoint(shared_small64, tmp_path_factory) -> Path:
    """A briefly trained small64 checkpoint without attribute vectors; do not modify."""
    model = shared_small64
    path = tmp_path_factory.mktemp("checkpoints") / "plain.safetensors"
    return save_checkpoint(path, model, preprocessing=PREPROCESSING, step=40)


@pytest.fixture(scope="module")
def checkpoint_with_vectors(plain_checkpoint, synthetic_celeba) -> Path:
    """The same model with attribute vectors (at least Smiling and Male); do not modify."""
    checkpoint = load_checkpoint(plain_checkpoint)
    faces = CelebADataset(synthetic_celeba, split="all", preprocessing=PREPROCESSING)
    report = compute_attribute_vectors(
        checkpoint.model,
        faces,
        options=InferenceOptions(count=10_000, batch_size=32),
        min_examples=5,
    )
    assert {"Smiling", "Male"} <= set(report.vectors)
    path = plain_checkpoint.with_name("with-vectors.safetensors")
    return save_checkpoint(
        path, checkpoint.model, preprocessing=PREPROCESSING, attributes=report.vectors
    )


@pytest.fixture
def face(synthetic_celeba) -> Path:
    return synthetic_celeba / "img_align_celeba" / "000001.jpg"


def _png_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        assert image.format == "PNG"
        image.load()  # decodes every pixel: a truncated file fails here
        return image.size


def _error(capsys) -> str:
    return capsys.readouterr().err


# --------------------------------------------------------------------------------------------
# attributes


def test_attributes_prints_a_table_and_stores_the_vectors(
    plain_checkpoint, synthetic_celeba, tmp_path, capsys
):
    checkpoint = tmp_path / "model.safetensors"
    shutil.copy(plain_checkpoint, checkpoint)
    code = main(
        [
            "attributes",
            "--checkpoint",
            str(checkpoint),
            "--data",
            str(synthetic_celeba),
            "--split",
            "all",
            "--batch-size",
            "16",
            "--min-examples",
            "5",
            "--device",
            "cpu",
            "--quiet",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    stored = load_checkpoint(checkpoint)
    smiling = stored.attributes["Smiling"]
    row = next(line for line in out.splitlines() if line.startswith("Smiling "))
    assert row.split()[:3] == ["Smiling", str(smiling.positives), str(smiling.negatives)]
    assert smiling.positives + smiling.negatives == 60
    assert "skipped" in out and "Wearing_Hat" in out  # too rare in 60 faces
    assert "Wearing_Hat" not in stored.attributes
    assert stored.header.dataset["attribute_vectors"]["images"] == 60
    assert stored.header.dataset["attribute_vectors"]["split"] == "all"
    assert stored.header.step == 40
    assert f"wrote {len(stored.attributes)} attribute vectors" in out


def test_attributes_writes_nothing_when_every_attribute_is_too_rare(
    plain_checkpoint, synthetic_celeba, tmp_path, capsys
):
    checkpoint = tmp_path / "model.safetensors"
    shutil.copy(plain_checkpoint, checkpoint)
    before = checkpoint.read_bytes()
    args = ["--data", str(synthetic_celeba), "--count", "8", "--min-examples", "5", "--quiet"]
    assert main(["attributes", "--checkpoint", str(checkpoint), *args]) == 2
    assert "nothing was written" in _error(capsys)
    assert checkpoint.read_bytes() == before


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("plain-folder", "is not a complete CelebA folder"),
        ("missing", "does not exist"),
    ],
)
def test_attributes_refuses_unusable_data(
    plain_checkpoint, synthetic_celeba, tmp_path, capsys, data, message
):
    folder = tmp_path / data
    if data == "plain-folder":
        shutil.copytree(synthetic_celeba / "img_align_celeba", folder)
    code = main(["attributes", "--checkpoint", str(plain_checkpoint), "--data", str(folder)])
    assert code == 2
    error = _error(capsys)
    assert error.startswith("vaegan-train attributes: error:") and message in error


def test_a_missing_checkpoint_is_a_clear_error(synthetic_celeba, tmp_path, capsys):
    missing = tmp_path / "nope.safetensors"
    assert main(["attributes", "--checkpoint", str(missing), "--data", str(synthetic_celeba)]) == 2
    assert f"checkpoint {missing}: no such file" in _error(capsys)


# --------------------------------------------------------------------------------------------
# evaluate


def test_evaluate_prints_one_line_per_metric(plain_checkpoint, synthetic_celeba, capsys):
    args = ["--checkpoint", str(plain_checkpoint), "--data", str(synthetic_celeba), "--quiet"]
    # Without the judged figures the bundled judge adds on synthetic faces (tested elsewhere).
    assert main(["evaluate", *args, "--no-judge"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "6 images of the test split" in lines[0]
    assert [line.split()[0] for line in lines[1:]] == list(METRIC_NAMES)


def test_evaluate_json_is_the_only_thing_on_stdout(plain_checkpoint, synthetic_celeba, capsys):
    folder = synthetic_celeba / "img_align_celeba"  # a plain image folder: no labels, no split
    args = ["--checkpoint", str(plain_checkpoint), "--data", str(folder), "--count", "10"]
    assert main(["evaluate", *args, "--json", "--batch-size", "4"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert set(metrics) == {*METRIC_NAMES, "images", "damaged"}
    assert metrics["images"] == 10
    assert all(isinstance(metrics[name], float) for name in METRIC_NAMES)


def test_evaluate_refuses_a_missing_data_folder(plain_checkpoint, tmp_path, capsys):
    args = ["--checkpoint", str(plain_checkpoint), "--data", str(tmp_path / "none")]
    assert main(["evaluate", *args]) == 2
    assert "vaegan-train evaluate: error:" in _error(capsys)


# --------------------------------------------------------------------------------------------
# sample


def test_sample_writes_a_seeded_grid(plain_checkpoint, tmp_path, capsys):
    def sample(out: Path, seed: str) -> None:
        args = ["--checkpoint", str(plain_checkpoint), "--n", "6", "--nrow", "3", "--seed", seed]
        assert main(["sample", *args, "--out", str(out)]) == 0

    first = tmp_path / "new" / "folder" / "grid.png"
    sample(first, "7")
    assert _png_size(first) == (3 * CELL + 2, 2 * CELL + 2)
    assert "wrote 6 samples" in capsys.readouterr().out
    sample(tmp_path / "again.png", "7")
    sample(tmp_path / "other.png", "8")
    assert first.read_bytes() == (tmp_path / "again.png").read_bytes()
    assert first.read_bytes() != (tmp_path / "other.png").read_bytes()
    assert sorted(p.name for p in first.parent.iterdir()) == ["grid.png"]  # no temp files


@pytest.mark.parametrize("n", ["0", "1025", "lots"])
def test_sample_count_must_be_1_to_1024(plain_checkpoint, tmp_path, capsys, n):
    with pytest.raises(SystemExit) as info:
        main(["sample", "--checkpoint", str(plain_checkpoint), "--n", n, "--out", "x.png"])
    assert info.value.code == 2
    assert "argument --n" in _error(capsys)


def test_sample_refuses_a_folder_as_output(plain_checkpoint, tmp_path, capsys):
    assert main(["sample", "--checkpoint", str(plain_checkpoint), "--out", str(tmp_path)]) == 2
    assert "is a folder" in _error(capsys)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_asking_for_cuda_without_it_is_a_clear_error(plain_checkpoint, tmp_path, capsys):
    args = ["--checkpoint", str(plain_checkpoint), "--device", "cuda"]
    assert main(["sample", *args, "--out", str(tmp_path / "x.png")]) == 2
    assert "--device cuda" in _error(capsys)


# --------------------------------------------------------------------------------------------
# edit


def test_edit_writes_one_row_per_attribute(checkpoint_with_vectors, face, tmp_path, capsys):
    out = tmp_path / "strip.png"
    args = ["--checkpoint", str(checkpoint_with_vectors), "--image", str(face)]
    args += ["--attribute", "Smiling", "--attribute", "Male"]
    # Passed as its own word, the way a shell passes it: argparse must not take it for an option.
    args += ["--strengths", "-2,-1,0,1,2", "--out", str(out)]
    assert main(["edit", *args]) == 0
    assert _png_size(out) == (6 * CELL + 2, 2 * CELL + 2)
    assert "Smiling, Male" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("attribute", "message"),
    [
        ("Smilling", "no attribute vector 'Smilling' (did you mean Smiling?); available: "),
        ("Flying", "no attribute vector 'Flying'; available: "),
    ],
)
def test_edit_names_the_available_attributes(
    checkpoint_with_vectors, face, tmp_path, capsys, attribute, message
):
    args = ["--checkpoint", str(checkpoint_with_vectors), "--image", str(face)]
    code = main(["edit", *args, "--attribute", attribute, "--out", str(tmp_path / "x.png")])
    assert code == 2
    error = _error(capsys)
    assert error.startswith("vaegan-train edit: error:") and message in error
    assert "Smiling" in error.split("available:")[1]
    assert not (tmp_path / "x.png").exists()


def test_edit_without_vectors_says_to_run_attributes(plain_checkpoint, face, tmp_path, capsys):
    args = ["--checkpoint", str(plain_checkpoint), "--image", str(face), "--attribute", "Smiling"]
    assert main(["edit", *args, "--out", str(tmp_path / "x.png")]) == 2
    assert "no attribute vectors; run `vaegan-train attributes" in _error(capsys)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "the image is empty"),
        (b"plain text, not a picture", "not an image in a supported format"),
        (None, "no such file"),
    ],
)
def test_edit_refuses_unreadable_images(
    checkpoint_with_vectors, tmp_path, capsys, content, message
):
    image = tmp_path / "face.jpg"
    if content is not None:
        image.write_bytes(content)
    args = ["--checkpoint", str(checkpoint_with_vectors), "--image", str(image)]
    assert main(["edit", *args, "--attribute", "Smiling", "--out", str(tmp_path / "x.png")]) == 2
    error = _error(capsys)
    assert f"image {image}:" in error and message in error


@pytest.mark.parametrize(
    ("strengths", "message"),
    [
        ("strong", "comma-separated numbers"),
        ("1,,2", "comma-separated numbers"),
        ("1,nan", "comma-separated numbers"),
        (",".join(["1"] * 17), "at most 16 strengths"),
    ],
)
def test_edit_refuses_bad_strengths(checkpoint_with_vectors, face, capsys, strengths, message):
    args = ["--checkpoint", str(checkpoint_with_vectors), "--image", str(face)]
    with pytest.raises(SystemExit) as info:
        main(["edit", *args, "--attribute", "Smiling", "--strengths", strengths, "--out", "x.png"])
    assert info.value.code == 2
    error = _error(capsys)
    assert "vaegan-train edit: error: argument --strengths" in error and message in error


# --------------------------------------------------------------------------------------------
# the installed console script


def _console_script(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(VAEGAN_TRAIN), *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_console_script_samples_and_reports_errors_without_a_traceback(
    checkpoint_with_vectors, plain_checkpoint, face, tmp_path
):
    out = tmp_path / "grid.png"
    sample = _console_script(
        "sample", "--checkpoint", str(checkpoint_with_vectors), "--n", "4", "--out", str(out)
    )
    assert sample.returncode == 0, sample.stderr
    assert _png_size(out) == (4 * CELL + 2, CELL + 2)

    args = ["--checkpoint", str(plain_checkpoint), "--image", str(face), "--attribute", "Smiling"]
    edit = _console_script("edit", *args, "--strengths=-1,1", "--out", str(tmp_path / "e.png"))
    assert edit.returncode == 2
    assert "vaegan-train edit: error:" in edit.stderr and "Traceback" not in edit.stderr
    assert edit.stdout == ""


# --------------------------------------------------------------------------------------------
# ALI checkpoints


@pytest.fixture(scope="module")
def ali_checkpoint(synthetic_celeba, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ali")
    arguments = ["fit", "--objective", "ali", "--data", str(synthetic_celeba), "--out", str(out)]
    assert (
        main([*arguments, "--preset", "small64", "--batch-size", "8", "--steps", "2", "--quiet"])
        == 0
    )
    return out / "model.safetensors"


def test_every_checkpoint_command_takes_an_ali_checkpoint(
    ali_checkpoint, synthetic_celeba, face, tmp_path, capsys
):
    copy = tmp_path / "ali.safetensors"
    shutil.copyfile(ali_checkpoint, copy)
    rewritten = ["--checkpoint", str(copy), "--data", str(synthetic_celeba)]
    assert main(["attributes", *rewritten, "--min-examples", "5", "--quiet"]) == 0
    assert load_checkpoint(copy).header.objective == "ali"
    assert load_checkpoint(copy).attributes
    capsys.readouterr()

    data = ["--checkpoint", str(ali_checkpoint), "--data", str(synthetic_celeba)]

    assert main(["evaluate", *data, "--quiet", "--no-judge"]) == 0
    text = capsys.readouterr().out.splitlines()
    assert "(ali, step 2)" in text[0]
    assert text[2].split()[:2] == ["similarity_distance", "nan"]  # no Dis_l in ALI's D

    # The bundled judge scores ALI's reconstructions and edits like any other model's.
    assert main(["evaluate", *data, "--quiet", "--json", "--edit-strength", "2"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["similarity_distance"] is None
    for name in ("reconstruction_mse", "kl", "reconstruction_agreement", "frechet_distance"):
        assert isinstance(report[name], float), name
    assert report["judge"]["edit_strength"] == 2

    grid = tmp_path / "grid.png"
    assert (
        main(["sample", "--checkpoint", str(ali_checkpoint), "--n", "4", "--out", str(grid)]) == 0
    )
    strip = tmp_path / "strip.png"
    edit = ["edit", "--checkpoint", str(ali_checkpoint), "--image", str(face)]
    assert main([*edit, "--attribute", "Male", "--strengths", "-1,0,1", "--out", str(strip)]) == 0
    assert _png_size(strip) == (4 * CELL + 2, CELL + 2)


# --------------------------------------------------------------------------------------------
# hostile files: one line and exit 2, in bounded time and memory, from the real process

# A refusal costs the interpreter, torch and (for edit) the small model: about 300 MiB.
REFUSAL_PEAK_MIB = 700


def _refused_by_the_console_script(result, message: str) -> None:
    assert result.returncode == 2, result.stderr
    assert result.error_lines == [message]
    assert result.seconds < 30  # mostly interpreter start-up; a hang is killed at 60 s
    assert result.peak_mib < REFUSAL_PEAK_MIB


@pytest.mark.parametrize("kind", ["fifo", "/dev/zero"])
def test_edit_refuses_an_image_that_is_not_a_regular_file(checkpoint_with_vectors, tmp_path, kind):
    # A FIFO used to hang forever; /dev/zero grew the process to 6.9 GiB before it died.
    image = tmp_path / "face.jpg"
    if kind == "fifo":
        os.mkfifo(image)
    else:
        image = Path(kind)
    args = ["--checkpoint", str(checkpoint_with_vectors), "--image", str(image)]
    result = run_measured(
        [str(VAEGAN_TRAIN), "edit", *args, "--attribute", "Smiling", "--out", str(tmp_path / "e")],
        timeout=60,
    )
    problem = "a FIFO" if kind == "fifo" else "a character device"
    _refused_by_the_console_script(
        result, f"vaegan-train edit: error: image {image}: not a regular file ({problem})"
    )


def test_a_header_describing_a_huge_network_is_refused_without_building_it(
    plain_checkpoint, tmp_path
):
    # Valid widths, but 6.7 GB of weights the file does not hold: building the network before
    # comparing shapes needed all of it.
    huge = rewrite_checkpoint(
        plain_checkpoint,
        tmp_path / "huge.safetensors",
        header=lambda h: h | {"config": h["config"] | {"encoder_channels": [8192] * 3}},
    )
    result = run_measured(
        [str(VAEGAN_TRAIN), "sample", "--checkpoint", str(huge), "--out", str(tmp_path / "s")],
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    (line,) = result.error_lines
    assert line.startswith(
        f"vaegan-train sample: error: checkpoint {huge}: weights with the wrong shape: "
        "encoder.features.0.conv.weight (8, 3, 5, 5) (expected (8192, 3, 5, 5)), "
    )
    assert result.seconds < 30
    assert result.peak_mib < REFUSAL_PEAK_MIB


def test_an_unreadable_checkpoint_is_one_line(plain_checkpoint):
    with folder_anyone_can_enter() as folder:
        locked = folder / "locked.safetensors"
        shutil.copyfile(plain_checkpoint, locked)
        locked.chmod(0)
        command = [str(VAEGAN_TRAIN), "sample", "--checkpoint", str(locked), "--out", "s.png"]
        result = run_measured(as_unprivileged_user(command), timeout=60, cwd=folder)
    _refused_by_the_console_script(
        result,
        f"vaegan-train sample: error: checkpoint {locked}: cannot be read (permission denied)",
    )
