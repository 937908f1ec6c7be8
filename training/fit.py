"""`vaegan-train fit`: train a VAE-GAN (or the VAE / GAN baselines, or ALI) on a data folder."""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
from pathlib import Path
from typing import Any

import torch

from model.codec import Preprocessing
from model.config import VAEGANConfig, discriminator_for, get_preset
from model.cpu_budget import cpu_budget
from model.networks import build_vaegan
from training.data import DatasetError, open_dataset
from training.distributed import init_distributed
from training.plots import plot_loss_curves
from training.recipe import RECIPES, Recipe, describe_recipe
from training.run_dir import (
    FINAL_CHECKPOINT,
    LOSS_CURVES,
    METRICS_FILE,
    STATE_FILE,
    TrainingError,
    load_training_state,
    remove_stale_temporaries_of_run,
    truncate_metrics,
)
from training.trainer import Trainer, TrainerOptions

log = logging.getLogger(__name__)

AUTHORS_STEPS = 62_500  # 250 "epochs" of 250 iterations at batch 64


class FitError(ValueError):
    """Bad arguments or data for `fit`, explained."""


def _config(args: argparse.Namespace, saved: dict[str, Any] | None, objective: str) -> VAEGANConfig:
    discriminator = discriminator_for(objective)
    if saved is not None:
        config = VAEGANConfig.from_dict(saved)
        if args.preset is not None:
            chosen = get_preset(args.preset, channels=args.channels)
            chosen = chosen.replace(discriminator=discriminator, init=config.init)
            if chosen != config:
                raise FitError(
                    f"--resume: the run in {args.out} was trained with a different network "
                    f"({config.image_size}px, encoder {list(config.encoder_channels)}) than "
                    f"--preset {args.preset}; drop --preset or use another --out"
                )
        return config
    config = get_preset(args.preset or "paper64", channels=args.channels)
    if discriminator != config.discriminator:
        config = config.replace(discriminator=discriminator)
    if args.init != config.init:
        config = config.replace(init=args.init)
    if args.image_size is not None and args.image_size != config.image_size:
        raise FitError(
            f"--image-size {args.image_size} does not match preset {args.preset or 'paper64'} "
            f"({config.image_size}px); pick a {args.image_size}px preset such as "
            f"paper{args.image_size}"
        )
    return config


def _recipe(args: argparse.Namespace) -> Recipe:
    """The named recipe, with the run's objective, batch and seed and every flag given."""
    named = RECIPES[args.recipe]
    given = {
        "lr": args.lr,
        "lr_schedule": args.lr_schedule,
        "gamma": args.gamma,
        "equilibrium": args.equilibrium,
        "margin": args.margin,
        "discriminate_reconstructions": args.discriminate_reconstructions,
        "decoder_gan_loss": args.decoder_loss,
        "real_weight": args.real_weight,
        "ema_decay": args.ema_decay,
        "weight_decay": args.weight_decay,
    }
    changes = {name: value for name, value in given.items() if value is not None}
    if args.objective == "ali":
        changes.setdefault("decoder_gan_loss", "non-saturating")  # the ALI paper's
    if args.no_equilibrium:
        changes["margin"] = None
    if args.no_flip:
        changes["flip"] = False
    try:
        return named.replace(
            objective=args.objective, batch_size=args.batch_size, seed=args.seed, **changes
        )
    except ValueError as exc:
        raise FitError(str(exc)) from None


