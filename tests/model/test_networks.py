import math

import pytest
import torch
from torch import nn

from model.config import PRESETS, ConfigError, get_preset, make_config
from model.networks import (
    VAEGAN,
    ConvBlock,
    Decoder,
    Discriminator,
    Encoder,
    EncoderOutput,
    JointDiscriminator,
    build_vaegan,
    parameter_count,
)


def test_paper64_parameter_counts_per_network():
    model = VAEGAN(get_preset("paper64"))
    # Worked out by hand from docs/design.md section 2 (5x5 kernels, no bias before BN):
    # encoder: convs 4,800 + 204,800 + 819,200, BN 896, FC 16,777,216 + BN 2,048,
    #          two heads 2 x 131,200.
    assert parameter_count(model.encoder) == 18_071_360
    # decoder: FC 2,097,152 + BN 32,768, convTs 1,638,400 + 819,200 + 102,400, BN 832,
    #          output conv 2,400 + 3.
    assert parameter_count(model.decoder) == 4_693_155
    # discriminator: stem 2,400 + 32, convs 102,400 + 819,200 + 1,638,400, BN 1,280,
    #                FC 8,388,608 + BN 1,024, classifier 513.
    assert parameter_count(model.discriminator) == 10_953_857


@pytest.mark.parametrize("name", sorted(PRESETS))
@pytest.mark.parametrize("channels", [1, 3])
def test_shapes_for_every_preset(name, channels):
    config = get_preset(name, channels=channels)
    model = build_vaegan(config, seed=0)
    size = config.image_size
    x = torch.rand(2, channels, size, size) * 2 - 1
    encoded = model.encoder(x)
    assert encoded.mu.shape == encoded.logvar.shape == (2, config.latent_dim)
    decoded = model.decoder(encoded.sample())
    assert decoded.shape == x.shape
    assert decoded.abs().max() <= 1.0
    judged = model.discriminator(x)
    assert judged.logit.shape == (2,)
    assert judged.features.shape == (2, *config.similarity_shape)


def test_eval_mode_handles_a_single_image():
    model = build_vaegan(get_preset("small64"), seed=0).eval()
    with torch.no_grad():
        assert model.reconstruct(torch.zeros(1, 3, 64, 64)).shape == (1, 3, 64, 64)


def test_no_bias_before_batch_norm_and_the_authors_bn_settings():
    config = get_preset("paper64")
    model = VAEGAN(config)
    blocks = [m for m in model.modules() if isinstance(m, ConvBlock)]
    assert len(blocks) == 9  # three stride-2 stages in each network
    for block in blocks:
        assert block.conv.bias is None
        assert block.bn.eps == 1e-6
        assert block.bn.momentum == 0.1
    for fc_block in (model.encoder.fc, model.decoder.fc, model.discriminator.fc):
        linear, bn = fc_block[0], fc_block[1]
        assert isinstance(linear, nn.Linear) and linear.bias is None
        assert isinstance(bn, nn.BatchNorm1d) and bn.momentum == 0.1
    # Layers not followed by BN keep their bias.
    assert model.discriminator.stem.bias is not None
    assert model.decoder.to_image.bias is not None
    assert model.encoder.mu.bias is not None and model.encoder.logvar.bias is not None


