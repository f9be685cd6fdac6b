"""The embedded mini-decathlon: six varied domains in the devkit layout (the default data of the mini configs).

Written by the generic generator of mtl/data/embedded.py. Domain rationale: see mtl/data/mini_render.py.
The digits are scikit-learn's copy of the UCI optdigits set (CC BY 4.0); everything else is rendered
procedurally (glyphs with Pillow's bundled font). For data whose best partition is known, see
mtl/data/families.py.
"""

from __future__ import annotations

from pathlib import Path

from mtl.data import mini_render as R
from mtl.data.embedded import EmbeddedDataset, EmbeddedDomain
from mtl.data.mini_render import load_digits_data
from mtl.data.specs import DomainSpec

GENERATOR_VERSION = 1
SEED = 20240501
MiniDomain = EmbeddedDomain


def _digit_labels():
    return load_digits_data()[1]


# Codes are alphabetical positions, as in the devkit. baseline_acc (E_base of the decathlon-style score,
# 250 points): what the reference short training reaches, exp.mini_dec with share_all over the six domains
# (1200 steps, width 0.25, 32 px; measured 96/90/96/96/68/51 %), rounded down to 5 %. Symmetry sits at
# chance there, so its reference is chance. proxy_reference: the proxy's divisor (the original's task_high).
MINI_DOMAINS = (
    MiniDomain(DomainSpec("digits", 2, 10, False, 95.0, 0.95), tuple("0123456789"), 0, R.render_digit,
               _digit_labels),
    MiniDomain(DomainSpec("glyphs", 3, 40, False, 90.0, 0.80), tuple(R.GLYPHS), 30, R.render_glyph),
    MiniDomain(DomainSpec("shapes", 4, 8, True, 95.0, 0.90), R.SHAPES, 100, R.render_shape),
    MiniDomain(DomainSpec("colors", 1, 4, True, 95.0, 0.95), R.COLORS, 100, R.render_colored),
    MiniDomain(DomainSpec("textures", 6, 12, True, 65.0, 0.85), R.TEXTURES, 40, R.render_texture),
    MiniDomain(DomainSpec("symmetry", 5, 2, True, 50.0, 0.80), R.SYMMETRY, 200, R.render_symmetry),
)
MINI = EmbeddedDataset("mini_decathlon", MINI_DOMAINS, GENERATOR_VERSION, SEED, "mini-decathlon")
MARKER = MINI.marker
MINI_DECATHLON = MINI.spec


def has_devkit(root: str | Path) -> bool:
    """Whether `root` holds a complete mini-decathlon devkit of the current generator version."""
    return MINI.has_devkit(root)


def generate_mini_decathlon(root: str | Path) -> Path:
    """Write the mini-decathlon devkit under `root` (replacing a partial one); returns `root`."""
    return MINI.generate(root)

