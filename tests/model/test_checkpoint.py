import dataclasses
import hashlib
import json
import os
import pickle
import struct
import time

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from model import checkpoint as checkpoint_module
from model.checkpoint import (
    FORMAT_VERSION,
    AttributeVector,
    CheckpointError,
    load_checkpoint,
    read_checkpoint_header,
    save_checkpoint,
)
from model.codec import Preprocessing
from model.config import get_preset, make_config
from model.networks import build_vaegan
from tests.checkpoint_variants import (
    RUNNING_VAR,
    config_change,
    negative_variance,
    preprocessing_change,
    rewrite_checkpoint,
    with_metadata,
)


def _trained_looking(config, seed=0):
    """A model whose BN running statistics are not the defaults, as after training."""
    model = build_vaegan(config, seed=seed)
    model.train()
    size = config.image_size
    with torch.no_grad():
        x = torch.rand(8, config.channels, size, size) * 2 - 1
        model.discriminator(model.decoder(model.encoder(x).mu))
    return model.eval()


@pytest.fixture
def saved(tmp_path):
    config = get_preset("small64")
    model = _trained_looking(config)
    attributes = {
        "Smiling": AttributeVector(torch.randn(config.latent_dim), positives=41, negatives=59),
        "Eyeglasses": AttributeVector(torch.randn(config.latent_dim), positives=7, negatives=93),
    }
    path = save_checkpoint(
        tmp_path / "model.safetensors",
        model,
        preprocessing=Preprocessing(image_size=64),
        step=1234,
        dataset={"kind": "celeba", "images": 100},
        recipe={"objective": "vaegan", "gamma": 1e-6},
        evaluation={"fid": 12.5},
        attributes=attributes,
    )
    return path, model, attributes


def test_round_trip_gives_identical_outputs(saved):
    path, model, _ = saved
    loaded = load_checkpoint(path)
    x = torch.rand(3, 3, 64, 64) * 2 - 1
    z = torch.randn(3, 128)
    with torch.no_grad():
        assert torch.equal(loaded.model.encoder(x).mu, model.encoder(x).mu)
        assert torch.equal(loaded.model.encoder(x).logvar, model.encoder(x).logvar)
        assert torch.equal(loaded.model.decoder(z), model.decoder(z))
        assert torch.equal(loaded.model.discriminator(x).logit, model.discriminator(x).logit)
    assert not loaded.model.training
    state, restored = model.state_dict(), loaded.model.state_dict()
    assert all(torch.equal(state[k], restored[k]) for k in state)


def test_float16_parameters_halve_the_file_and_load_as_a_float32_model(saved, tmp_path):
    path, model, attributes = saved
    half = save_checkpoint(
        tmp_path / "half.safetensors",
        model,
        preprocessing=Preprocessing(image_size=64),
        attributes=attributes,
        parameter_dtype=torch.float16,
    )
    assert half.stat().st_size < 0.55 * path.stat().st_size
    loaded = load_checkpoint(half)
    state, restored = model.state_dict(), loaded.model.state_dict()
    for name, value in restored.items():
        assert value.dtype == state[name].dtype, name
        if "running" in name:  # batch-norm statistics are kept exactly
            assert torch.equal(value, state[name]), name
        elif value.is_floating_point():
            assert torch.equal(value, state[name].half().float()), name
    assert torch.equal(loaded.attributes["Smiling"].vector, attributes["Smiling"].vector)
    x = torch.rand(3, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        before = model.decoder(model.encoder(x).mu)
        after = loaded.model.decoder(loaded.model.encoder(x).mu)
    assert (before - after).abs().mean() < 0.01


def test_parameters_can_only_be_stored_as_floats(saved, tmp_path):
    _, model, _ = saved
    with pytest.raises(ValueError, match="float32, float16 or bfloat16"):
        save_checkpoint(
            tmp_path / "int.safetensors",
            model,
            preprocessing=Preprocessing(image_size=64),
            parameter_dtype=torch.int8,
        )
    assert not (tmp_path / "int.safetensors").exists()


def test_round_trip_keeps_the_header_and_attributes(saved):
    path, _, attributes = saved
    loaded = load_checkpoint(path)
    header = loaded.header
    assert header.config == get_preset("small64")
    assert header.preprocessing == Preprocessing(image_size=64)
    assert header.step == 1234
    assert header.dataset == {"kind": "celeba", "images": 100}
    assert header.recipe == {"objective": "vaegan", "gamma": 1e-6}
    assert header.evaluation == {"fid": 12.5}
    assert header.format_version == FORMAT_VERSION
    assert header.software["torch"] == torch.__version__
    assert list(loaded.attributes) == ["Smiling", "Eyeglasses"]
    for name, attribute in attributes.items():
        assert torch.equal(loaded.attributes[name].vector, attribute.vector)
        assert loaded.attributes[name].positives == attribute.positives
        assert loaded.attributes[name].negatives == attribute.negatives
        assert header.attributes[name]["norm"] == pytest.approx(attribute.norm)
    assert loaded.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_header_can_be_read_without_the_weights(saved):
    path, _, _ = saved
    header = read_checkpoint_header(path)
    assert header.step == 1234
    assert set(header.attributes) == {"Smiling", "Eyeglasses"}


def test_greyscale_32px_round_trip(tmp_path):
    config = make_config(32, channels=1, width="small")
    model = _trained_looking(config)
    path = save_checkpoint(
        tmp_path / "grey.safetensors",
        model,
        preprocessing=Preprocessing(image_size=32, channels=1),
    )
    loaded = load_checkpoint(path)
    x = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded.model.reconstruct(x), model.reconstruct(x))
    assert loaded.attributes == {}


