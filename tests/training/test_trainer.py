import copy
import errno
import itertools
import json
import math

import pytest
import torch
from PIL import Image

from model.checkpoint import load_checkpoint
from model.config import get_preset
from model.networks import build_vaegan
from tests.training.naive_trainer import naive_gradients
from training import losses
from training.cli import main
from training.distributed import DistributedContext
from training.recipe import RECIPES, Recipe, describe_recipe
from training.run_dir import load_training_state, read_metrics
from training.step import Networks, Noise, compute_gradients, forward_pass


def _setup(seed=0, batch=6, size=32):
    config = get_preset(f"small{size}")
    model = build_vaegan(config, seed=seed).train()
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand(batch, 3, size, size, generator=generator) * 2 - 1
    noise = Noise(
        torch.randn(batch, config.latent_dim, generator=generator),
        torch.randn(batch, config.latent_dim, generator=generator),
    )
    return model, images, noise


def _one_forward_grads(model, images, recipe, noise):
    model.zero_grad(set_to_none=True)
    terms = compute_gradients(Networks(model, DistributedContext()), images, recipe, noise)
    grads = {
        name: [
            p.grad.clone() if p.grad is not None else None
            for p in getattr(model, name).parameters()
        ]
        for name in ("encoder", "decoder", "discriminator")
    }
    return grads, terms


def test_one_forward_gradients_equal_separate_per_network_losses():
    model, images, noise = _setup()
    reference = copy.deepcopy(model)
    recipe = Recipe()
    ours, _ = _one_forward_grads(model, images, recipe, noise)
    naive = naive_gradients(reference, images, recipe, noise)
    for name in ("encoder", "decoder", "discriminator"):
        assert len(ours[name]) == len(naive[name])
        for mine, theirs in zip(ours[name], naive[name], strict=True):
            assert mine is not None
            # Same maths, different summation order: agree to float32 round-off of each tensor.
            scale = float(theirs.abs().max())
            torch.testing.assert_close(mine, theirs, rtol=1e-4, atol=1e-5 * scale)


def test_the_step_never_raises_the_in_place_autograd_error():
    """Public ports crash stepping one optimiser between backward passes; ours steps after."""
    model, images, noise = _setup()
    optimizers = [
        torch.optim.RMSprop(getattr(model, n).parameters(), lr=1e-3)
        for n in ("encoder", "decoder", "discriminator")
    ]
    for _ in range(3):
        _one_forward_grads(model, images, Recipe(), noise)
        for optimizer in optimizers:
            optimizer.step()


def test_the_gan_loss_never_reaches_the_encoder():
    model, images, noise = _setup()
    base, _ = _one_forward_grads(copy.deepcopy(model), images, Recipe(), noise)
    for variant in (
        Recipe(real_weight=0.2),
        Recipe(discriminate_reconstructions=True),
        Recipe(decoder_gan_loss="non-saturating"),
    ):
        other, _ = _one_forward_grads(copy.deepcopy(model), images, variant, noise)
        for a, b in zip(base["encoder"], other["encoder"], strict=True):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=0)


def test_l_llike_never_updates_the_discriminator():
    model, images, noise = _setup()
    base, _ = _one_forward_grads(copy.deepcopy(model), images, Recipe(gamma=1e-6), noise)
    other, _ = _one_forward_grads(copy.deepcopy(model), images, Recipe(gamma=0.9), noise)
    for a, b in zip(base["discriminator"], other["discriminator"], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=0)
    # gamma does change the decoder's gradient.
    assert not torch.allclose(base["decoder"][0], other["decoder"][0])


