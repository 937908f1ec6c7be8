"""`vaegan-train export`: real ONNX files, run by a real onnxruntime against PyTorch."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format

from model import load_checkpoint, save_checkpoint
from model.checkpoint import AttributeVector
from model.codec import load_image_tensor
from model.config import get_preset
from model.demo import demo_checkpoint_path
from tests.training.conftest import PREPROCESSING
from training import onnx_export
from training.cli import main
from training.onnx_export import export_checkpoint

ROOT = Path(__file__).resolve().parents[2]
# float32 graphs with batch norm folded into the weights differ from PyTorch by rounding only
# (about 1e-6 measured); anything near 1e-4 would be a real difference.
BOUND = 1e-4
EXPORT_FILES = {
    "encoder/config.pbtxt",
    "encoder/1/model.onnx",
    "decoder/config.pbtxt",
    "decoder/1/model.onnx",
    "attributes.json",
    "README.md",
}


@pytest.fixture(scope="module")
def checkpoint_path(shared_small64, tmp_path_factory) -> Path:
    """The briefly trained small64 with three attribute vectors: one with its own default
    strength, two falling back to the evaluation's shared one; do not modify."""
    generator = torch.Generator().manual_seed(3)
    attributes = {
        name: AttributeVector(torch.randn(128, generator=generator), 20, 40, strength)
        for name, strength in (("Smiling", 1.5), ("Male", None), ("Eyeglasses", None))
    }
    path = tmp_path_factory.mktemp("onnx-checkpoint") / "model.safetensors"
    return save_checkpoint(
        path,
        shared_small64,
        preprocessing=PREPROCESSING,
        attributes=attributes,
        evaluation={"edit_strength": 2.0},
        step=40,
    )


@pytest.fixture(scope="module")
def exported(checkpoint_path, tmp_path_factory) -> Path:
    """The checkpoint exported by the command as a user runs it; treat it as read-only."""
    out = tmp_path_factory.mktemp("exports") / "repository"
    argv = ["export", "--checkpoint", str(checkpoint_path), "--out", str(out)]
    assert main([*argv, "--max-batch-size", "16"]) == 0
    return out


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def _session(path: Path) -> onnxruntime.InferenceSession:
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _assert_close(name: str, batch: int, ours: np.ndarray, theirs: torch.Tensor) -> float:
    assert ours.shape == tuple(theirs.shape), (name, ours.shape, tuple(theirs.shape))
    difference = float(np.abs(ours - theirs.numpy()).max())
    assert difference < BOUND, (
        f"{name} at batch {batch}: max abs difference {difference:.3g} (bound {BOUND:g})"
    )
    return difference


def _compare_with_pytorch(repository: Path, model, images: torch.Tensor) -> dict[str, float]:
    """Encoder, decoder and the two chained, onnxruntime against PyTorch on `images`."""
    encoder = _session(repository / "encoder" / "1" / "model.onnx")
    decoder = _session(repository / "decoder" / "1" / "model.onnx")
    z = torch.randn(len(images), model.config.latent_dim, generator=torch.Generator())
    with torch.inference_mode():
        posterior = model.encode(images)
        decoded = model.decode(z)
        reconstruction = model.reconstruct(images)
    mu, logvar = encoder.run(["mu", "logvar"], {"image": images.numpy()})
    (image,) = decoder.run(["image"], {"z": z.numpy()})
    (chained,) = decoder.run(["image"], {"z": mu})
    batch = len(images)
    return {
        "mu": _assert_close("encoder mu", batch, mu, posterior.mu),
        "logvar": _assert_close("encoder logvar", batch, logvar, posterior.logvar),
        "image": _assert_close("decoder image", batch, image, decoded),
        "reconstruction": _assert_close("reconstruction", batch, chained, reconstruction),
    }


# --------------------------------------------------------------------------------------------
# what the export holds


def test_the_export_is_a_triton_repository_with_a_sidecar(exported):
    assert _files(exported) == EXPORT_FILES
    # Nothing left beside it: the staging folder was renamed, not copied.
    assert [p.name for p in exported.parent.iterdir()] == [exported.name]
    readme = (exported / "README.md").read_text()
    assert "tritonserver --model-repository" in readme and "z = mu + s * vector" in readme