def test_loading_never_unpickles(saved, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a checkpoint load must never unpickle")

    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    load_checkpoint(saved[0])


def test_wrapped_models_save_plain_weights(tmp_path):
    config = get_preset("small32")
    model = build_vaegan(config, seed=0)
    wrapped = nn.DataParallel(model)  # same `.module` wrapping as DistributedDataParallel
    path = save_checkpoint(tmp_path / "w.safetensors", wrapped, preprocessing=Preprocessing(32))
    loaded = load_checkpoint(path)
    assert set(loaded.model.state_dict()) == set(model.state_dict())


def test_preprocessing_must_match_the_model(tmp_path):
    model = build_vaegan(get_preset("small32"), seed=0)
    with pytest.raises(ValueError, match="model takes 3x32px"):
        save_checkpoint(tmp_path / "x.safetensors", model, preprocessing=Preprocessing(64))
    assert not (tmp_path / "x.safetensors").exists()


def test_bad_attribute_vectors_are_refused_before_writing(tmp_path):
    model = build_vaegan(get_preset("small32"), seed=0)
    for attributes, message in [
        ({"Smiling": AttributeVector(torch.zeros(3), 1, 1)}, "expected \\(128,\\)"),
        ({"Smiling": AttributeVector(torch.full((128,), float("nan")), 1, 1)}, "NaN"),
        ({" ": AttributeVector(torch.zeros(128), 1, 1)}, "non-empty"),
    ]:
        with pytest.raises(ValueError, match=message):
            save_checkpoint(
                tmp_path / "x.safetensors",
                model,
                preprocessing=Preprocessing(32),
                attributes=attributes,
            )
    assert list(tmp_path.iterdir()) == []


def test_writes_are_atomic(saved, monkeypatch):
    path, model, _ = saved
    before = path.read_bytes()

    def crash(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, model, preprocessing=Preprocessing(), step=99)
    assert path.read_bytes() == before, "a failed write must leave the old checkpoint intact"
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name], "no temporary left"


def test_written_files_get_the_usual_permissions(saved):
    mask = os.umask(0)
    os.umask(mask)
    assert saved[0].stat().st_mode & 0o777 == 0o666 & ~mask


def test_overwriting_replaces_the_file_completely(saved):
    path, model, _ = saved
    save_checkpoint(path, model, preprocessing=Preprocessing(), step=5)
    assert load_checkpoint(path).header.step == 5
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


# --- refusals: every message names the file and the problem ---------------------------------


def _refused(path, message):
    with pytest.raises(CheckpointError, match=message) as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)
    return info.value


def test_missing_file(tmp_path):
    _refused(tmp_path / "nope.safetensors", "no such file")


def test_directory(tmp_path):
    _refused(tmp_path, "not a regular file")


def test_empty_file(tmp_path):
    path = tmp_path / "empty.safetensors"
    path.write_bytes(b"")
    _refused(path, "only 0 bytes")