def test_similarity_pass_leaves_d_running_statistics_alone():
    model, images, noise = _setup()
    before = {k: v.clone() for k, v in model.discriminator.state_dict().items() if "running" in k}
    _one_forward_grads(model, images, Recipe(objective="vae"), noise)  # no GAN pass at all
    after = model.discriminator.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_loss_terms_by_name():
    model, images, noise = _setup()
    _, terms = _one_forward_grads(model, images, Recipe(), noise)
    assert {
        "L_prior",
        "L_llike",
        "L_gan",
        "L_dec",
        "D_x",
        "D_G_z",
        "real_cost",
        "fake_cost",
    } <= set(terms)
    expected_kl = losses.prior_loss(*model.encoder(images)).mean()
    torch.testing.assert_close(terms["L_prior"], expected_kl.detach(), rtol=1e-5, atol=1e-6)
    assert 0 < float(terms["D_x"]) < 1


@pytest.mark.parametrize(
    ("real", "fake", "expected"),
    [
        (0.7, 0.7, (True, True)),
        (0.2, 0.7, (False, True)),  # D wins on real images: pause D
        (0.7, 1.2, (True, False)),  # the decoder loses badly: pause the decoder
        (0.2, 1.2, (True, True)),  # both would pause: train both
        (float("nan"), 0.7, (True, True)),
    ],
)
def test_equilibrium_rule(real, fake, expected):
    assert losses.equilibrium_updates(real, fake, 0.68, 0.35) == expected
    assert losses.equilibrium_updates(real, fake, 0.68, None) == (True, True)


def test_authors_learning_rate_schedule():
    recipe = Recipe()
    total = 62_500
    assert recipe.learning_rate(0, total) == recipe.lr
    assert recipe.learning_rate(249, total) == recipe.lr  # stepped per 250-iteration epoch
    assert recipe.learning_rate(250, total) < recipe.lr
    rates = [recipe.learning_rate(step, total) for step in range(0, total + 1, 250)]
    assert all(a >= b for a, b in itertools.pairwise(rates))
    assert rates[-1] == pytest.approx(recipe.lr_final)
    # DeepPy's GammaAnnealer: lr - (epoch / epochs) ** 0.75 * (lr - lr_final).
    assert recipe.learning_rate(125 * 250, total) == pytest.approx(
        recipe.lr - 0.5**0.75 * (recipe.lr - recipe.lr_final)
    )
    assert Recipe(lr_schedule="constant").learning_rate(60_000, total) == recipe.lr


def test_recipe_validation():
    with pytest.raises(ValueError, match="gamma must be in"):
        Recipe(gamma=2.0)
    with pytest.raises(ValueError, match="batch_size must be at least 2"):
        Recipe(batch_size=1)
    assert Recipe.from_dict(Recipe(objective="vae").to_dict()) == Recipe(objective="vae")


# --- the fit command end to end ----------------------------------------------------------------


def _fit(data, out, *extra):
    return main(
        [
            "fit",
            "--data",
            str(data),
            "--out",
            str(out),
            "--preset",
            "small32",
            "--batch-size",
            "8",
            "--quiet",
            *extra,
        ]
    )


def test_fit_writes_everything_a_user_looks_at(synthetic_celeba, tmp_path):
    out = tmp_path / "run"
    assert (
        _fit(
            synthetic_celeba,
            out,
            "--steps",
            "8",
            "--checkpoint-every",
            "3",
            "--keep-checkpoints",
            "2",
            "--log-every",
            "2",
        )
        == 0
    )
    checkpoint = load_checkpoint(out / "model.safetensors")
    assert checkpoint.header.step == 8
    assert checkpoint.header.recipe["objective"] == "vaegan"
    assert checkpoint.header.recipe["gamma"] == 1e-6
    assert checkpoint.header.dataset["kind"] == "celeba"
    # How it was made: the command line and the synthetic data's generator arguments.
    assert checkpoint.header.recipe["command"].startswith(
        f"vaegan-train fit --data {synthetic_celeba} --out {out} --preset small32"
    )
    assert checkpoint.header.dataset["synthetic"] == {
        "generator": "vaegan synthetic faces",
        "count": 60,
        "seed": 11,
    }
    assert checkpoint.attributes, "labelled data gets attribute vectors at the end"
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [
        "step-0000006.safetensors",
        "step-0000008.safetensors",
    ]
    records = read_metrics(out / "metrics.jsonl")
    assert [r["step"] for r in records] == [2, 4, 6, 8]
    for name in (
        "L_prior",
        "L_llike",
        "L_gan",
        "D_x",
        "D_G_z",
        "images_per_second",
        "skip_rate_discriminator",
        "skip_rate_decoder",
        "lr",
    ):
        assert all(math.isfinite(r[name]) for r in records), name
    samples = Image.open(out / "samples" / "samples-0000008.png")
    assert samples.size == (8 * 34 + 2, 8 * 34 + 2)
    assert Image.open(out / "samples" / "reconstructions-0000003.png").format == "PNG"
    # Five panels: losses, decoder gradients, D's verdicts, skip rates, throughput.
    assert Image.open(out / "loss_curves.png").size == (800, 5 * 260)


