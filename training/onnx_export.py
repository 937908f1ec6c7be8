"""A checkpoint as ONNX: the encoder and the decoder in a Triton model repository.

`export_checkpoint` writes, atomically (a temporary sibling folder renamed into place):

    DIR/encoder/config.pbtxt      image (B, C, S, S) in [-1, 1] -> mu, logvar (B, latent_dim)
    DIR/encoder/1/model.onnx
    DIR/decoder/config.pbtxt      z (B, latent_dim) -> image (B, C, S, S) in [-1, 1]
    DIR/decoder/1/model.onnx
    DIR/attributes.json           the attribute vectors and how to prepare an input
    DIR/README.md                 the same in words, and the check below

Triton loads every subfolder of a model repository as a model and ignores files beside them, so
the sidecar and the README may sit at the top.

The exporter is torch's own, `torch.onnx.export(..., dynamo=True)`: the default and the
maintained one in torch 2.13 (the TorchScript exporter is deprecated), it takes the batch
dimension as a `torch.export.Dim`, and onnxscript's optimizer folds every batch norm into the
convolution or matrix product before it, so the graphs are plain Conv/Gemm/Relu/Tanh. Opset 18 is
the version the exporter's operator library is written for (no conversion pass), and onnxruntime
1.14 and later read it, Triton's 23.02 and later among them.

Every export is checked before it is published: onnxruntime runs both graphs on a few inputs at
two batch sizes and must agree with PyTorch to `TOLERANCE`.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import math
import os
import secrets
import shutil
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from model.atomic import fsync_directory
from model.checkpoint import Checkpoint, StrengthSource
from model.config import VAEGANConfig
from model.networks import VAEGAN, Decoder, Encoder

# The operator set the graphs are written in; see the module's docstring.
OPSET = 18
SIDECAR_FORMAT = "vaegan-onnx-export"
SIDECAR_VERSION = 1

ENCODER = "encoder"
DECODER = "decoder"
MODEL_VERSION = "1"  # Triton's numbered version folder
MODEL_FILE = "model.onnx"  # the file name Triton's onnxruntime backend looks for
CONFIG_FILE = "config.pbtxt"
SIDECAR_FILE = "attributes.json"
README_FILE = "README.md"
# What an export writes at the top of DIR: --force replaces a folder holding nothing else, so a
# mistyped --out cannot delete someone's home folder.
EXPORT_ENTRIES = frozenset({ENCODER, DECODER, SIDECAR_FILE, README_FILE})

# Triton's dynamic batcher: the largest batch it forms, and how long it waits to form one (the
# service's own default batching delay, 5 ms).
DEFAULT_MAX_BATCH_SIZE = 64
MAX_QUEUE_DELAY_US = 5000
# The largest batch the graphs are exported for; the graphs themselves have no limit below it.
_MAX_EXPORT_BATCH = 1 << 16

# onnxruntime against PyTorch, the largest absolute difference allowed in any output. float32
# graphs that fold batch norm into the weights differ from PyTorch's by rounding only: about
# 1e-6 measured on the bundled model; 1e-3 still refuses any real error, which is O(0.1).
TOLERANCE = 1e-3
CHECK_BATCH_SIZES = (1, 3)


class ExportError(ValueError):
    """An export that cannot be made (a missing tool, a graph that disagrees with PyTorch)."""


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of a graph, its shape without the batch dimension."""

    name: str
    dims: tuple[int, ...]


@dataclass(frozen=True)
class GraphSpec:
    """One exported network: its Triton model name, inputs and outputs (all float32)."""

    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]


def graph_specs(config: VAEGANConfig) -> tuple[GraphSpec, GraphSpec]:
    """The encoder's and the decoder's inputs and outputs for a model with this config."""
    image = (config.channels, config.image_size, config.image_size)
    latent = (config.latent_dim,)
    encoder = GraphSpec(
        ENCODER,
        inputs=(TensorSpec("image", image),),
        outputs=(TensorSpec("mu", latent), TensorSpec("logvar", latent)),
    )
    decoder = GraphSpec(
        DECODER, inputs=(TensorSpec("z", latent),), outputs=(TensorSpec("image", image),)
    )
    return encoder, decoder