@pytest.mark.parametrize("keep", [0.999, 0.5, 0.01])
def test_truncated_file(saved, tmp_path, keep):
    data = saved[0].read_bytes()
    path = tmp_path / "cut.safetensors"
    path.write_bytes(data[: int(len(data) * keep)])
    _refused(path, "truncated")


def test_header_metadata_alone_is_also_refused_when_truncated(saved, tmp_path):
    data = saved[0].read_bytes()
    path = tmp_path / "cut.safetensors"
    path.write_bytes(data[:-10])
    with pytest.raises(CheckpointError, match="truncated"):
        read_checkpoint_header(path)


def test_trailing_garbage(saved, tmp_path):
    path = tmp_path / "long.safetensors"
    path.write_bytes(saved[0].read_bytes() + b"extra")
    _refused(path, "5 unexpected bytes after the tensor data")


def test_random_bytes(tmp_path):
    path = tmp_path / "junk.safetensors"
    path.write_bytes(os.urandom(4096))
    _refused(path, "not a safetensors file")


def test_text_file(tmp_path):
    path = tmp_path / "notes.safetensors"
    path.write_bytes(struct.pack("<Q", 5) + b"hello")
    _refused(path, "header is not JSON")


def test_pytorch_pickle_is_refused_and_explained(tmp_path):
    path = tmp_path / "model.pt"
    torch.save(build_vaegan(get_preset("small32"), seed=0).state_dict(), path)
    _refused(path, "PyTorch pickle .* never unpickles")


def test_foreign_safetensors_file(tmp_path):
    path = tmp_path / "other.safetensors"
    save_file({"weight": torch.zeros(3)}, str(path), metadata={"format": "pt"})
    _refused(path, "not a vaegan checkpoint")


def test_newer_format_version(saved, tmp_path):
    path = rewrite_checkpoint(
        saved[0], tmp_path / "new.safetensors", header=lambda h: h | {"format_version": 99}
    )
    _refused(path, "newer vaegan .*format 99.*upgrade")
    with pytest.raises(CheckpointError, match="newer vaegan"):
        read_checkpoint_header(path)


def test_invalid_config(saved, tmp_path):
    def bad(h):
        h["config"]["channels"] = 4
        return h

    _refused(
        rewrite_checkpoint(saved[0], tmp_path / "c.safetensors", header=bad),
        "config is invalid.*channels",
    )


def test_unknown_config_key(saved, tmp_path):
    def bad(h):
        h["config"]["mystery"] = 1
        return h

    _refused(
        rewrite_checkpoint(saved[0], tmp_path / "c.safetensors", header=bad),
        "unknown model config keys",
    )


def test_malformed_metadata(saved, tmp_path):
    path = rewrite_checkpoint(
        saved[0], tmp_path / "m.safetensors", header=lambda h: {"format_version": 1}
    )
    _refused(path, "malformed")


def test_missing_weight(saved, tmp_path):
    def drop(t):
        del t["decoder.to_image.weight"]
        return t

    _refused(
        rewrite_checkpoint(saved[0], tmp_path / "w.safetensors", tensors=drop),
        "missing weights: decoder.to_image.weight",
    )


def test_wrong_weight_shape(saved, tmp_path):
    def reshape(t):
        t["encoder.mu.bias"] = torch.zeros(7)
        return t

    _refused(
        rewrite_checkpoint(saved[0], tmp_path / "w.safetensors", tensors=reshape),
        "wrong shape: encoder.mu.bias",
    )


def test_non_finite_weights(saved, tmp_path):
    def poison(t):
        t["encoder.mu.weight"] = torch.full_like(t["encoder.mu.weight"], float("nan"))
        return t

    _refused(
        rewrite_checkpoint(saved[0], tmp_path / "w.safetensors", tensors=poison),
        "NaN or infinite values in encoder.mu.weight",
    )


def test_missing_attribute_vector(saved, tmp_path):
    def drop(t):
        del t["attributes.Smiling"]
        return t

    _refused(
        rewrite_checkpoint(saved[0], tmp_path / "a.safetensors", tensors=drop),
        "'Smiling' is listed but its vector is missing",
    )


def test_unexpected_tensor(saved, tmp_path):
    path = rewrite_checkpoint(
        saved[0], tmp_path / "x.safetensors", tensors=lambda t: t | {"spare": torch.zeros(1)}
    )
    _refused(path, "unexpected tensors: spare")