def training_threads(requested: int | None, processes_here: int) -> str:
    """Set torch's intra-op threads for one of `processes_here` training processes on this
    machine and say how many and why. More busy threads than the cores the process really has
    (a container's quota, taskset) makes OpenMP spin against itself: measured 2.6x slower on a
    shared 2-core machine. OMP_NUM_THREADS, when set, is left as torch read it."""
    if requested is not None:
        torch.set_num_threads(requested)
        return f"{requested} (--threads)"
    if os.environ.get("OMP_NUM_THREADS"):
        return f"{torch.get_num_threads()} (OMP_NUM_THREADS)"
    budget = cpu_budget()
    threads = max(1, budget.cores // processes_here)
    torch.set_num_threads(threads)
    shared = f", shared by {processes_here} processes" if processes_here > 1 else ""
    return f"{threads} (this process may use {budget}{shared})"


def run_fit(args: argparse.Namespace) -> int:
    for name in ("checkpoint_every", "keep_checkpoints", "log_every", "batch_size"):
        if getattr(args, name) < 1:
            raise FitError(f"--{name.replace('_', '-')} must be at least 1")
    if args.steps is not None and args.steps < 1:
        raise FitError("--steps must be at least 1")
    if args.epochs is not None and not (math.isfinite(args.epochs) and args.epochs > 0):
        raise FitError("--epochs must be a positive number")
    run_dir: Path = args.out
    state_path = run_dir / STATE_FILE
    saved_tensors, saved_header = None, None
    if args.resume_if_present and state_path.exists():
        args.resume = True
    if args.resume:
        saved_tensors, saved_header = load_training_state(state_path)
    elif state_path.exists():
        raise FitError(
            f"{run_dir} already holds a training run; pass --resume to continue it "
            "or choose another --out"
        )

    recipe = Recipe.from_dict(saved_header["recipe"]) if saved_header else _recipe(args)
    config = _config(args, saved_header["config"] if saved_header else None, recipe.objective)
    preprocessing = Preprocessing(image_size=config.image_size, channels=config.channels)
    context = init_distributed(args.device)
    threads = training_threads(args.threads, context.local_world_size)
    if context.is_main:
        log.info("torch threads: %s", threads)
    if recipe.batch_size % context.world_size:
        raise FitError(
            f"--batch-size {recipe.batch_size} must divide evenly across "
            f"{context.world_size} processes"
        )
    try:
        dataset = open_dataset(
            args.data, split=args.split, preprocessing=preprocessing, limit=args.limit
        )
    except DatasetError as exc:
        raise FitError(str(exc)) from None
    if saved_header and saved_header["dataset_size"] != len(dataset):
        raise FitError(
            f"--resume: the run was trained on {saved_header['dataset_size']} images but "
            f"{args.data} now gives {len(dataset)}; resuming would change the data order"
        )

    batches_per_epoch = len(dataset) // recipe.batch_size
    if args.steps is not None:
        total_steps = args.steps
    elif args.epochs is not None:
        total_steps = max(1, round(args.epochs * batches_per_epoch))
    elif saved_header:
        total_steps = int(saved_header["total_steps"])
    else:
        total_steps = AUTHORS_STEPS

    if context.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        for stale in remove_stale_temporaries_of_run(run_dir):
            log.info("removed %s, left half-written by a killed run", stale)
        if saved_header is None:
            # Steps a run killed before its first saved state logged; this run logs them again.
            truncate_metrics(run_dir / METRICS_FILE, 0)
    if context.is_main:
        log.info("recipe: %s", describe_recipe(recipe))
    model = build_vaegan(config, seed=recipe.seed)
    workers = (
        args.workers if args.workers is not None else (4 if context.device.type == "cuda" else 0)
    )
    options = TrainerOptions(
        total_steps=total_steps,
        checkpoint_every=args.checkpoint_every,
        keep_checkpoints=args.keep_checkpoints,
        log_every=args.log_every,
        workers=workers,
        progress=not args.quiet,
        command=getattr(args, "command_line", ""),
    )
    try:
        trainer = Trainer(
            model, dataset, recipe, run_dir, options, context, preprocessing=preprocessing
        )
        if saved_tensors is not None and saved_header is not None:
            trainer.load_state(saved_tensors, saved_header)
            final = run_dir / FINAL_CHECKPOINT
            if trainer.counters.steps >= total_steps and final.exists():
                # A restartable job re-run after it finished: nothing to train or rewrite.
                print(f"{run_dir} already finished {trainer.counters.steps} steps: {final}")
                return 0
            log.info("resuming %s at step %d of %d", run_dir, trainer.counters.steps, total_steps)
        elif context.is_main:
            (run_dir / "run.json").write_text(
                json.dumps(
                    {
                        "config": config.to_dict(),
                        "recipe": recipe.to_dict(),
                        "data": str(args.data),
                    },
                    indent=2,
                )
            )
        trainer.fit()
        if context.is_main:
            _finish(trainer, args)
    finally:
        context.close()
    return 0


def _finish(trainer: Trainer, args: argparse.Namespace) -> None:
    """The final checkpoint (with attribute vectors when the data has labels) and loss curves."""
    from model.checkpoint import save_checkpoint

    attributes = {}
    evaluation_extra: dict[str, Any] = {}
    if getattr(trainer.dataset, "attribute_names", ()):
        from training.attributes import compute_attribute_vectors
        from training.inference import InferenceOptions

        report = compute_attribute_vectors(
            trainer.inference_model,
            trainer.dataset,
            options=InferenceOptions(count=args.attribute_count, device=trainer.device),
        )
        attributes = report.vectors
        evaluation_extra["attributes"] = {"images": report.images, "skipped": list(report.skipped)}
    metadata = trainer.checkpoint_metadata()
    metadata["evaluation"] |= evaluation_extra
    plot_loss_curves(
        trainer.run_dir / METRICS_FILE,
        trainer.run_dir / LOSS_CURVES,
        equilibrium=trainer.recipe.uses_equilibrium,
    )
    # Written last: a run whose final checkpoint exists is complete, and a re-run with
    # --resume-if-present returns at once instead of finishing what a kill interrupted.
    final = save_checkpoint(
        trainer.run_dir / FINAL_CHECKPOINT,
        trainer.inference_model,
        preprocessing=trainer.preprocessing,
        step=trainer.counters.steps,
        attributes=attributes,
        **metadata,
    )
    print(f"trained {trainer.counters.steps} steps; final checkpoint {final}")
    if attributes:
        print(f"attribute vectors: {', '.join(attributes)}")


__all__ = ["FitError", "TrainingError", "run_fit"]
