"""setup_cloud.sh end to end: download the two decathlon archives over HTTP, extract, prepare, rerun.

A local HTTP server stands in for robots.ox.ac.uk (no internet here); it serves archives laid out as
the real ones: the devkit's decathlon-1.0/annotations/*.json, and a data archive of one <domain>.tar
per domain, each holding <domain>/{train,val,test}/NNNNNN.jpg. Installation is skipped (SKIP_INSTALL=1,
this interpreter) since the test environment is already installed.
"""

from __future__ import annotations

import functools
import http.server
import io
import json
import os
import subprocess
import sys
import tarfile
import threading
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from mtl.data.domains import DECATHLON

REPO = Path(__file__).resolve().parents[1]
NINE = [d for d in DECATHLON.domains if d.name != "imagenet12"]
SPLIT_FOLDERS = {"train": "train", "val": "val", "test_stripped": "test"}


def _domain_files(domain, rng) -> tuple[dict[str, dict], dict[str, bytes]]:
    """Annotation documents (2 train, 1 val, 1 test image) and JPEG bytes by path under data/."""
    categories = [{"id": domain.code * 10**7 + k, "name": f"c{k}", "supercategory": domain.name} for k in (1, 2)]
    docs, images, number = {}, {}, 0
    for split, folder in SPLIT_FOLDERS.items():
        entries, anns = [], []
        for _ in range(2 if split == "train" else 1):
            number += 1
            image_id = domain.code * 10**7 + 200000 + number
            name = f"{domain.name}/{folder}/{number:06d}.jpg"
            entries.append({"id": image_id, "width": 80, "height": 72, "file_name": f"data/{name}"})
            anns.append({"id": image_id, "image_id": image_id, "category_id": categories[number % 2]["id"]})
            buffer = io.BytesIO()
            Image.fromarray(rng.integers(0, 256, (72, 80, 3), dtype=np.uint8)).save(buffer, format="JPEG")
            images[name] = buffer.getvalue()
        docs[split] = {"info": {"version": "1.0"}, "categories": categories, "images": entries,
                       **({} if split == "test_stripped" else {"annotations": anns})}
    return docs, images


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _write_archives(folder: Path) -> dict[str, int]:
    """The devkit and data archives in `folder`; returns the number of train images per domain."""
    rng = np.random.default_rng(0)
    counts = {}
    with tarfile.open(folder / "decathlon-1.0-devkit.tar.gz", "w:gz") as devkit, \
            tarfile.open(folder / "decathlon-1.0-data.tar.gz", "w:gz") as data:
        for domain in NINE:
            docs, images = _domain_files(domain, rng)
            for split, doc in docs.items():
                _add(devkit, f"decathlon-1.0/annotations/{domain.name}_{split}.json", json.dumps(doc).encode())
            inner = io.BytesIO()
            with tarfile.open(fileobj=inner, mode="w") as domain_tar:
                for name, payload in images.items():
                    _add(domain_tar, name, payload)
            _add(data, f"{domain.name}.tar", inner.getvalue())
            counts[domain.name] = len(docs["train"]["images"])
    return counts


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep the test output to the script's own
        pass


@pytest.fixture
def archive_server(tmp_path):
    """An HTTP server on localhost serving the two archives; yields (base URL, train counts, stop)."""
    served = tmp_path / "served"
    served.mkdir()
    counts = _write_archives(served)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(served)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", counts, server.shutdown
    server.shutdown()
    server.server_close()


def _setup(data_dir: Path, url: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "SKIP_INSTALL": "1", "PY": sys.executable, "DATA_DIR": str(data_dir),
           "DECATHLON_URL": url}
    return subprocess.run(["bash", str(REPO / "setup_cloud.sh")], env=env, capture_output=True, text=True,
                          timeout=300)


def test_setup_cloud_downloads_extracts_and_prepares_then_reruns_offline(archive_server, tmp_path):
    url, counts, stop_server = archive_server
    data_dir = tmp_path / "data"
    first = _setup(data_dir, url)
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    dec = data_dir / "decathlon"
    for domain in NINE:
        with h5py.File(dec / f"{domain.name}.h5", "r") as f:
            assert f["train/images"].shape[0] == counts[domain.name], domain.name
            assert f["train/images"].shape[1:3] == (72, 72)
    assert not list((dec / "data").glob("*.tar")), "domain archives are removed once extracted"

    stop_server()  # a second run needs no network: downloads, extraction and preparation are all skipped
    before = {p: p.stat().st_mtime_ns for p in dec.glob("*.h5")}
    second = _setup(data_dir, url)
    assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-2000:]
    assert {p: p.stat().st_mtime_ns for p in dec.glob("*.h5")} == before
