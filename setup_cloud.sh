#!/usr/bin/env bash
# Set up a fresh cloud GPU instance for mtl: install, download Visual Decathlon, prepare it (HDF5).
#
#   ./setup_cloud.sh                 # everything, data under data/decathlon
#   DATA_DIR=/mnt/ssd/data ./setup_cloud.sh
#   SKIP_DATA=1 ./setup_cloud.sh     # install only
#   IMAGENET_TAR=/path/decathlon-1.0-data-imagenet.tar ./setup_cloud.sh   # also prepare imagenet12
#   SKIP_INSTALL=1 PY=/path/to/python ./setup_cloud.sh   # data only, with an environment you already have
#   DECATHLON_URL=http://mirror/share ./setup_cloud.sh    # another host serving the same two archives
#
# Every step is resumable: downloads continue (wget -c), finished extractions and prepared domains
# are skipped, so running it again after an interruption picks up where it stopped.
# Needs: python3.11 (with venv), make, wget, tar; about 20 GB of disk for the 9 domains (downloads,
# extracted JPEGs and HDF5), more with ImageNet.
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3.11}
DATA_DIR=${DATA_DIR:-data}
DEC="$DATA_DIR/decathlon"
DOWNLOADS="$DATA_DIR/downloads"
URL=${DECATHLON_URL:-http://www.robots.ox.ac.uk/~vgg/share}  # the original README's devkit and data archives
NINE=aircraft,cifar100,daimlerpedcls,dtd,gtsrb,vgg-flowers,omniglot,svhn,ucf101

# 1. Install: the Makefile's .venv (torch, the package in editable mode, tests and the Ray extra).
if [ "${SKIP_INSTALL:-0}" = 1 ]; then
  PY=${PY:-.venv/bin/python}
else
  command -v "$PYTHON" >/dev/null || PYTHON=python3
  make venv PYTHON="$PYTHON"
  PY=.venv/bin/python
fi
$PY -c "import torch; print('torch', torch.__version__, '| CUDA devices:', torch.cuda.device_count())"
[ "${SKIP_DATA:-0}" = 1 ] && { echo "installed; data skipped (SKIP_DATA=1)"; exit 0; }

# 2. Download (resumable).
mkdir -p "$DOWNLOADS" "$DEC/data"
for archive in decathlon-1.0-devkit.tar.gz decathlon-1.0-data.tar.gz; do
  if [ ! -f "$DOWNLOADS/$archive.complete" ]; then
    wget -c -O "$DOWNLOADS/$archive" "$URL/$archive"
    touch "$DOWNLOADS/$archive.complete"
  fi
done

# 3. Extract: annotations/*.json from the devkit, then one <domain>.tar per domain into data/<domain>/.
if [ ! -d "$DEC/annotations" ]; then
  tar -xzf "$DOWNLOADS/decathlon-1.0-devkit.tar.gz" -C "$DOWNLOADS"
  mv "$DOWNLOADS/decathlon-1.0/annotations" "$DEC/annotations.partial" && mv "$DEC/annotations.partial" "$DEC/annotations"
fi
if [ ! -f "$DEC/data/.extracted" ]; then
  tar -xzf "$DOWNLOADS/decathlon-1.0-data.tar.gz" -C "$DEC/data"
  for domain_tar in "$DEC"/data/*.tar; do
    tar -xf "$domain_tar" -C "$DEC/data" && rm -f "$domain_tar"
  done
  touch "$DEC/data/.extracted"
fi
if [ -n "${IMAGENET_TAR:-}" ] && [ ! -d "$DEC/data/imagenet12" ]; then
  tar -xf "$IMAGENET_TAR" -C "$DEC/data"  # decathlon-1.0-data-imagenet.tar from image-net.org (login needed)
fi

# 4. Prepare: decode every image once into data/decathlon/<domain>.h5 (resumable, domain by domain).
if [ -d "$DEC/data/imagenet12" ]; then
  $PY main.py --prepare decathlon --data_dir "$DATA_DIR"
else
  echo "no ImageNet images (set IMAGENET_TAR to add them): preparing the 9 other domains"
  $PY main.py --prepare decathlon --data_dir "$DATA_DIR" --domains "$NINE"
fi
echo "ready. Next: see README.md, 'Multi-GPU machines and Ray clusters'."