@pytest.mark.parametrize("batch", [1, 5])
def test_onnxruntime_matches_pytorch_at_any_batch_size(exported, checkpoint_path, batch):
    model = load_checkpoint(checkpoint_path).model
    generator = torch.Generator().manual_seed(batch)
    images = torch.rand(batch, 3, 64, 64, generator=generator) * 2 - 1
    differences = _compare_with_pytorch(exported, model, images)
    assert max(differences.values()) < BOUND, differences


def test_the_graphs_have_a_dynamic_batch_dimension_and_the_configs_names(exported):
    for name in ("encoder", "decoder"):
        graph = onnx.load(exported / name / "1" / "model.onnx").graph
        config = _parse_triton_config((exported / name / "config.pbtxt").read_text())
        assert config.name == name and config.platform == "onnxruntime_onnx"
        assert config.max_batch_size == 16
        assert config.dynamic_batching.max_queue_delay_microseconds > 0
        for declared, actual in ((config.input, graph.input), (config.output, graph.output)):
            assert [t.name for t in declared] == [t.name for t in actual]
            for tensor, value in zip(declared, actual, strict=True):
                assert value.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
                assert tensor.data_type == DATA_TYPES.index("TYPE_FP32")
                first, *rest = value.type.tensor_type.shape.dim
                # Symbolic, not a number: any batch size runs.
                assert first.dim_param and not first.HasField("dim_value")
                assert [d.dim_value for d in rest] == list(tensor.dims)
    opsets = {
        o.domain: o.version for o in onnx.load(exported / "decoder/1/model.onnx").opset_import
    }
    assert opsets[""] == onnx_export.OPSET


def test_the_sidecar_round_trips_the_vectors(exported, checkpoint_path):
    checkpoint = load_checkpoint(checkpoint_path)
    sidecar = json.loads((exported / "attributes.json").read_text())
    assert sidecar["format"] == "vaegan-onnx-export" and sidecar["latent_dim"] == 128
    assert sidecar["checkpoint"]["sha256"] == checkpoint.sha256
    assert sidecar["input"]["image_size"] == 64 and sidecar["input"]["channels"] == 3
    assert sidecar["input"]["value_range"] == [-1.0, 1.0]
    assert sidecar["input"]["preprocessing"] == PREPROCESSING.to_dict()
    assert [a["name"] for a in sidecar["attributes"]] == list(checkpoint.attributes)
    strengths = {a["name"]: a["default_strength"] for a in sidecar["attributes"]}
    assert strengths == {"Smiling": 1.5, "Male": 2.0, "Eyeglasses": 2.0}
    for entry in sidecar["attributes"]:
        vector = torch.tensor(entry["vector"], dtype=torch.float32)
        # Exactly: a float32 written as a JSON double reads back bit for bit.
        assert torch.equal(vector, checkpoint.attributes[entry["name"]].vector)
        assert entry["norm"] == pytest.approx(float(vector.norm()))
    for name, model in sidecar["models"].items():
        assert (exported / model["file"]).is_file(), name


def test_an_edit_from_the_sidecar_decodes_as_in_pytorch(exported, checkpoint_path):
    """The README's recipe, z = mu + s * vector, run on the exported graphs alone."""
    model = load_checkpoint(checkpoint_path).model
    sidecar = json.loads((exported / "attributes.json").read_text())
    (smiling,) = [a for a in sidecar["attributes"] if a["name"] == "Smiling"]
    face = (ROOT / "docs" / "examples" / "face.jpg").read_bytes()
    image = load_image_tensor(face, PREPROCESSING).unsqueeze(0)
    (mu, _) = _session(exported / "encoder/1/model.onnx").run(None, {"image": image.numpy()})
    z = mu + smiling["default_strength"] * np.asarray(smiling["vector"], np.float32)
    (edited,) = _session(exported / "decoder/1/model.onnx").run(None, {"z": z})
    with torch.inference_mode():
        vector = torch.tensor(smiling["vector"])
        expected = model.decode(model.encode(image).mu + smiling["default_strength"] * vector)
    _assert_close("edited face", 1, edited, expected)


