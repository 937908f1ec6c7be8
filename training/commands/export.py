"""`vaegan-train export`: the encoder and decoder as ONNX, in a Triton model repository.

`training.onnx_export` does the export; this module reads the arguments and prints the result.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from model.checkpoint import load_checkpoint
from training.commands._args import Subparsers, add_command, int_in_range
from training.onnx_export import (
    DEFAULT_MAX_BATCH_SIZE,
    OPSET,
    check_export_target,
    export_checkpoint,
)

MAX_BATCH_SIZE = 4096

HELP = "export the encoder and decoder as ONNX (a Triton model repository)"
DESCRIPTION = (
    "Write DIR/encoder (image -> mu, logvar) and DIR/decoder (z -> image) as ONNX graphs with a "
    "dynamic batch dimension, each with a Triton config.pbtxt, plus DIR/attributes.json (the "
    "attribute vectors, default strengths and input preprocessing) and DIR/README.md. Every "
    "export is checked against PyTorch with onnxruntime before DIR appears; DIR is written "
    "atomically. Needs the onnx extra: pip install 'vaegan[onnx]'."
)


def register(subparsers: Subparsers) -> None:
    parser = add_command(subparsers, "export", run_export, help=HELP, description=DESCRIPTION)
    parser.add_argument(
        "--checkpoint", type=Path, required=True, help="a .safetensors checkpoint written by vaegan"
    )
    parser.add_argument(
        "--out", type=Path, required=True, help="the folder to create (a Triton model repository)"
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="replace an existing --out that holds a previous export (and nothing else)",
    )
    parser.add_argument(
        "--max-batch-size",
        type=int_in_range(1, MAX_BATCH_SIZE),
        default=DEFAULT_MAX_BATCH_SIZE,
        help="the largest batch Triton's dynamic batcher forms (config.pbtxt's max_batch_size)",
    )


def run_export(args: argparse.Namespace) -> int:
    # Refused before the checkpoint is read or anything is exported.
    check_export_target(args.out, force=args.force)
    # On the CPU whatever the machine has: the graphs are float32 and checked with
    # onnxruntime's CPU provider.
    checkpoint = load_checkpoint(args.checkpoint, device="cpu")
    report = export_checkpoint(
        checkpoint, args.out, force=args.force, max_batch_size=args.max_batch_size
    )
    worst = ", ".join(f"{name} {value:.2g}" for name, value in report.max_abs_difference.items())
    batches = " and ".join(str(b) for b in report.check_batch_sizes)
    attributes = len(checkpoint.attributes)
    print(
        f"wrote {args.out}: encoder and decoder (ONNX opset {OPSET}, dynamic batch, Triton "
        f"max_batch_size {args.max_batch_size}) and {attributes} attribute "
        f"vector{'' if attributes == 1 else 's'}"
    )
    print(f"onnxruntime against PyTorch at batch {batches}: max abs difference {worst}")
    return 0