def test_the_error_carries_path_and_problem(tmp_path):
    error = _refused(tmp_path / "gone.safetensors", "no such file")
    assert error.path == tmp_path / "gone.safetensors"
    assert error.problem == "no such file"
    assert isinstance(error, ValueError)


def test_module_exports_the_format_constants():
    assert checkpoint_module.FORMAT_NAME == "vaegan-checkpoint"


# --- the objective ---------------------------------------------------------------------------


def test_an_ali_checkpoint_round_trips_with_its_joint_discriminator(tmp_path):
    config = get_preset("small64").replace(discriminator="joint")
    model = build_vaegan(config, seed=3).eval()
    path = save_checkpoint(
        tmp_path / "ali.safetensors",
        model,
        preprocessing=Preprocessing(image_size=64),
        recipe={"objective": "ali"},
    )
    loaded = load_checkpoint(path)
    assert loaded.header.objective == "ali" == read_checkpoint_header(path).objective
    assert loaded.config.discriminator == "joint"
    with safe_open(str(path), framework="pt") as handle:
        assert json.loads(handle.metadata()["vaegan"])["objective"] == "ali"
    x, z = torch.rand(2, 3, 64, 64) * 2 - 1, torch.randn(2, config.latent_dim)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model.discriminator(x, z), model.discriminator(x, z))


@pytest.mark.parametrize(
    ("discriminator", "objective", "problem"),
    [
        ("image", "ali", "objective 'ali' trains the joint discriminator"),
        ("joint", "vaegan", "objective 'vaegan' trains the image discriminator"),
        ("image", "diffusion", "unknown objective 'diffusion'"),
    ],
)
def test_the_objective_must_match_the_discriminator(tmp_path, discriminator, objective, problem):
    model = build_vaegan(get_preset("small32").replace(discriminator=discriminator), seed=0)
    target = tmp_path / "m.safetensors"
    with pytest.raises(ValueError, match=problem):
        save_checkpoint(
            target,
            model,
            preprocessing=Preprocessing(image_size=32),
            recipe={"objective": objective},
        )
    assert not target.exists()


def test_files_from_before_the_objective_field_read_it_from_the_recipe(saved, tmp_path):
    def old(h):
        del h["objective"]
        del h["config"]["discriminator"]
        del h["config"]["joint_dropout"]
        return h

    legacy = rewrite_checkpoint(saved[0], tmp_path / "old.safetensors", header=old)
    assert load_checkpoint(legacy).header.objective == "vaegan"

    def vae(h):
        del h["objective"]
        h["recipe"]["objective"] = "vae"
        return h

    assert (
        read_checkpoint_header(
            rewrite_checkpoint(saved[0], tmp_path / "v.safetensors", header=vae)
        ).objective
        == "vae"
    )


def test_a_header_whose_objective_contradicts_its_networks_is_refused(saved, tmp_path):
    path = rewrite_checkpoint(
        saved[0], tmp_path / "x.safetensors", header=lambda h: h | {"objective": "ali"}
    )
    _refused(path, "objective 'ali' trains the joint discriminator")


# --- the preset and the recipe's name ----------------------------------------------------------


def test_the_header_names_the_preset_the_networks_were_built_from(saved, tmp_path):
    assert load_checkpoint(saved[0]).header.preset == "small64"
    with safe_open(str(saved[0]), framework="pt") as handle:
        assert json.loads(handle.metadata()["vaegan"])["preset"] == "small64"
    # An ALI model on greyscale data is still built from its preset; another width is custom.
    built = {
        "ali": (get_preset("small32", channels=1).replace(discriminator="joint"), "small32"),
        "custom": (get_preset("small32").replace(encoder_fc=96), None),
    }
    for name, (config, preset) in built.items():
        path = save_checkpoint(
            tmp_path / f"{name}.safetensors",
            build_vaegan(config, seed=0),
            preprocessing=Preprocessing(image_size=32, channels=config.channels),
            recipe={"objective": name if name == "ali" else "vaegan"},
        )
        assert read_checkpoint_header(path).preset == preset, name
        assert json.loads(safe_open(str(path), framework="pt").metadata()["vaegan"])["preset"] == (
            preset
        )