def test_vae_objective_never_touches_the_discriminator(synthetic_celeba, tmp_path):
    assert _fit(synthetic_celeba, tmp_path / "vae", "--objective", "vae", "--steps", "3") == 0
    trained = load_checkpoint(tmp_path / "vae" / "model.safetensors").model
    initial = build_vaegan(get_preset("small32"), seed=0)
    assert all(
        torch.equal(a, b)
        for a, b in zip(
            trained.discriminator.state_dict().values(),
            initial.discriminator.state_dict().values(),
            strict=True,
        )
    )
    assert not torch.equal(trained.encoder.mu.weight, initial.encoder.mu.weight)
    # Its loss curves: losses, decoder gradient and throughput, 2.6 inches each at 100 dpi; no
    # discriminator panel and no skip rates, which a run without D never has.
    assert Image.open(tmp_path / "vae" / "loss_curves.png").size[1] == 3 * 260


def test_gan_objective_never_touches_the_encoder(synthetic_celeba, tmp_path):
    assert _fit(synthetic_celeba, tmp_path / "gan", "--objective", "gan", "--steps", "3") == 0
    trained = load_checkpoint(tmp_path / "gan" / "model.safetensors").model
    initial = build_vaegan(get_preset("small32"), seed=0)
    assert torch.equal(trained.encoder.mu.weight, initial.encoder.mu.weight)
    assert not torch.equal(trained.decoder.to_image.weight, initial.decoder.to_image.weight)


def test_image_folders_train_without_attributes(tmp_path, synthetic_celeba):
    folder = tmp_path / "faces"
    folder.mkdir()
    for path in sorted((synthetic_celeba / "img_align_celeba").glob("*.jpg"))[:20]:
        (folder / path.name).write_bytes(path.read_bytes())
    assert (
        _fit(folder, tmp_path / "run", "--steps", "2", "--epochs" if False else "--log-every", "1")
        == 0
    )
    checkpoint = load_checkpoint(tmp_path / "run" / "model.safetensors")
    assert checkpoint.attributes == {}
    assert checkpoint.header.dataset["kind"] == "image-folder"


def test_epochs_count_passes_over_the_split(synthetic_celeba, tmp_path):
    # 48 training images at batch 8: 6 steps per epoch.
    assert _fit(synthetic_celeba, tmp_path / "run", "--epochs", "1.5") == 0
    assert load_checkpoint(tmp_path / "run" / "model.safetensors").header.step == 9


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--resume"], "nothing to resume"),
        (["--image-size", "64"], "--image-size 64 does not match preset small32"),
        (["--batch-size", "1000"], "fewer than one batch of 1000"),
        (["--steps", "0"], "--steps must be at least 1"),
        (["--gamma", "3"], "gamma must be in"),
        (["--device", "cuda"] if not torch.cuda.is_available() else ["--device", "tpu"], "device"),
    ],
)
def test_bad_input_gets_a_message_and_exit_code_2(
    synthetic_celeba, tmp_path, capsys, args, message
):
    assert _fit(synthetic_celeba, tmp_path / "run", "--steps", "2", *args) == 2
    error = capsys.readouterr().err
    assert "vaegan-train fit: error:" in error and message in error
    assert "Traceback" not in error


