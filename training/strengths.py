"""`vaegan-train strengths`: a default edit strength per attribute, chosen on validation faces.

One s cannot serve every attribute: a vector whose attribute covers the hair needs less push
than one for thin eyeglasses, and too much turns blond hair grey. For each attribute A the judge
scores the edits mu +- s * v_A on validation faces for every candidate s; the chosen s is the
smallest that reaches all three edit targets (adding, removing, preserving the other
attributes), or, where no candidate does, the one whose worst figure is closest to its target.
The choices go into the checkpoint beside the vectors; the service and `evaluate` use them when
no strength is given.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from torch import Tensor

from model.networks import VAEGAN
from training.data import CelebADataset
from training.inference import InferenceOptions
from training.judge import Judge
from training.judge_eval import evaluate_with_judge

CANDIDATES = (0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0)
# The quality bars an edit is held to, by the judge's figure name.
EDIT_TARGETS = {"edit_success_add": 0.80, "edit_success_remove": 0.95, "edit_preservation": 0.90}
# Fewer faces than `evaluate` reads: they are judged once per candidate strength.
STRENGTH_OPTIONS = InferenceOptions(count=500)


@dataclass(frozen=True)
class StrengthChoice:
    strength: float
    meets_targets: bool
    # candidate s -> the judge's edit figures at s
    figures: dict[float, dict[str, float]]


def _worst_ratio(figures: Mapping[str, float]) -> float:
    """How close the worst of an edit's figures comes to its target (>= 1: all targets met)."""
    ratios = [figures[name] / target for name, target in EDIT_TARGETS.items() if name in figures]
    finite = [r for r in ratios if math.isfinite(r)]
    return min(finite) if finite else -math.inf


def pick_strength(figures: Mapping[float, Mapping[str, float]]) -> StrengthChoice:
    """The smallest candidate meeting every target, else the one with the best worst ratio."""
    candidates = sorted(figures)
    for strength in candidates:
        if _worst_ratio(figures[strength]) >= 1.0:
            return StrengthChoice(strength, True, {s: dict(figures[s]) for s in candidates})
    best = max(candidates, key=lambda s: (_worst_ratio(figures[s]), -s))
    return StrengthChoice(best, False, {s: dict(figures[s]) for s in candidates})


def choose_strengths(
    model: VAEGAN,
    faces: CelebADataset,
    judge: Judge,
    vectors: Mapping[str, Tensor],
    *,
    candidates: Sequence[float] = CANDIDATES,
    options: InferenceOptions = STRENGTH_OPTIONS,
) -> dict[str, StrengthChoice]:
    """One `StrengthChoice` per attribute that both `vectors` and the judge know."""
    measured: dict[str, dict[float, dict[str, float]]] = {}
    for strength in candidates:
        result = evaluate_with_judge(
            model,
            faces,
            judge,
            vectors=vectors,
            edit_strength=strength,
            options=options,
        )
        for name in result.edited_attributes:
            row = result.per_attribute[name]
            measured.setdefault(name, {})[strength] = {key: float(row[key]) for key in EDIT_TARGETS}
    return {name: pick_strength(figures) for name, figures in measured.items()}
