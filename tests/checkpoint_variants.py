"""Variants of a saved checkpoint for refusal tests: edited tensors, header or metadata text."""

import json

from safetensors import safe_open
from safetensors.torch import save_file

from model.checkpoint import load_checkpoint


def rewrite_checkpoint(source, target, *, tensors=None, header=None):
    """Write a variant of a saved checkpoint with edited tensors and/or vaegan header."""
    loaded = load_checkpoint(source)
    all_tensors = {k: v.contiguous() for k, v in loaded.model.state_dict().items()}
    all_tensors.update({f"attributes.{n}": a.vector for n, a in loaded.attributes.items()})
    if tensors is not None:
        all_tensors = tensors(all_tensors)
    info = loaded.header.to_json()
    if header is not None:
        info = header(info)
    save_file(
        all_tensors,
        str(target),
        metadata={"format": "vaegan-checkpoint", "vaegan": json.dumps(info)},
    )
    return target


def with_metadata(source, target, edit):
    """A copy of `source` whose vaegan metadata text is `edit(text)`, tensors unchanged."""
    with safe_open(str(source), framework="pt") as handle:
        tensors = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
        text = handle.metadata()["vaegan"]
    edited = edit(text)
    assert edited != text
    save_file(tensors, str(target), metadata={"format": "vaegan-checkpoint", "vaegan": edited})
    return target