def test_missing_and_empty_data_folders(tmp_path, capsys):
    assert _fit(tmp_path / "missing", tmp_path / "run", "--steps", "1") == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert _fit(tmp_path / "empty", tmp_path / "run", "--steps", "1") == 2
    assert "no images found" in capsys.readouterr().err


def test_unknown_preset_is_a_usage_error(synthetic_celeba, tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["fit", "--data", str(synthetic_celeba), "--out", str(tmp_path), "--preset", "huge64"])
    assert info.value.code == 2
    assert "invalid choice: 'huge64'" in capsys.readouterr().err


def test_an_existing_run_needs_resume_and_the_same_preset(synthetic_celeba, tmp_path, capsys):
    out = tmp_path / "run"
    assert _fit(synthetic_celeba, out, "--steps", "2") == 0
    capsys.readouterr()
    assert _fit(synthetic_celeba, out, "--steps", "2") == 2
    assert "pass --resume" in capsys.readouterr().err
    assert (
        main(
            [
                "fit",
                "--data",
                str(synthetic_celeba),
                "--out",
                str(out),
                "--preset",
                "small64",
                "--resume",
                "--quiet",
            ]
        )
        == 2
    )
    assert "different network" in capsys.readouterr().err


def test_non_finite_loss_stops_naming_step_and_term(
    synthetic_celeba, tmp_path, capsys, monkeypatch
):
    real_prior = losses.prior_loss
    calls = {"n": 0}

    def poisoned(mu, logvar):
        calls["n"] += 1
        value = real_prior(mu, logvar)
        return value * float("nan") if calls["n"] > 4 else value

    monkeypatch.setattr(losses, "prior_loss", poisoned)
    out = tmp_path / "run"
    assert _fit(synthetic_celeba, out, "--steps", "10", "--checkpoint-every", "2") == 1
    error = capsys.readouterr().err
    assert "step 4: L_prior is nan" in error
    assert load_checkpoint(out / "checkpoints" / "step-0000004.safetensors").header.step == 4
    _, header = load_training_state(out / "state.safetensors")
    assert header["step"] == 4


def test_a_full_disk_while_saving_keeps_the_previous_checkpoint(
    synthetic_celeba, tmp_path, capsys, monkeypatch
):
    from training import trainer as trainer_module

    real_save = trainer_module.save_training_state
    saves = {"n": 0}

    def disk_fills_up(path, tensors, header):
        saves["n"] += 1
        if saves["n"] == 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real_save(path, tensors, header)

    monkeypatch.setattr(trainer_module, "save_training_state", disk_fills_up)
    out = tmp_path / "run"
    assert _fit(synthetic_celeba, out, "--steps", "6", "--checkpoint-every", "2") == 2
    assert "No space left on device" in capsys.readouterr().err
    _, header = load_training_state(out / "state.safetensors")
    assert header["step"] == 2
    assert load_checkpoint(out / "checkpoints" / "step-0000002.safetensors").header.step == 2
    assert not list(out.glob(".*.tmp"))


def test_metrics_lines_are_json(synthetic_celeba, tmp_path):
    out = tmp_path / "run"
    assert _fit(synthetic_celeba, out, "--steps", "2", "--log-every", "1") == 0
    for line in (out / "metrics.jsonl").read_text().splitlines():
        assert json.loads(line)["step"] in (1, 2)


def test_resume_if_present_starts_then_continues(synthetic_celeba, tmp_path):
    out = tmp_path / "run"
    assert _fit(synthetic_celeba, out, "--steps", "2", "--resume-if-present") == 0
    assert _fit(synthetic_celeba, out, "--steps", "4", "--resume-if-present") == 0
    assert load_checkpoint(out / "model.safetensors").header.step == 4
    assert [r["step"] for r in read_metrics(out / "metrics.jsonl")] == [2, 4]