def test_the_bundled_demo_model_exports(tmp_path):
    checkpoint = load_checkpoint(demo_checkpoint_path())
    assert checkpoint.parameter_dtype == torch.float16  # stored half, exported as float32
    report = export_checkpoint(checkpoint, tmp_path / "demo")
    assert max(report.max_abs_difference.values()) < BOUND, report.max_abs_difference
    faces = [(ROOT / "docs" / "examples" / name).read_bytes() for name in ("face.jpg", "face2.jpg")]
    images = torch.stack([load_image_tensor(f, checkpoint.preprocessing) for f in faces])
    model = load_checkpoint(demo_checkpoint_path()).model
    _compare_with_pytorch(tmp_path / "demo", model, images)
    sidecar = json.loads((tmp_path / "demo" / "attributes.json").read_text())
    assert [a["name"] for a in sidecar["attributes"]] == list(checkpoint.attributes)
    assert sidecar["checkpoint"]["preset"] == "medium64"


# --------------------------------------------------------------------------------------------
# the command's refusals: one line, exit 2, nothing written


def _refused(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert error.startswith("vaegan-train export: error: ") and error.count("\n") == 1, error
    return error


def test_a_missing_or_foreign_checkpoint_is_one_line(tmp_path, capsys):
    out = tmp_path / "out"
    error = _refused(capsys, ["export", "--checkpoint", str(tmp_path / "no.st"), "--out", str(out)])
    assert "no.st" in error
    foreign = tmp_path / "notes.safetensors"
    foreign.write_text("not a checkpoint\n")
    _refused(capsys, ["export", "--checkpoint", str(foreign), "--out", str(out)])
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["notes.safetensors"]


def test_an_existing_folder_is_refused_unless_forced(checkpoint_path, tmp_path, capsys):
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine\n")
    argv = ["export", "--checkpoint", str(checkpoint_path), "--out"]
    assert "not empty" in _refused(capsys, [*argv, str(taken)])
    # --force replaces a previous export only, never a folder with anything else in it.
    assert "notes.txt" in _refused(capsys, [*argv, str(taken), "--force"])
    assert _files(taken) == {"notes.txt"}
    a_file = tmp_path / "file"
    a_file.write_text("x")
    assert "is a file" in _refused(capsys, [*argv, str(a_file)])
    assert "is a file" in _refused(capsys, [*argv, str(a_file / "below")])


def test_force_replaces_a_previous_export(checkpoint_path, exported, tmp_path, capsys):
    out = tmp_path / "repository"
    (out / "encoder").mkdir(parents=True)
    (out / "README.md").write_text("an older export\n")
    argv = ["export", "--checkpoint", str(checkpoint_path), "--out", str(out), "--force"]
    argv += ["--max-batch-size", "16"]
    assert main(argv) == 0
    assert "max abs difference" in capsys.readouterr().out
    assert _files(out) == EXPORT_FILES
    assert (out / "README.md").read_text() == (exported / "README.md").read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["repository"]  # the old one is gone
    # The graphs are the same bytes as the first export's: exports are reproducible.
    for name in ("encoder/1/model.onnx", "decoder/1/model.onnx"):
        assert (out / name).read_bytes() == (exported / name).read_bytes()


def test_a_failure_midway_leaves_nothing(checkpoint_path, tmp_path, capsys, monkeypatch):
    real = onnx_export._export_graph

    def full_disk_at_the_decoder(module, spec, directory):
        if spec.name == "decoder":
            raise OSError(28, "No space left on device")
        real(module, spec, directory)

    monkeypatch.setattr(onnx_export, "_export_graph", full_disk_at_the_decoder)
    out = tmp_path / "out"
    argv = ["export", "--checkpoint", str(checkpoint_path), "--out", str(out)]
    assert "No space left" in _refused(capsys, argv)
    assert list(tmp_path.iterdir()) == []  # neither DIR nor its staging folder


def test_graphs_that_disagree_with_pytorch_are_not_published(checkpoint_path, tmp_path, capsys):
    checkpoint = load_checkpoint(checkpoint_path)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(onnx_export, "max_abs_difference", lambda ours, theirs: 0.25)
        with pytest.raises(onnx_export.ExportError, match="disagree by up to 0.25"):
            export_checkpoint(checkpoint, tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_missing_onnx_tools_are_named(checkpoint_path, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # import onnxscript now fails
    argv = ["export", "--checkpoint", str(checkpoint_path), "--out", str(tmp_path / "out")]
    error = _refused(capsys, argv)
    assert "onnxscript" in error and "vaegan[onnx]" in error


# --------------------------------------------------------------------------------------------
# Triton's ModelConfig, the part config.pbtxt uses

# inference.DataType in Triton's model_config.proto, in number order.
DATA_TYPES = [
    "TYPE_INVALID",
    "TYPE_BOOL",
    "TYPE_UINT8",
    "TYPE_UINT16",
    "TYPE_UINT32",
    "TYPE_UINT64",
    "TYPE_INT8",
    "TYPE_INT16",
    "TYPE_INT32",
    "TYPE_INT64",
    "TYPE_FP16",
    "TYPE_FP32",
    "TYPE_FP64",
    "TYPE_STRING",
    "TYPE_BF16",
]


def _parse_triton_config(text: str):
    """`text` parsed as protobuf text into the fields of Triton's inference.ModelConfig that an
    export writes (names, types and numbers as in Triton's model_config.proto), so that a typo,
    an unknown field or a bad enum value fails here as Triton would fail to load it.
    tritonclient, which ships the real schema, is too heavy a test dependency."""
    field = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(
        name="vaegan_triton_model_config_subset.proto", package="inference", syntax="proto3"
    )
    data_type = proto.enum_type.add(name="DataType")
    for number, name in enumerate(DATA_TYPES):
        data_type.value.add(name=name, number=number)

    def message(name, *fields):
        described = proto.message_type.add(name=name)
        for field_name, number, kind, repeated, type_name in fields:
            added = described.field.add(name=field_name, number=number, type=kind)
            added.label = field.LABEL_REPEATED if repeated else field.LABEL_OPTIONAL
            if type_name:
                added.type_name = f".inference.{type_name}"

    enum, string, int32 = field.TYPE_ENUM, field.TYPE_STRING, field.TYPE_INT32
    int64, uint64, nested = field.TYPE_INT64, field.TYPE_UINT64, field.TYPE_MESSAGE
    message(
        "ModelInput",
        ("name", 1, string, False, None),
        ("data_type", 2, enum, False, "DataType"),
        ("dims", 4, int64, True, None),
    )
    message(
        "ModelOutput",
        ("name", 1, string, False, None),
        ("data_type", 2, enum, False, "DataType"),
        ("dims", 3, int64, True, None),
    )
    message(
        "ModelDynamicBatching",
        ("preferred_batch_size", 1, int32, True, None),
        ("max_queue_delay_microseconds", 2, uint64, False, None),
    )
    message(
        "ModelConfig",
        ("name", 1, string, False, None),
        ("platform", 2, string, False, None),
        ("max_batch_size", 4, int32, False, None),
        ("input", 5, nested, True, "ModelInput"),
        ("output", 6, nested, True, "ModelOutput"),
        ("dynamic_batching", 11, nested, False, "ModelDynamicBatching"),
        ("backend", 17, string, False, None),
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    config_class = message_factory.GetMessageClass(
        pool.FindMessageTypeByName("inference.ModelConfig")
    )
    return text_format.Parse(text, config_class())


def test_the_config_check_refuses_what_triton_would():
    good = onnx_export.triton_config(onnx_export.graph_specs(get_preset("small64"))[1], 8)
    assert _parse_triton_config(good).output[0].dims == [3, 64, 64]
    for bad in (
        good.replace("TYPE_FP32", "TYPE_FLOAT32"),
        good.replace("max_batch_size", "max_batch"),
        good.replace("dims: [ 128 ]", "dims: [ 128 "),
    ):
        with pytest.raises(text_format.ParseError):
            _parse_triton_config(bad)


def test_the_console_script_refuses_in_one_line_without_a_traceback(tmp_path):
    script = Path(sys.executable).parent / "vaegan-train"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "training"]
    missing = tmp_path / "missing.safetensors"
    result = subprocess.run(
        [*command, "export", "--checkpoint", str(missing), "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("vaegan-train export: error: ") and "missing" in result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