@dataclass(frozen=True)
class ExportReport:
    directory: Path
    opset: int
    # The largest |onnxruntime - PyTorch| per output ("encoder.mu", ...) over the check inputs.
    max_abs_difference: dict[str, float]
    check_batch_sizes: tuple[int, ...]


# --------------------------------------------------------------------------------------------
# the export


def export_checkpoint(
    checkpoint: Checkpoint,
    out: Path,
    *,
    force: bool = False,
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
) -> ExportReport:
    """Write `checkpoint`'s encoder and decoder to `out` as a Triton model repository.

    The checkpoint's model is moved to the CPU (in float32) for the export and its check.

    Nothing is left half-written: the files go to a temporary sibling folder that is renamed to
    `out` once every file is written and checked. An existing `out` that is not empty is refused
    (FileExistsError) unless `force`, and then only if it holds nothing but a previous export.
    """
    check_export_target(out, force=force)
    if max_batch_size < 1:
        raise ValueError(f"max_batch_size must be at least 1, got {max_batch_size}")
    _require_tools()
    encoder_spec, decoder_spec = graph_specs(checkpoint.config)
    # CPU and float32, whatever the checkpoint was loaded on: the graphs carry float32 weights.
    model = checkpoint.model.to("cpu", torch.float32).eval()
    out.parent.mkdir(parents=True, exist_ok=True)
    # A plain mkdir (not mkdtemp's owner-only folder), so that a Triton server running as
    # another user can read the repository; the random part keeps concurrent exports apart.
    staging = _sibling(out, "tmp")
    staging.mkdir()
    try:
        _export_graph(_EncoderGraph(model.encoder), encoder_spec, staging)
        _export_graph(model.decoder, decoder_spec, staging)
        for spec in (encoder_spec, decoder_spec):
            _write_text(staging / spec.name / CONFIG_FILE, triton_config(spec, max_batch_size))
        differences = check_against_pytorch(staging, model, checkpoint.config)
        worst = max(differences.values())
        if not worst <= TOLERANCE:  # also refuses NaN
            raise ExportError(
                f"onnxruntime and PyTorch disagree by up to {worst:.3g} (allowed {TOLERANCE:g}); "
                "nothing was written"
            )
        report = ExportReport(out, OPSET, differences, CHECK_BATCH_SIZES)
        sidecar = sidecar_json(checkpoint, max_batch_size)
        _write_text(staging / SIDECAR_FILE, json.dumps(sidecar, indent=2) + "\n")
        _write_text(staging / README_FILE, repository_readme(checkpoint, report, max_batch_size))
        _publish(staging, out, force=force)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return report