def test_resume_if_present_on_a_finished_run_changes_nothing(synthetic_celeba, tmp_path, capsys):
    out = tmp_path / "run"
    assert _fit(synthetic_celeba, out, "--steps", "2", "--resume-if-present") == 0
    final = out / "model.safetensors"
    before = (final.read_bytes(), final.stat().st_mtime_ns)
    capsys.readouterr()
    assert _fit(synthetic_celeba, out, "--steps", "2", "--resume-if-present") == 0
    assert "already finished 2 steps" in capsys.readouterr().out
    assert (final.read_bytes(), final.stat().st_mtime_ns) == before


# --- ALI ---------------------------------------------------------------------------------------


def _ali_setup(seed=0, batch=6):
    config = get_preset("small32").replace(discriminator="joint")
    model = build_vaegan(config, seed=seed).train()
    _, images, noise = _setup(seed=seed, batch=batch)
    return model, images, noise


def _ali_reference(model, images, noise, recipe, seed):
    """ALI's gradients spelled out loss by loss, each network from its own backward pass."""
    torch.manual_seed(seed)
    encoded = model.encoder(images)
    z_inferred = encoded.mu + torch.exp(0.5 * encoded.logvar) * noise.eps
    generated = model.decoder(noise.z_prior)
    logits = model.discriminator(
        torch.cat([images, generated]), torch.cat([z_inferred, noise.z_prior])
    ).logit
    d_real, d_fake = torch.sigmoid(logits[:6]), torch.sigmoid(logits[6:])
    eps = recipe.gan_eps
    discriminator_loss = -(0.5 * torch.log(d_real + eps) + 0.5 * torch.log(1 - d_fake + eps)).mean()
    # The non-saturating game: the encoder wants its pairs called fake, the decoder its real.
    generator_loss = -(torch.log(1 - d_real + eps) + torch.log(d_fake + eps)).mean()
    grads = {}
    for name, loss in (
        ("encoder", generator_loss),
        ("decoder", generator_loss),
        ("discriminator", discriminator_loss),
    ):
        params = list(getattr(model, name).parameters())
        grads[name] = torch.autograd.grad(loss, params, retain_graph=True)
    return grads


def test_ali_gradients_match_the_losses_written_out():
    model, images, noise = _ali_setup()
    reference_model = copy.deepcopy(model)
    recipe = Recipe(objective="ali", decoder_gan_loss="non-saturating")
    torch.manual_seed(5)  # the same dropout masks in both
    ours, terms = _one_forward_grads(model, images, recipe, noise)
    reference = _ali_reference(reference_model, images, noise, recipe, seed=5)
    for name in ("encoder", "decoder", "discriminator"):
        for mine, theirs in zip(ours[name], reference[name], strict=True):
            assert mine is not None
            scale = float(theirs.abs().max())
            torch.testing.assert_close(mine, theirs, rtol=1e-4, atol=1e-5 * scale + 1e-12)
    assert {"L_gan", "L_gen", "real_cost", "fake_cost", "D_x", "D_G_z"} == set(terms)
    assert 0 < float(terms["D_x"]) < 1 and 0 < float(terms["D_G_z"]) < 1


@pytest.mark.parametrize(
    "recipe",
    [
        Recipe(),
        Recipe(discriminate_reconstructions=True),
        Recipe(objective="ali", decoder_gan_loss="non-saturating"),
    ],
    ids=["vaegan", "discriminate-reconstructions", "ali"],
)
def test_a_paused_discriminator_gets_no_gradient_and_the_others_are_unchanged(recipe):
    """The equilibrium rule pauses D on most steps: its backward pass is skipped then, and the
    encoder's and decoder's gradients are exactly those of the full step."""
    model, images, noise = _ali_setup() if recipe.objective == "ali" else _setup()
    paused = copy.deepcopy(model)
    torch.manual_seed(3)  # ALI's dropout masks, the same in both
    full, full_terms = _one_forward_grads(model, images, recipe, noise)
    torch.manual_seed(3)
    started = forward_pass(Networks(paused, DistributedContext()), images, recipe, noise)
    assert set(started.figures) | {"grad_dec_llike", "grad_dec_gan"} >= set(full_terms)
    norms = started.backward(discriminator=False)
    assert all(p.grad is None for p in paused.discriminator.parameters())
    for name in ("encoder", "decoder"):
        for mine, theirs in zip(getattr(paused, name).parameters(), full[name], strict=True):
            assert mine.grad is not None and theirs is not None
            torch.testing.assert_close(mine.grad, theirs, rtol=0, atol=0)
    for name, value in norms.items():
        torch.testing.assert_close(value, full_terms[name], rtol=0, atol=0)


