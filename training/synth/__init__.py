"""Deterministic synthetic cartoon faces in the exact CelebA folder layout.

The synthetic set is the project's test fixture and its no-download demo training data, so two
properties matter more than realism:

* **Truthful labels.** Attributes are sampled first (with CelebA-like frequencies and the same
  logical constraints real labels obey) and the picture is then drawn *from* them, so every
  ``+1`` is visibly present and every ``-1`` is absent.
* **Reproducibility.** Each image depends only on ``(seed, index)``; the same seed gives
  byte-identical files whatever the number of worker processes.

Layout written (identical to the real ``img_align_celeba`` release)::

    out_dir/img_align_celeba/000001.jpg ...   178x218 RGB JPEGs
    out_dir/list_eval_partition.txt           "000001.jpg 0" rows (0 train, 1 val, 2 test)
    out_dir/list_attr_celeba.txt              count, names, "000001.jpg -1  1 ..." rows

The attribute file is written last, atomically, so its presence marks a complete set.

Modules, in the order a face goes through them: :mod:`.faces` samples what a face shows,
:mod:`.render` draws it (with the colour arithmetic in :mod:`.colours`), and :mod:`.writer`
writes a whole set to disk.
"""

from training.synth.faces import (
    HAIR_COLOUR_ATTRIBUTES,
    SYNTH_ATTRIBUTES,
    FaceParams,
    attribute_violations,
    face_rng,
    sample_face,
)
from training.synth.render import IMAGE_HEIGHT, IMAGE_WIDTH, render_face
from training.synth.writer import SynthReport, generate_synthetic_celeba, image_name, split_sizes

__all__ = [
    "HAIR_COLOUR_ATTRIBUTES",
    "IMAGE_HEIGHT",
    "IMAGE_WIDTH",
    "SYNTH_ATTRIBUTES",
    "FaceParams",
    "SynthReport",
    "attribute_violations",
    "face_rng",
    "generate_synthetic_celeba",
    "image_name",
    "render_face",
    "sample_face",
    "split_sizes",
]