def check_export_target(out: Path, *, force: bool) -> None:
    """Refuse an `out` that an export may not become, before any time is spent exporting."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; name a folder (it becomes the model repository)")
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ValueError(f"--out {out}: {parent} is a file, not a folder")
            break
    if not out.is_dir():
        return
    entries = {entry.name for entry in out.iterdir()}
    if not entries:
        return
    if not force:
        raise FileExistsError(f"--out {out} exists and is not empty; --force replaces an export")
    foreign = sorted(entries - EXPORT_ENTRIES)
    if foreign:
        raise FileExistsError(
            f"--out {out} holds more than an export ({', '.join(foreign[:3])}"
            f"{', ...' if len(foreign) > 3 else ''}); --force replaces only a previous export"
        )


def _require_tools() -> None:
    missing = []
    for name in ("onnx", "onnxscript", "onnxruntime"):
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise ExportError(f"the ONNX export needs {', '.join(missing)}: pip install 'vaegan[onnx]'")


class _EncoderGraph(nn.Module):
    """The encoder with a plain (mu, logvar) tuple for an output, named in the graph."""

    def __init__(self, encoder: Encoder) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, image: Tensor) -> tuple[Tensor, Tensor]:
        posterior = self.encoder(image)
        return posterior.mu, posterior.logvar


def _export_graph(module: _EncoderGraph | Decoder, spec: GraphSpec, directory: Path) -> None:
    """Export `module` to directory/NAME/1/model.onnx with a dynamic batch dimension."""
    # Batch 2, not 1: torch.export specialises a dimension whose example size is 1.
    (example_input,) = spec.inputs
    example = torch.zeros(2, *example_input.dims)
    batch = torch.export.Dim("batch", min=1, max=_MAX_EXPORT_BATCH)
    # The name of forward's argument: dynamic_shapes is keyed by it.
    argument = "image" if isinstance(module, _EncoderGraph) else "z"
    target = directory / spec.name / MODEL_VERSION / MODEL_FILE
    target.parent.mkdir(parents=True)
    with _quiet_exporter():
        program = torch.onnx.export(
            module.eval(),
            (example,),
            dynamo=True,
            opset_version=OPSET,
            input_names=[t.name for t in spec.inputs],
            output_names=[t.name for t in spec.outputs],
            dynamic_shapes={argument: {0: batch}},
            verbose=False,
        )
    if program is None:  # only the TorchScript exporter returns nothing
        raise ExportError(f"torch.onnx.export returned no program for the {spec.name}")
    # One self-contained file, the weights inside. Only past protobuf's 2 GB limit, which no
    # preset approaches, does save() move them to model.onnx.data beside it; Triton's
    # onnxruntime backend reads either.
    program.save(target, external_data=False)


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """The exporter's progress lines, INFO logs and its own deprecation warnings, silenced.

    They are about torch's internals (torchvision operators it skips, optimizer passes), not
    about this model; a real failure raises. `vaegan-train` logs at INFO, so without this an
    export would print a page of them.
    """
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "onnxscript", "onnx_ir")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


# --------------------------------------------------------------------------------------------
# the check


def check_against_pytorch(directory: Path, model: VAEGAN, config: VAEGANConfig) -> dict[str, float]:
    """Run the exported graphs with onnxruntime on seeded inputs at every CHECK_BATCH_SIZES and
    return the largest |onnxruntime - PyTorch| per output."""
    encoder = load_session(directory / ENCODER / MODEL_VERSION / MODEL_FILE)
    decoder = load_session(directory / DECODER / MODEL_VERSION / MODEL_FILE)
    generator = torch.Generator().manual_seed(0)
    size = config.image_size
    worst = {"encoder.mu": 0.0, "encoder.logvar": 0.0, "decoder.image": 0.0}
    for batch in CHECK_BATCH_SIZES:
        images = torch.rand(batch, config.channels, size, size, generator=generator) * 2 - 1
        z = torch.randn(batch, config.latent_dim, generator=generator)
        with torch.inference_mode():
            posterior = model.encoder(images)
            decoded = model.decoder(z)
        mu, logvar = encoder.run(None, {"image": images.numpy()})
        (image,) = decoder.run(None, {"z": z.numpy()})
        for name, ours, theirs in (
            ("encoder.mu", mu, posterior.mu),
            ("encoder.logvar", logvar, posterior.logvar),
            ("decoder.image", image, decoded),
        ):
            worst[name] = max(worst[name], max_abs_difference(ours, theirs))
    return worst


def max_abs_difference(onnx_output: np.ndarray[Any, Any], torch_output: Tensor) -> float:
    """max |a - b|, NaN where the shapes differ (so that no tolerance accepts it)."""
    reference = torch_output.detach().cpu().numpy()
    if onnx_output.shape != reference.shape:
        return math.nan
    return float(np.max(np.abs(onnx_output.astype(np.float64) - reference)))


def load_session(path: Path, *, threads: int = 1) -> Any:
    """An onnxruntime CPU session for one exported graph, on `threads` threads."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


# --------------------------------------------------------------------------------------------
# what is written beside the graphs