def test_ali_saturating_loss_is_minus_the_discriminators():
    model, images, noise = _ali_setup()
    recipe = Recipe(objective="ali", decoder_gan_loss="saturating")
    torch.manual_seed(1)
    _, terms = _one_forward_grads(model, images, recipe, noise)
    torch.testing.assert_close(terms["L_gen"], -terms["L_gan"])


def test_fit_ali_trains_all_three_networks_and_records_its_objective(synthetic_celeba, tmp_path):
    out = tmp_path / "ali"
    assert (
        _fit(synthetic_celeba, out, "--objective", "ali", "--steps", "4", "--log-every", "2") == 0
    )
    checkpoint = load_checkpoint(out / "model.safetensors")
    assert checkpoint.header.objective == "ali"
    assert checkpoint.config.discriminator == "joint"
    assert checkpoint.header.recipe["decoder_gan_loss"] == "non-saturating"  # ALI's default
    assert checkpoint.attributes, "ALI checkpoints get attribute vectors like the others"
    initial = build_vaegan(get_preset("small32").replace(discriminator="joint"), seed=0)
    for name in ("encoder", "decoder", "discriminator"):
        trained_net, initial_net = getattr(checkpoint.model, name), getattr(initial, name)
        assert not all(
            torch.equal(a, b)
            for a, b in zip(
                trained_net.state_dict().values(), initial_net.state_dict().values(), strict=True
            )
        ), f"{name} did not train"
    records = read_metrics(out / "metrics.jsonl")
    assert [r["step"] for r in records] == [2, 4]
    for name in ("L_gan", "L_gen", "D_x", "D_G_z", "images_per_second"):
        assert all(math.isfinite(r[name]) for r in records), name
    assert "L_prior" not in records[0] and "L_llike" not in records[0]
    assert Image.open(out / "samples" / "reconstructions-0000004.png").format == "PNG"
    assert Image.open(out / "loss_curves.png").size[0] > 400


def test_resuming_an_ali_run_with_its_preset_is_allowed(synthetic_celeba, tmp_path):
    out = tmp_path / "ali"
    assert _fit(synthetic_celeba, out, "--objective", "ali", "--steps", "2") == 0
    # _fit passes --preset small32 again: the joint discriminator is not a different network.
    assert _fit(synthetic_celeba, out, "--objective", "ali", "--steps", "3", "--resume") == 0
    assert load_checkpoint(out / "model.safetensors").header.step == 3


# --- the decoder's two signals and averaged weights --------------------------------------------


def test_decoder_gradient_parts_are_measured_and_add_up():
    """grad_dec_llike and grad_dec_gan are the norms of the two weighted parts of the decoder's
    gradient, and the parts still sum to the gradient the naive per-network losses give."""
    model, images, noise = _setup()
    recipe = Recipe(gamma=0.3)
    reference = copy.deepcopy(model)
    grads, terms = _one_forward_grads(model, images, recipe, noise)
    naive = naive_gradients(reference, images, recipe, noise)
    for mine, theirs in zip(grads["decoder"], naive["decoder"], strict=True):
        torch.testing.assert_close(mine, theirs, rtol=1e-4, atol=1e-5 * float(theirs.abs().max()))

    # gamma = 1 leaves only L_llike in the decoder's gradient; its norm scales with gamma.
    llike_only, llike_terms = _one_forward_grads(
        copy.deepcopy(reference), images, Recipe(gamma=1.0), noise
    )
    llike_norm = torch.linalg.vector_norm(torch.stack([g.norm() for g in llike_only["decoder"]]))
    torch.testing.assert_close(
        float(terms["grad_dec_llike"]), 0.3 * float(llike_norm), rtol=1e-4, atol=0
    )
    assert float(llike_terms["grad_dec_gan"]) == 0.0
    assert float(terms["grad_dec_gan"]) > 0


