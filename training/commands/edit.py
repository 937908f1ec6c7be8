"""`vaegan-train edit`: a face with attributes added and removed, as a strip of strengths."""

from __future__ import annotations

import argparse
import difflib
import re
from pathlib import Path

from torch import Tensor

from model.checkpoint import Checkpoint
from model.codec import ImageError, Preprocessing
from model.files import FileRefusedError
from training.attributes import attribute_edits
from training.commands._args import (
    MAX_STRENGTHS,
    Subparsers,
    add_checkpoint_arguments,
    add_command,
    add_png_out_argument,
    check_output_path,
    load_for_command,
    parse_strengths,
    write_grid,
)
from training.data import read_image_file

HELP = "add or remove attributes from a face with the checkpoint's attribute vectors"
DESCRIPTION = (
    "Encode an image, decode mu + s * vector for each strength s, and save a strip: the "
    "input first, then one cell per strength; one row per --attribute."
)


def register(subparsers: Subparsers) -> None:
    parser = add_command(subparsers, "edit", run_edit, help=HELP, description=DESCRIPTION)
    # argparse would read "-2,-1,0,1,2" as an unknown option, since it is not one negative number;
    # nothing in this command's options starts with a minus and a digit, so such words are values.
    parser._negative_number_matcher = re.compile(r"^-\.?\d")
    add_checkpoint_arguments(parser)
    parser.add_argument("--image", type=Path, required=True, help="the face to edit")
    parser.add_argument(
        "--attribute",
        action="append",
        required=True,
        help="attribute to edit, e.g. Smiling; repeat for one row per attribute",
    )
    parser.add_argument(
        "--strengths",
        type=parse_strengths,
        default=parse_strengths("-2,-1,0,1,2"),
        help=f"comma-separated multiples of the vector, at most {MAX_STRENGTHS} "
        "(default -2,-1,0,1,2)",
    )
    add_png_out_argument(parser)


def run_edit(args: argparse.Namespace) -> int:
    check_output_path(args.out)
    checkpoint, device = load_for_command(args)
    vectors = [_attribute_vector(checkpoint, name) for name in args.attribute]
    image = _read_image(args.image, checkpoint.preprocessing)
    cells = attribute_edits(checkpoint.model, image, vectors, args.strengths, device=device)
    grid = write_grid(args.out, cells, nrow=1 + len(args.strengths))
    strengths = ", ".join(f"{s:g}" for s in args.strengths)
    print(
        f"wrote {', '.join(args.attribute)} edits of {args.image} at strengths {strengths} "
        f"({grid.shape[2]}x{grid.shape[1]}) to {args.out}"
    )
    return 0


def _attribute_vector(checkpoint: Checkpoint, name: str) -> Tensor:
    available = list(checkpoint.attributes)
    if not available:
        raise ValueError(
            f"checkpoint {checkpoint.path} has no attribute vectors; run `vaegan-train "
            f"attributes --checkpoint {checkpoint.path} --data DIR` first"
        )
    if name not in checkpoint.attributes:
        close = difflib.get_close_matches(name, available, n=1, cutoff=0.8)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise ValueError(
            f"checkpoint {checkpoint.path} has no attribute vector {name!r}{hint}; "
            f"available: {', '.join(available)}"
        )
    return checkpoint.attributes[name].vector


def _read_image(path: Path, preprocessing: Preprocessing) -> Tensor:
    try:
        return read_image_file(path, preprocessing)
    except FileRefusedError as exc:
        raise ValueError(f"image {path}: {exc.problem}") from None
    except ImageError as exc:
        raise ValueError(f"image {path}: {exc}") from None