def triton_config(spec: GraphSpec, max_batch_size: int) -> str:
    """The model's config.pbtxt (protobuf text of Triton's ModelConfig).

    With max_batch_size > 0 Triton adds the batch dimension itself: `dims` name the rest, and
    the graph's first dimension must be dynamic, which it is. No instance_group: Triton then puts
    one instance on every GPU it has, or on the CPU when it has none.
    """

    def tensors(kind: str, specs: Sequence[TensorSpec]) -> list[str]:
        lines = [f"{kind} ["]
        for index, tensor in enumerate(specs):
            dims = ", ".join(str(d) for d in tensor.dims)
            lines += [
                "  {",
                f'    name: "{tensor.name}"',
                "    data_type: TYPE_FP32",
                f"    dims: [ {dims} ]",
                "  }" + ("," if index < len(specs) - 1 else ""),
            ]
        return [*lines, "]"]

    lines = [
        f'name: "{spec.name}"',
        'platform: "onnxruntime_onnx"',
        f"max_batch_size: {max_batch_size}",
        *tensors("input", spec.inputs),
        *tensors("output", spec.outputs),
        "dynamic_batching {",
        f"  max_queue_delay_microseconds: {MAX_QUEUE_DELAY_US}",
        "}",
    ]
    return "\n".join(lines) + "\n"


# How attributes.json says where each default strength came from.
_STRENGTH_SOURCES: dict[StrengthSource, str] = {
    "attribute": "chosen for this attribute (vaegan-train strengths)",
    "evaluation": "the evaluation's edit strength for every attribute",
    "none": "none recorded: one vector's worth",
}


def default_strength(checkpoint: Checkpoint, name: str) -> tuple[float, str]:
    """The strength an edit of `name` uses when none is given, as the service picks it, and
    where it comes from in words."""
    strength, source = checkpoint.default_edit_strength(name)
    return strength, _STRENGTH_SOURCES[source]


def sidecar_json(checkpoint: Checkpoint, max_batch_size: int) -> dict[str, Any]:
    """attributes.json: the attribute vectors, and what the graphs' inputs must look like."""
    config, preprocessing = checkpoint.config, checkpoint.preprocessing
    encoder_spec, decoder_spec = graph_specs(config)
    attributes = []
    for name, attribute in checkpoint.attributes.items():
        strength, source = default_strength(checkpoint, name)
        attributes.append(
            {
                "name": name,
                # float32 values written as the doubles they are: they read back exactly.
                "vector": [float(v) for v in attribute.vector.detach().cpu().float().tolist()],
                "norm": attribute.norm,
                "default_strength": strength,
                "default_strength_source": source,
                "positives": attribute.positives,
                "negatives": attribute.negatives,
            }
        )

    def described(spec: GraphSpec) -> dict[str, Any]:
        def tensors(specs: Sequence[TensorSpec]) -> list[dict[str, Any]]:
            return [
                {"name": t.name, "dtype": "float32", "shape": ["batch", *t.dims]} for t in specs
            ]

        return {
            "file": f"{spec.name}/{MODEL_VERSION}/{MODEL_FILE}",
            "inputs": tensors(spec.inputs),
            "outputs": tensors(spec.outputs),
        }

    return {
        "format": SIDECAR_FORMAT,
        "format_version": SIDECAR_VERSION,
        "checkpoint": {
            "file": checkpoint.path.name,
            "sha256": checkpoint.sha256,
            "step": checkpoint.header.step,
            "preset": checkpoint.header.preset,
            "objective": checkpoint.header.objective,
        },
        "opset": OPSET,
        "max_batch_size": max_batch_size,
        "latent_dim": config.latent_dim,
        "input": {
            "layout": "NCHW",
            "dtype": "float32",
            "channels": config.channels,
            "color": "RGB" if config.channels == 3 else "grayscale",
            "image_size": config.image_size,
            "value_range": list(preprocessing.value_range),
            "preprocessing": preprocessing.to_dict(),
            "how": (
                "CelebA's aligned 178x218 images: crop rows and cols as celeba_crop "
                "(top, bottom, left, right); anything else: the centre square. Then, with blur, "
                "a Gaussian blur of sigma sqrt(side / image_size) / 2 and a bicubic resize to "
                "image_size; values scaled from [0, 255] to value_range. "
                "model.codec.load_image_tensor does exactly this."
            ),
        },
        "models": {ENCODER: described(encoder_spec), DECODER: described(decoder_spec)},
        "edit": (
            "z = mu + sum_i s_i * vector_i (s_i < 0 removes the attribute), then decode z; "
            "vectors are not normalised: s = 1 moves z by one norm"
        ),
        "attributes": attributes,
    }