def test_fit_logs_both_decoder_gradient_norms(synthetic_celeba, tmp_path):
    out = tmp_path / "run"
    assert _fit(synthetic_celeba, out, "--steps", "2", "--log-every", "1", "--gamma", "1e-3") == 0
    for record in read_metrics(out / "metrics.jsonl"):
        assert record["grad_dec_llike"] > 0
        assert record["grad_dec_gan"] > 0


def test_ema_checkpoints_carry_averaged_weights_and_resume_exactly(synthetic_celeba, tmp_path):
    common = ("--ema-decay", "0.9", "--checkpoint-every", "2", "--log-every", "1")
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert _fit(synthetic_celeba, straight, "--steps", "4", *common) == 0
    assert _fit(synthetic_celeba, split, "--steps", "2", *common) == 0
    assert _fit(synthetic_celeba, split, "--steps", "4", "--resume", *common) == 0
    averaged = load_checkpoint(straight / "model.safetensors")
    resumed = load_checkpoint(split / "model.safetensors")
    assert averaged.header.recipe["ema_decay"] == 0.9
    for a, b in zip(
        averaged.model.state_dict().values(), resumed.model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b)
    # The checkpoint's encoder and decoder are the average, not the last step's weights; D is
    # the live one.
    tensors, _ = load_training_state(straight / "state.safetensors")
    raw_decoder = {
        k[len("model.decoder.") :]: v for k, v in tensors.items() if k.startswith("model.decoder.")
    }
    raw_discriminator = {
        k[len("model.discriminator.") :]: v
        for k, v in tensors.items()
        if k.startswith("model.discriminator.")
    }
    decoder = averaged.model.decoder.state_dict()
    assert any(
        not torch.equal(decoder[k], v) for k, v in raw_decoder.items() if v.is_floating_point()
    )
    discriminator = averaged.model.discriminator.state_dict()
    assert all(torch.equal(discriminator[k], v) for k, v in raw_discriminator.items())


def test_ema_decay_is_checked():
    with pytest.raises(ValueError, match="ema_decay must be in"):
        Recipe(ema_decay=1.0)


# --- named recipes ----------------------------------------------------------------------------


def test_describe_recipe_names_the_closest_recipe_and_what_differs():
    assert describe_recipe(Recipe()) == "authors"
    assert describe_recipe(Recipe(seed=3, objective="vae")) == "authors"  # run fields
    assert (
        describe_recipe(Recipe(gamma=1e-3, lr_schedule="constant"))
        == "authors + lr_schedule=constant, gamma=0.001"
    )
    for name, recipe in RECIPES.items():
        assert describe_recipe(recipe) == name


def test_fit_takes_a_named_recipe_and_flags_override_single_values(synthetic_celeba, tmp_path):
    out = tmp_path / "run"
    assert (
        _fit(synthetic_celeba, out, "--steps", "1", "--recipe", "authors", "--gamma", "0.01") == 0
    )
    recorded = load_checkpoint(out / "model.safetensors").header.recipe
    assert recorded["gamma"] == 0.01
    assert recorded["lr_schedule"] == "authors"
    assert recorded["name"] == "authors + batch_size=8, gamma=0.01"


def test_the_balanced_recipe_is_recorded_by_name_with_its_values(synthetic_celeba, tmp_path):
    out = tmp_path / "run"
    assert _fit(synthetic_celeba, out, "--steps", "1", "--recipe", "balanced") == 0
    recorded = load_checkpoint(out / "model.safetensors").header.recipe
    assert recorded["name"] == "balanced + batch_size=8"
    assert recorded["gamma"] == 0.01
    assert recorded["decoder_gan_loss"] == "non-saturating"
    assert recorded["lr_schedule"] == "constant"
    assert recorded["ema_decay"] is None
    assert recorded["discriminate_reconstructions"] is False
