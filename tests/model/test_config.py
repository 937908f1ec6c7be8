import json

import pytest

from model.config import (
    PRESETS,
    ConfigError,
    VAEGANConfig,
    get_preset,
    make_config,
    preset_of,
)


def test_paper64_is_the_authors_architecture():
    config = get_preset("paper64")
    assert config.image_size == 64
    assert config.channels == 3
    assert config.latent_dim == 128
    assert config.kernel_size == 5
    assert config.encoder_channels == (64, 128, 256)
    assert config.encoder_fc == 1024
    assert config.decoder_base_channels == 256
    assert config.decoder_channels == (256, 128, 32)
    assert config.discriminator_first_channels == 32
    assert config.discriminator_channels == (128, 256, 256)
    assert config.discriminator_fc == 512
    assert config.bn_momentum == 0.1
    assert config.conv_bn_eps == 1e-6
    assert config.init == "authors"
    assert config.base_size == 8
    assert config.similarity_shape == (256, 8, 8)


def test_paper32_is_the_authors_32x32_architecture():
    config = get_preset("paper32")
    assert config.base_size == 4
    assert config.decoder_channels == (192, 128, 32)
    assert config.discriminator_channels == (128, 192, 256)


@pytest.mark.parametrize(
    ("size", "stages", "base"), [(32, 3, 4), (64, 3, 8), (128, 4, 8), (256, 5, 8)]
)
def test_number_of_stride2_stages_follows_the_size(size, stages, base):
    for width in ("paper", "medium", "small"):
        config = make_config(size, width=width)
        assert config.stages == stages
        assert config.base_size == base
        assert len(config.decoder_channels) == len(config.discriminator_channels) == stages


def test_small_presets_keep_the_topology_with_narrower_layers():
    paper, small = get_preset("paper64"), get_preset("small64")
    assert small.stages == paper.stages
    assert small.latent_dim == paper.latent_dim
    assert all(s < p for s, p in zip(small.encoder_channels, paper.encoder_channels, strict=True))
    assert small.encoder_fc < paper.encoder_fc


def test_every_preset_exists_for_each_size():
    assert set(PRESETS) == {
        f"{width}{size}" for width in ("paper", "medium", "small") for size in (32, 64, 128)
    }


def test_medium_presets_sit_between_small_and_paper():
    small, medium, paper = (get_preset(f"{w}64") for w in ("small", "medium", "paper"))
    assert medium.encoder_channels == (16, 32, 64)
    assert medium.decoder_channels == (64, 32, 8)
    assert small.encoder_fc < medium.encoder_fc < paper.encoder_fc


def test_greyscale_variant_of_a_preset():
    config = get_preset("paper64", channels=1)
    assert config.channels == 1
    assert config.encoder_channels == get_preset("paper64").encoder_channels


def test_unknown_preset_names_the_choices():
    with pytest.raises(ConfigError, match=r"unknown preset 'paper65'.*paper64.*small64"):
        get_preset("paper65")


def test_dict_round_trip_through_json():
    for config in PRESETS.values():
        restored = VAEGANConfig.from_dict(json.loads(json.dumps(config.to_dict())))
        assert restored == config


def test_from_dict_refuses_unknown_keys():
    data = get_preset("small64").to_dict() | {"dropout": 0.5}
    with pytest.raises(ConfigError, match="unknown model config keys: dropout"):
        VAEGANConfig.from_dict(data)


def test_from_dict_refuses_non_objects():
    with pytest.raises(ConfigError, match="JSON object"):
        VAEGANConfig.from_dict([1, 2])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"channels": 2}, "channels must be 1 or 3"),
        ({"image_size": 60}, "must be divisible by 2\\*\\*stages"),
        ({"image_size": 8}, "bottleneck of at least 2x2"),
        ({"decoder_channels": (256, 128)}, "same length"),
        ({"kernel_size": 4}, "kernel_size must be odd"),
        ({"latent_dim": 0}, "latent_dim must be positive"),
        ({"encoder_fc": 0}, "every layer width must be positive"),
        ({"bn_momentum": 0.0}, "bn_momentum"),
        ({"init": "xavier"}, "init must be"),
        ({"init_gain": float("nan")}, "init_gain"),
    ],
)
def test_invalid_configs_are_refused_with_the_reason(changes, message):
    with pytest.raises(ConfigError, match=message):
        get_preset("paper64").replace(**changes)


def test_make_config_refuses_sizes_that_are_not_powers_of_two():
    with pytest.raises(ConfigError, match="power of two"):
        make_config(96)


def test_preset_of_names_the_preset_a_config_was_built_from():
    for name, config in PRESETS.items():
        assert preset_of(config) == name
    # What `vaegan-train fit` varies on top of a preset leaves it that preset.
    assert preset_of(get_preset("small64", channels=1)) == "small64"
    assert preset_of(get_preset("medium32").replace(discriminator="joint")) == "medium32"
    assert preset_of(get_preset("paper64").replace(init="pytorch")) == "paper64"
    # Any other change makes the network custom.
    assert preset_of(get_preset("small64").replace(latent_dim=64)) is None
    assert preset_of(make_config(256, width="small")) is None