def test_files_from_before_the_preset_field_find_it_from_their_config(saved, tmp_path):
    def old(header):
        del header["preset"]
        return header

    legacy = rewrite_checkpoint(saved[0], tmp_path / "old.safetensors", header=old)
    assert load_checkpoint(legacy).header.preset == "small64"
    assert read_checkpoint_header(legacy).preset == "small64"

    def old_and_custom(header):
        return old(config_change("encoder_fc", 96)(header))

    custom = rewrite_checkpoint(
        saved[0],
        tmp_path / "custom.safetensors",
        # The tensors of the wider encoder_fc: a custom network that loads.
        tensors=lambda _: _network_tensors(get_preset("small64").replace(encoder_fc=96)),
        header=lambda h: old_and_custom(h) | {"attributes": []},
    )
    assert load_checkpoint(custom).header.preset is None


def _network_tensors(config):
    return {k: v.contiguous() for k, v in build_vaegan(config, seed=0).state_dict().items()}


def test_a_preset_the_networks_are_not_is_refused(saved, tmp_path):
    wrong = rewrite_checkpoint(
        saved[0], tmp_path / "wrong.safetensors", header=lambda h: h | {"preset": "paper64"}
    )
    _refused(wrong, "the header names preset 'paper64' but the networks are not that preset's")
    number = rewrite_checkpoint(
        saved[0], tmp_path / "number.safetensors", header=lambda h: h | {"preset": 64}
    )
    _refused(number, "preset must be a string or null, got 64")
    # A name this release does not know (a later release's preset) is kept as written.
    later = rewrite_checkpoint(
        saved[0], tmp_path / "later.safetensors", header=lambda h: h | {"preset": "tiny64"}
    )
    assert load_checkpoint(later).header.preset == "tiny64"


def test_the_recipe_name_is_the_recorded_one_or_none(saved, tmp_path):
    assert load_checkpoint(saved[0]).header.recipe_name is None  # saved without a name
    named = rewrite_checkpoint(
        saved[0],
        tmp_path / "named.safetensors",
        header=lambda h: h | {"recipe": h["recipe"] | {"name": "authors + gamma=0.001"}},
    )
    assert load_checkpoint(named).header.recipe_name == "authors + gamma=0.001"
    odd = rewrite_checkpoint(
        saved[0],
        tmp_path / "odd.safetensors",
        header=lambda h: h | {"recipe": h["recipe"] | {"name": ["authors"]}},
    )
    assert load_checkpoint(odd).header.recipe_name is None


# --- hostile files: refused fast, before any network is built, with one message --------------


