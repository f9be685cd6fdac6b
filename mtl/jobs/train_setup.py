"""Building what the train job needs: the data folder, the model, and weights from another run."""

from __future__ import annotations

import logging
from pathlib import Path

from torch import nn

from mtl.data.specs import DomainSpec
from mtl.data.store import domain_file_path, is_complete
from mtl.errors import UserError
from mtl.jobs.train_options import TrainOptions
from mtl.models.factory import build_model
from mtl.util.checkpoint import CheckpointStore


def dataset_folder(opts: TrainOptions) -> Path:
    """data_dir/<dataset>, with an embedded dataset built when missing and the decathlon checked."""
    from mtl.data.domains import get_embedded
    from mtl.data.prepare import ensure_embedded

    if get_embedded(opts.dataset) is not None:
        return ensure_embedded(opts.dataset, opts.data_dir)
    folder = Path(opts.data_dir) / opts.dataset
    missing = [d for d in opts.task_names() if not is_complete(domain_file_path(folder, d))]
    if missing:
        raise UserError(
            f"the prepared {opts.dataset} data is missing for {', '.join(missing)} in {folder}. Put the devkit "
            f"there (see setup_cloud.sh) and run: python main.py --prepare {opts.dataset} --data_dir {opts.data_dir}"
        )
    return folder


def build_train_model(opts: TrainOptions, tasks: list[DomainSpec]) -> nn.Module:
    """The model named by opts.model for these tasks, with the partition options when partitioned."""
    if opts.model == "graph":
        from mtl.models.graph_config import build_graph_model

        return build_graph_model(opts.graph_model, tasks, input_res=opts.input_res, grad_source=opts.grad_source)
    kwargs = {"width": opts.width, "dropout": opts.dropout, "last_third_only": opts.last_third_only,
              "stem_relu": opts.stem_relu, "bn_semantics": opts.bn_semantics}
    if opts.model.startswith("partitioned"):
        kwargs.update(partition=opts.partition, partition_layers=opts.partition_layers,
                      exec_mode=opts.exec_mode, partition_seed=opts.partition_seed)
    try:
        return build_model(opts.model, tasks, **kwargs)
    except KeyError as err:
        raise UserError(f"--model: {err.args[0]}") from None
    except (ValueError, FileNotFoundError) as err:
        raise UserError(f"cannot build {opts.model}: {err}") from None


def init_from_run(model: nn.Module, source: str, exp_root: Path, log: logging.Logger) -> None:
    """Copy weights of matching name and shape from another run's best (else latest) checkpoint.

    Lets single-task runs serve as pretrained backbones and teachers; what could not be copied is logged.
    """
    folder = _run_folder(source, exp_root)
    store = CheckpointStore(folder / "checkpoints")
    loaded = store.load_best() or store.load_latest()
    if loaded is None:
        raise UserError(f"--init_from {source}: {folder} has no usable checkpoint (is the run finished?).")
    weights = loaded[1]["model"]
    own = model.state_dict()
    copied = {k: v for k, v in weights.items() if k in own and own[k].shape == v.shape and not _is_partition_key(k)}
    model.load_state_dict(copied, strict=False)
    skipped = sorted(set(weights) - set(copied))
    log.info("initialised %d/%d tensors from %s (step %d)%s", len(copied), len(own), folder, loaded[0],
             f"; not copied: {', '.join(skipped[:8])}{' ...' if len(skipped) > 8 else ''}" if skipped else "")


def _run_folder(source: str, exp_root: Path) -> Path:
    candidates = [Path(source), exp_root / source, exp_root / Path(source).name]
    if source.startswith("exp/"):
        candidates.insert(1, exp_root / source[len("exp/"):])
    for candidate in candidates:
        if (candidate / "checkpoints").is_dir():
            return candidate
    raise UserError(f"--init_from {source}: no run folder with checkpoints found (looked in "
                    f"{', '.join(str(c) for c in candidates)}).")


def _is_partition_key(key: str) -> bool:
    # Masks, raw partition and its seed travel together: copying some but not others would leave the
    # recorded partition out of step with the masks.
    name = key.rsplit(".", 1)[-1]
    return name.startswith("masks_") or name.startswith("partition_")