def test_dis_l_is_the_fourth_conv_output_before_bn_and_relu():
    model = build_vaegan(get_preset("paper64"), seed=0)
    convs = [m for m in model.discriminator.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 4
    captured = {}
    convs[3].register_forward_hook(lambda module, inputs, output: captured.update(out=output))
    out = model.discriminator(torch.rand(4, 3, 64, 64) * 2 - 1)
    assert torch.equal(out.features, captured["out"])
    assert out.features.shape == (4, 256, 8, 8)
    assert (out.features < 0).any(), "pre-ReLU features must keep negative values"


def test_similarity_features_match_the_full_forward():
    model = build_vaegan(get_preset("small64"), seed=0).eval()
    x = torch.rand(3, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        assert torch.equal(
            model.discriminator.similarity_features(x), model.discriminator(x).features
        )


def test_authors_initialisation():
    model = build_vaegan(get_preset("paper64"), seed=0)
    for layer in model.modules():
        if isinstance(layer, nn.Linear | nn.Conv2d | nn.ConvTranspose2d):
            fan = math.prod(layer.weight.shape[1:])
            bound = 1.0 / math.sqrt(3.0 * fan)
            assert layer.weight.abs().max() <= bound
            # U(-b, b) has standard deviation b / sqrt(3).
            assert layer.weight.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.1)
            if layer.bias is not None:
                assert torch.count_nonzero(layer.bias) == 0
        elif isinstance(layer, nn.BatchNorm1d | nn.BatchNorm2d):
            assert layer.weight.min() >= 0.0 and layer.weight.max() <= 1.0
            assert torch.count_nonzero(layer.bias) == 0


def test_pytorch_initialisation_is_available():
    config = get_preset("small64")
    authors = build_vaegan(config, seed=0)
    pytorch = build_vaegan(config.replace(init="pytorch"), seed=0)
    assert not torch.equal(authors.encoder.mu.bias, pytorch.encoder.mu.bias)
    assert torch.all(pytorch.encoder.fc[1].weight == 1.0)


def test_seeded_builds_are_reproducible_and_leave_the_global_rng_alone():
    config = get_preset("small32")
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    first = build_vaegan(config, seed=7).state_dict()
    assert torch.equal(torch.rand(1), expected_next)
    second = build_vaegan(config, seed=7).state_dict()
    other = build_vaegan(config, seed=8).state_dict()
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first)


def _grads(module: nn.Module) -> list[torch.Tensor | None]:
    return [p.grad for p in module.parameters()]


def test_gradients_reach_exactly_the_networks_in_each_path():
    model = build_vaegan(get_preset("small32"), seed=0)
    x = torch.rand(4, 3, 32, 32) * 2 - 1

    # L_prior + L_llike: through the decoder and Dis_l back into the encoder.
    encoded = model.encoder(x)
    kl = -0.5 * (1 + encoded.logvar - encoded.mu**2 - encoded.logvar.exp()).sum()
    reconstruction = model.decoder(encoded.sample())
    features = model.discriminator(torch.cat([x, reconstruction])).features
    real, fake = features.chunk(2)
    (kl + 0.5 * ((fake - real.detach()) ** 2).sum()).backward()
    assert all(g is not None and g.abs().sum() > 0 for g in _grads(model.encoder))
    assert all(g is not None for g in _grads(model.decoder))

    # A GAN loss on prior samples: decoder and discriminator, never the encoder.
    model.zero_grad(set_to_none=True)
    z = torch.randn(4, get_preset("small32").latent_dim)
    model.discriminator(model.decoder(z)).logit.sum().backward()
    assert all(g is None for g in _grads(model.encoder))
    assert all(g is not None for g in _grads(model.decoder))
    assert all(g is not None for g in _grads(model.discriminator))


def test_reparameterised_sample_passes_gradients_to_mu_and_logvar():
    mu = torch.zeros(3, 5, requires_grad=True)
    logvar = torch.zeros(3, 5, requires_grad=True)
    EncoderOutput(mu, logvar).sample(torch.Generator().manual_seed(0)).pow(2).sum().backward()
    assert mu.grad is not None and mu.grad.abs().sum() > 0
    assert logvar.grad is not None and logvar.grad.abs().sum() > 0


def test_a_given_eps_replaces_the_draw():
    mu, logvar = torch.randn(3, 5), torch.randn(3, 5)
    eps = torch.randn(3, 5)
    generator = torch.Generator().manual_seed(0)
    z = EncoderOutput(mu, logvar).sample(generator, eps=eps)
    assert torch.equal(z, mu + torch.exp(0.5 * logvar) * eps)
    assert torch.equal(generator.get_state(), torch.Generator().manual_seed(0).get_state())


def test_reconstruct_decodes_the_posterior_mean():
    model = build_vaegan(get_preset("small64"), seed=0).eval()
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        assert torch.equal(model.reconstruct(x), model.decoder(model.encoder(x).mu))
        assert torch.equal(model(x), model.reconstruct(x))


