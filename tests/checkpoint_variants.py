"""Variants of a saved checkpoint for refusal tests: edited tensors, header or metadata text."""

import json

import torch
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


# --- edits, for rewrite_checkpoint and with_metadata ------------------------------------------

RUNNING_VAR = "encoder.features.0.bn.running_var"


def config_change(key, value):
    """A `header` edit: the network config's `key` set to `value`."""
    return lambda header: header | {"config": header["config"] | {key: value}}


def preprocessing_change(key, value):
    """A `header` edit: the preprocessing's `key` set to `value`."""
    return lambda header: header | {"preprocessing": header["preprocessing"] | {key: value}}


def negative_variance(tensors, name=RUNNING_VAR):
    """A `tensors` edit: the batch-norm variances `name` made negative."""
    tensors[name] = -tensors[name].abs() - 1
    return tensors


def relabelled_as_int16(name):
    """A `tensors` edit: float16 bits stored as int16 (the bytes fit, the numbers are garbage)."""

    def relabel(tensors):
        tensors[name] = tensors[name].half().view(torch.int16)
        return tensors

    return relabel


_PLACEHOLDER = "\x00raw metadata value\x00"


def raw_metadata_value(key, raw):
    """A `with_metadata` edit: the metadata's top-level `key` set to the JSON text `raw` as it
    is, which json.dumps would not write (Infinity, a 5,000-digit number, deep nesting)."""

    def edit(text):
        info = json.loads(text)
        info[key] = _PLACEHOLDER
        return json.dumps(info).replace(json.dumps(_PLACEHOLDER), raw)

    return edit


# The hostile checkpoints of issue 15 (items 6 to 8), each built from a good checkpoint:
# name -> build(source, target). tests/model/test_checkpoint.py checks these refusals (and more);
# benchmarks/attacks.py measures what refusing each costs `vaegan-serve`.
HOSTILE = {
    "encoder_fc 200000": lambda s, t: rewrite_checkpoint(
        s, t, header=config_change("encoder_fc", 200_000)
    ),
    "latent_dim 1e6": lambda s, t: rewrite_checkpoint(
        s, t, header=config_change("latent_dim", 1e6)
    ),
    "image_size 2**20": lambda s, t: rewrite_checkpoint(
        s, t, header=config_change("image_size", 2**20)
    ),
    "widths 1e9": lambda s, t: rewrite_checkpoint(
        s, t, header=config_change("encoder_channels", [10**9] * 3)
    ),
    "kernel_size 10001": lambda s, t: rewrite_checkpoint(
        s, t, header=config_change("kernel_size", 10_001)
    ),
    "latent_dim true": lambda s, t: rewrite_checkpoint(
        s, t, header=config_change("latent_dim", True)
    ),
    "metadata nested 100k deep": lambda s, t: with_metadata(
        s, t, raw_metadata_value("deep", "[" * 100_000 + "]" * 100_000)
    ),
    "step Infinity": lambda s, t: with_metadata(s, t, raw_metadata_value("step", "Infinity")),
    "step of 5000 digits": lambda s, t: with_metadata(s, t, raw_metadata_value("step", "9" * 5000)),
    "negative running_var": lambda s, t: rewrite_checkpoint(s, t, tensors=negative_variance),
    "preprocessing 32px for a 64px model": lambda s, t: rewrite_checkpoint(
        s, t, header=preprocessing_change("image_size", 32)
    ),
    "fp16 tensor relabelled I16": lambda s, t: rewrite_checkpoint(
        s, t, tensors=relabelled_as_int16("encoder.mu.weight")
    ),
}