def repository_readme(checkpoint: Checkpoint, report: ExportReport, max_batch_size: int) -> str:
    config = checkpoint.config
    c, s, d = config.channels, config.image_size, config.latent_dim
    names = ", ".join(checkpoint.attributes) or "none (run vaegan-train attributes first)"
    differences = ", ".join(f"{k} {v:.2g}" for k, v in report.max_abs_difference.items())
    batches = " and ".join(str(b) for b in report.check_batch_sizes)
    image = f"float32 (batch, {c}, {s}, {s}), values in [-1, 1]"
    latent = f"float32 (batch, {d})"
    return f"""# vaegan ONNX export

Exported by `vaegan-train export` from `{checkpoint.path.name}` (sha256 {checkpoint.sha256[:12]},
step {checkpoint.header.step:,}), ONNX opset {report.opset}. A Triton model repository:

| model | input | outputs |
|---|---|---|
| `encoder` | `image` {image} | `mu`, `logvar` {latent} |
| `decoder` | `z` {latent} | `image` {image} |

The batch dimension is dynamic; each `config.pbtxt` lets Triton gather queued requests into
batches of up to {max_batch_size} (`max_batch_size`, `dynamic_batching`). Serve it with

    tritonserver --model-repository=/path/to/this/folder

An input image is RGB, NCHW, cropped and resized to {s}x{s} and scaled to [-1, 1]:
`attributes.json` ("input") says how. Output pixels are (image + 1) * 127.5.
A reconstruction decodes `mu`; a sample decodes z ~ N(0, I).

Attribute edits: `attributes.json` holds one vector per attribute ({names}) with the
strength the vaegan service uses by default; decode z = mu + s * vector (s < 0 removes it).

Checked when exported: onnxruntime against PyTorch on seeded inputs at batch {batches}, largest
absolute difference {differences}.
"""


# --------------------------------------------------------------------------------------------
# files


def _write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def _sync_tree(root: Path) -> None:
    """fsync every file and folder under `root` before the rename that publishes it, so that a
    power cut cannot leave a published repository whose files lost their data."""
    for path in sorted(root.rglob("*")):
        if path.is_file():
            with path.open("rb") as handle:
                os.fsync(handle.fileno())
    for folder in [root, *(p for p in root.rglob("*") if p.is_dir())]:
        fsync_directory(folder)


def _publish(staging: Path, out: Path, *, force: bool) -> None:
    """Rename the finished `staging` folder to `out`.

    A missing or empty `out` is replaced in one rename. A previous export (`force`) is first
    moved aside, so a reader sees the old repository or the new one, and for the moment between
    the two renames none; the old one is then deleted.
    """
    check_export_target(out, force=force)  # again: it may have changed during the export
    _sync_tree(staging)
    if out.is_dir() and any(out.iterdir()):
        aside = _sibling(out, "old")
        out.replace(aside)
        try:
            staging.replace(out)
        except BaseException:
            aside.replace(out)  # put the previous export back
            raise
        shutil.rmtree(aside, ignore_errors=True)
    else:
        staging.replace(out)
    fsync_directory(out.parent)


def _sibling(out: Path, kind: str) -> Path:
    """A hidden name next to `out` that names it: `.DIR.<random>.tmp` (or `.old`)."""
    return out.parent / f".{out.name}.{secrets.token_hex(4)}.{kind}"