def test_networks_can_be_built_on_their_own():
    config = make_config(128, channels=1, width="small")
    assert Encoder(config)(torch.zeros(2, 1, 128, 128)).mu.shape == (2, 128)
    assert Decoder(config)(torch.zeros(2, 128)).shape == (2, 1, 128, 128)
    features = Discriminator(config)(torch.zeros(2, 1, 128, 128)).features
    assert features.shape == (2, *config.similarity_shape) == (2, 32, 8, 8)


# --- ALI's joint discriminator -----------------------------------------------------------------


@pytest.mark.parametrize("size", [32, 64, 128])
@pytest.mark.parametrize("width", ["small", "paper"])
def test_joint_discriminator_shapes_for_every_image_size(size, width):
    config = get_preset(f"{width}{size}").replace(discriminator="joint")
    model = build_vaegan(config, seed=0)
    assert isinstance(model.discriminator, JointDiscriminator)
    x = torch.rand(3, 3, size, size) * 2 - 1
    z = torch.randn(3, config.latent_dim)
    judged = model.discriminator(x, z)
    assert judged.logit.shape == (3,)
    assert judged.features.shape == (3, 2 * config.discriminator_fc)
    # The image branch reaches the bottleneck size the flattening layer expects.
    image_features = model.discriminator.image_branch(x)
    assert image_features.shape == (
        3,
        config.discriminator_channels[-1],
        config.base_size,
        config.base_size,
    )
    # The encoder and decoder are exactly the VAE-GAN's.
    vaegan = build_vaegan(get_preset(f"{width}{size}"), seed=0)
    assert parameter_count(model.encoder) == parameter_count(vaegan.encoder)
    assert parameter_count(model.decoder) == parameter_count(vaegan.decoder)


def test_joint_discriminator_depends_on_both_the_image_and_the_latent():
    config = get_preset("small64").replace(discriminator="joint")
    model = build_vaegan(config, seed=0).eval()  # eval: no dropout, running BN statistics
    x = torch.rand(4, 3, 64, 64) * 2 - 1
    z = torch.randn(4, config.latent_dim)
    with torch.no_grad():
        base = model.discriminator(x, z).logit
        assert not torch.allclose(base, model.discriminator(x, torch.randn_like(z)).logit)
        assert not torch.allclose(base, model.discriminator(x.flip(-1), z).logit)
        # Pairs are judged independently in eval mode: one pair alone scores the same.
        torch.testing.assert_close(model.discriminator(x[:1], z[:1]).logit, base[:1])


def test_joint_discriminator_has_dropout_after_every_hidden_layer():
    config = get_preset("small64").replace(discriminator="joint", joint_dropout=0.3)
    model = build_vaegan(config, seed=0).train()
    dropouts = [m for m in model.discriminator.modules() if isinstance(m, nn.Dropout)]
    # stem + one per strided stage + image FC + two latent FCs + the joint FC
    assert len(dropouts) == 1 + config.stages + 1 + 2 + 1
    assert all(m.p == 0.3 for m in dropouts)
    x, z = torch.rand(4, 3, 64, 64) * 2 - 1, torch.randn(4, config.latent_dim)
    # Training mode draws fresh dropout masks: two passes differ.
    assert not torch.equal(model.discriminator(x, z).logit, model.discriminator(x, z).logit)


def test_only_image_discriminators_have_the_learned_similarity():
    image = build_vaegan(get_preset("small32"), seed=0).eval()
    joint = build_vaegan(get_preset("small32").replace(discriminator="joint"), seed=0).eval()
    x = torch.rand(2, 3, 32, 32)
    assert image.has_similarity_metric and not joint.has_similarity_metric
    assert image.similarity_features(x).shape == (2, *image.config.similarity_shape)
    with pytest.raises(TypeError, match="ALI's joint discriminator"):
        joint.similarity_features(x)


def test_discriminator_kind_and_dropout_are_validated():
    with pytest.raises(ConfigError, match="discriminator must be 'image' or 'joint'"):
        get_preset("small32").replace(discriminator="pairs")
    with pytest.raises(ConfigError, match="joint_dropout"):
        get_preset("small32").replace(joint_dropout=1.0)