def _refused_quickly(path, message, monkeypatch):
    """Refused within a fraction of a second, before any tensor data is read."""

    def never(*args, **kwargs):
        raise AssertionError("the tensor data must not be read before the header is accepted")

    monkeypatch.setattr(checkpoint_module, "safetensors_load", never)
    started = time.monotonic()
    error = _refused(path, message)
    assert time.monotonic() - started < 0.5
    return error


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        # Valid configs whose networks the file's tensors do not hold: refused from the shapes
        # the file declares, without building the network (which for encoder_fc 8000 is 1 GiB).
        ("encoder_fc", 8000, r"wrong shape: encoder.fc.0.weight \(128, 2048\) \(expected"),
        ("encoder_channels", [8192, 8192, 8192], "wrong shape: encoder.features.0.conv.weight"),
        ("kernel_size", 15, "wrong shape: encoder.features.0.conv.weight"),
        ("latent_dim", 4096, "wrong shape: encoder.mu.weight"),
        # Beyond any sane network: refused from the config alone.
        ("encoder_fc", 200_000, "every layer width must be at most 8192, got 200000"),
        ("latent_dim", 1_000_000, "latent_dim must be at most 4096"),
        ("image_size", 2**20, "image_size must be at most 1024"),
        ("encoder_channels", [10**9] * 3, "every layer width must be at most 8192"),
        ("kernel_size", 10_001, "kernel_size must be at most 15"),
        ("latent_dim", True, "latent_dim must be a whole number, got True"),
        ("latent_dim", 1e6, "latent_dim must be a whole number, got 1000000.0"),
        ("encoder_channels", [64.5, 128, 256], "must be a list of whole numbers"),
        ("bn_momentum", "0.1", "bn_momentum must be a finite number"),
    ],
)
def test_a_config_the_tensors_do_not_match_is_refused_before_building_anything(
    saved, tmp_path, monkeypatch, key, value, message
):
    path = rewrite_checkpoint(
        saved[0], tmp_path / "c.safetensors", header=config_change(key, value)
    )
    _refused_quickly(path, message, monkeypatch)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.replace('"step": 1234', '"step": Infinity'), "has Infinity, which is not"),
        (lambda t: t.replace('"step": 1234', '"step": NaN'), "has NaN"),
        (lambda t: t.replace('"step": 1234', '"step": 1e999'), "too large for a float"),
        (lambda t: t.replace('"step": 1234', '"step": ' + "9" * 5000), "5,000-digit number"),
        (
            lambda t: t.replace('"fid": 12.5', '"deep": ' + "[" * 100_000 + "]" * 100_000),
            "the vaegan metadata is nested more than 32 levels deep",
        ),
        (lambda t: t.replace('"step": 1234', '"step": 12.5'), "step must be a whole number"),
        (lambda t: t.replace('"step": 1234', '"step": true'), "step must be a whole number"),
        (lambda t: t.replace('"step": 1234', '"step": -3'), "the training step is negative"),
        (lambda t: t.replace('"positives": 41', '"positives": "41"'), "positives must be a whole"),
        (lambda t: t.replace('"negatives": 59', '"negatives": -59'), "negative example counts"),
        (lambda t: t.replace('"name": "Eyeglasses"', '"name": "Smiling"'), "listed twice"),
        (lambda t: t.replace('"dataset": {', '"dataset": ["x", {'), "not valid JSON"),
        (lambda t: t.replace('"dataset": {"kind"', '"dataset": 5, "x": {"kind"'), "dataset must"),
        (
            lambda t: t.replace('"image_size": 64, "channels"', '"image_size": 64.0, "channels"'),
            "image_size must be",
        ),
        (lambda t: t.replace('"blur": true', '"blur": 1'), "blur must be true or false"),
    ],
)
def test_metadata_values_are_refused_with_the_file_and_the_reason(
    saved, tmp_path, monkeypatch, edit, message
):
    path = with_metadata(saved[0], tmp_path / "m.safetensors", edit)
    error = _refused_quickly(path, message, monkeypatch)
    assert "\n" not in str(error)
    with pytest.raises(CheckpointError, match=message):
        read_checkpoint_header(path)


def _nested(depth):
    value: list = []
    for _ in range(depth - 1):
        value = [value]
    return value


def _raw_safetensors(path, header, data=b""):
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)
    return path


