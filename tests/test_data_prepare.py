"""HDF5 preparation on the mini-decathlon: a crash mid-domain resumes to byte-identical files."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mtl.data.mini import MARKER
from mtl.data.prepare import KILL_AFTER_ENV, prepare_dataset
from mtl.data.store import is_complete

REPO = Path(__file__).resolve().parent.parent
DOMAINS = ["colors", "symmetry"]  # 400 images each: small, but several write blocks per domain


def _copy_devkit(source: Path, target: Path) -> Path:
    """Copy the devkit (not the .h5 files) of DOMAINS."""
    (target / "annotations").mkdir(parents=True)
    for domain in DOMAINS:
        for path in (source / "annotations").glob(f"{domain}_*.json"):
            shutil.copy(path, target / "annotations" / path.name)
        shutil.copytree(source / "data" / domain, target / "data" / domain)
    shutil.copy(source / MARKER, target / MARKER)
    return target


def test_killed_preparation_resumes_to_identical_files(mini_root, tmp_path):
    data_dir = _copy_devkit(mini_root, tmp_path / "mini_decathlon")
    env = {**os.environ, "PYTHONPATH": str(REPO), KILL_AFTER_ENV: str(400 + 64)}  # colors, then 1 block
    command = [sys.executable, "-m", "mtl.data.prepare", "mini_decathlon", "--data_dir", str(tmp_path),
               "--domains", ",".join(DOMAINS), "--workers", "0"]
    killed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert is_complete(data_dir / "colors.h5")
    assert not (data_dir / "symmetry.h5").exists() and (data_dir / ".symmetry.h5.partial").exists()

    report = prepare_dataset("mini_decathlon", data_dir, domains=DOMAINS, workers=2, progress=False)
    assert [report["domains"][d]["status"] for d in DOMAINS] == ["done", "prepared"]
    assert not (data_dir / ".symmetry.h5.partial").exists()
    for domain in DOMAINS:  # the session's mini-decathlon was prepared in one go, in-process
        assert (data_dir / f"{domain}.h5").read_bytes() == (mini_root / f"{domain}.h5").read_bytes()


def test_changed_annotations_trigger_a_rebuild(mini_root, tmp_path):
    data_dir = _copy_devkit(mini_root, tmp_path / "mini")
    shutil.copy(mini_root / "colors.h5", data_dir / "colors.h5")
    report = prepare_dataset("mini_decathlon", data_dir, domains=["colors"], progress=False)
    assert report["domains"]["colors"]["status"] == "done"
    (data_dir / "annotations" / "colors_val.json").write_text(
        (data_dir / "annotations" / "colors_train.json").read_text())  # val now lists the train images
    report = prepare_dataset("mini_decathlon", data_dir, domains=["colors"], progress=False)
    assert report["domains"]["colors"]["status"] == "prepared"
    assert report["domains"]["colors"]["counts"]["val"] == report["domains"]["colors"]["counts"]["train"]


@pytest.mark.parametrize("mode,suffix", [("I;16", "png"), ("I", "tif")])  # Pillow writes no mode-I PNG
def test_a_16_bit_png_is_scaled_to_8_bit_not_white(tmp_path, mode, suffix):
    from PIL import Image

    from mtl.data.images import decode_image

    gray = (np.arange(72 * 72, dtype=np.int64).reshape(72, 72) * 12) % 65536
    path = tmp_path / f"deep.{suffix}"
    Image.fromarray(gray.astype(np.uint16 if mode == "I;16" else np.int32)).save(path)
    with Image.open(path) as img:
        assert img.mode == mode  # a real 16-bit PNG (or a 32-bit integer TIFF)
    out = decode_image(path)
    assert out.shape == (72, 72, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[..., 0], out[..., 2])
    np.testing.assert_allclose(out[..., 1], gray / 257.0, atol=0.5 + 1e-9)  # was 255 almost everywhere