@pytest.mark.parametrize(
    ("entries", "data", "message"),
    [
        (
            {"w": {"dtype": "F32", "shape": [1000, 1000], "data_offsets": [0, 8]}},
            bytes(8),
            r"'w' is declared as float32 \(1000, 1000\) \(4,000,000 bytes\) but given 8 bytes",
        ),
        (
            {"w": {"dtype": "F8_E4M3", "shape": [2], "data_offsets": [0, 2]}},
            bytes(2),
            "type safetensors does not define: 'F8_E4M3'",
        ),
        (
            {
                "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]},
            },
            bytes(12),
            "overlap or leave gaps",
        ),
        (
            {"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}},
            bytes(4),
            "malformed entry",
        ),
        ({"x": _nested(40)}, b"", "nested more than 32 levels"),
    ],
)
def test_tensor_entries_must_describe_the_bytes_they_occupy(tmp_path, entries, data, message):
    _refused(_raw_safetensors(tmp_path / "t.safetensors", entries, data), message)


def test_a_deeply_nested_safetensors_header_is_refused(tmp_path):
    path = tmp_path / "deep.safetensors"
    text = b'{"x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    path.write_bytes(struct.pack("<Q", len(text)) + text)
    _refused(path, "its safetensors header is nested more than 32 levels deep")


@pytest.mark.timeout(10)
def test_fifos_and_devices_are_refused_without_reading_them(tmp_path):
    fifo = tmp_path / "model.safetensors"
    os.mkfifo(fifo)
    _refused(fifo, r"not a regular file \(a FIFO\)")
    with pytest.raises(CheckpointError, match="a FIFO"):
        read_checkpoint_header(fifo)
    zero = tmp_path / "zero.safetensors"
    zero.symlink_to("/dev/zero")
    _refused(zero, r"not a regular file \(a character device\)")


# --- inconsistencies that used to load and then fail every request --------------------------


def test_preprocessing_that_disagrees_with_the_config_is_refused_at_load(saved, tmp_path):
    for key, value, message in [
        ("image_size", 32, "preprocessing produces 3x32px images but the model takes 3x64px"),
        ("channels", 1, "preprocessing produces 1x64px images but the model takes 3x64px"),
    ]:
        path = rewrite_checkpoint(
            saved[0],
            tmp_path / f"{key}.safetensors",
            header=preprocessing_change(key, value),
        )
        _refused(path, message)
        with pytest.raises(CheckpointError, match=message):
            read_checkpoint_header(path)


def test_a_negative_batch_norm_variance_is_refused_at_load(saved, tmp_path):
    path = rewrite_checkpoint(saved[0], tmp_path / "v.safetensors", tensors=negative_variance)
    _refused(path, f"negative batch-norm variances in {RUNNING_VAR}")


@pytest.mark.parametrize(
    ("name", "change", "message"),
    [
        # float16 bits relabelled as int16: the bytes fit, the numbers are garbage.
        (
            "encoder.mu.weight",
            lambda v: v.half().view(torch.int16),
            r"wrong type: encoder.mu.weight int16 \(expected float32 or float16 or bfloat16\)",
        ),
        (
            "encoder.features.0.bn.running_var",
            lambda v: v.half(),
            r"wrong type: encoder.features.0.bn.running_var float16 \(expected float32\)",
        ),
        (
            "encoder.features.0.bn.num_batches_tracked",
            lambda v: v.float(),
            r"num_batches_tracked float32 \(expected int64\)",
        ),
        ("attributes.Smiling", lambda v: v.half(), "attribute 'Smiling' is stored as float16"),
    ],
)
def test_tensors_must_have_the_types_the_format_allows_them(
    saved, tmp_path, monkeypatch, name, change, message
):
    def relabel(t):
        t[name] = change(t[name])
        return t

    path = rewrite_checkpoint(saved[0], tmp_path / "d.safetensors", tensors=relabel)
    _refused_quickly(path, message, monkeypatch)


def test_saving_applies_the_loaders_rules(saved, tmp_path):
    _, model, _ = saved
    target = tmp_path / "x.safetensors"
    model.encoder.features[0].bn.running_var[0] = -1.0
    with pytest.raises(ValueError, match="negative batch-norm variances in encoder.features.0"):
        save_checkpoint(target, model, preprocessing=Preprocessing(64))
    model.encoder.features[0].bn.running_var[0] = 1.0
    with pytest.raises(ValueError, match="nested more than 32 levels"):
        save_checkpoint(target, model, preprocessing=Preprocessing(64), dataset={"x": _nested(40)})
    with pytest.raises(ValueError, match="negative example counts"):
        save_checkpoint(
            target,
            model,
            preprocessing=Preprocessing(64),
            attributes={"Smiling": AttributeVector(torch.zeros(128), -1, 3)},
        )
    model.encoder.mu.weight.data[0, 0] = 1e6  # beyond float16
    with pytest.raises(ValueError, match="NaN or infinite values in encoder.mu.weight"):
        save_checkpoint(
            target, model, preprocessing=Preprocessing(64), parameter_dtype=torch.float16
        )
    assert not target.exists()


def test_the_default_edit_strength_falls_back_from_attribute_to_evaluation_to_one(saved):
    path, _, _ = saved
    checkpoint = load_checkpoint(path)
    smiling = checkpoint.attributes["Smiling"]
    checkpoint.attributes["Smiling"] = dataclasses.replace(smiling, default_strength=4.5)
    assert checkpoint.default_edit_strength("Smiling") == (4.5, "attribute")
    # Above the caller's ceiling the attribute's own is passed over, as a missing one is.
    checkpoint.header.evaluation = {"edit_strength": 3}
    assert checkpoint.default_edit_strength("Smiling", at_most=4) == (3.0, "evaluation")
    assert checkpoint.default_edit_strength("Eyeglasses") == (3.0, "evaluation")
    for unusable in (True, -2, 0, "3", None):
        checkpoint.header.evaluation = {"edit_strength": unusable}
        assert checkpoint.default_edit_strength("Eyeglasses") == (1.0, "none")
