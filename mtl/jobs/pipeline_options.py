"""Options of the pipeline job: teachers -> ES search -> random search -> retrain best and baselines -> table."""

from __future__ import annotations

from dataclasses import dataclass

from mtl.config.groups import Group
from mtl.config.options import TaskOptions, option
from mtl.errors import UserError


@dataclass
class PipelineOptions(TaskOptions):
    """Every stage is a nested run under exp/<id>/, skipped when done, continued when cut short."""

    train_options: dict = option({}, "train options for every training stage (teachers and retrains), "
                                     "e.g. --train.width 0.25", group=Group("train", job="train",
                                                                             config="retrain_config"))
    backbone: str = option("", "backbone of every training and of the proxy's student: empty = train it first as "
                           "stage backbone (backbone_config); a run (exp/<id>) = use it; none = no backbone, every "
                           "layer of every training trains")
    backbone_config: str = option("exp.imagenet", "train config of the backbone stage")
    backbone_options: dict = option({}, "train options of the backbone stage only, e.g. --backbone.num_rounds 2",
                                    group=Group("backbone", job="train", config="backbone_config"))
    teacher_config: str = option("exp.finetune", "train config of the single-task teachers (one run per task)")
    teacher_options: dict = option({}, "train options of the teachers only, e.g. --teacher.num_rounds 2",
                                   group=Group("teacher", job="train", config="teacher_config"))
    search_config: str = option("exp.es_dist", "search config of the ES stage (its optimizer and settings)")
    search_options: dict = option({}, "search options of the ES and random-search stages, e.g. "
                                      "--search.optimizer.delta_size 0.1", group=Group("search", job="search",
                                                                             config="search_config"))
    objective: str = option("proxy", "objective of the searches: proxy (distillation from the teachers) or debug")
    objective_options: dict = option({}, "settings of --objective (--help with it lists them)",
                                     group=Group("objective", kind="objective", plugin="objective"))
    budget: int = option(10000, "evaluations of the ES search, and of the random search")
    random_search: bool = option(True, "also run random search at the same budget and retrain its best")
    random_batch_size: int = option(16, "candidates in flight per random-search generation")
    retrain_config: str = option("exp.dec", "train config of the multi-task retrains (best partitions, baselines)")
    retrain_options: dict = option({}, "train options of the retrains only, e.g. --retrain.num_rounds 10",
                                   group=Group("retrain", job="train", config="retrain_config"))
    baselines: list[str] = option(["share_all", "independent"], "partition presets retrained as baselines")
    share_fixed: list[float] = option([0.25, 0.5, 0.75], "share_fixed amounts retrained as baselines")
    oracle: bool = option(True, "also retrain the families oracle (--partition families) as a reference row when "
                                "the dataset's tasks belong to several families (mini_families)")
    retrain_seeds: int = option(3, "training seeds of every retrained variant (table cells: mean ± std over them)")
    submission: bool = option(False, "write submission.json: the ES best retrain's test predictions with the "
                              "backbone's imagenet12 ones merged (the stages then predict their test splits)")
    parallel_stages: int = option(1, "independent stages (the teachers, the ES and random searches, the "
                                     "retrains) run this many at a time, each in its own process (one per core "
                                     "or GPU); same numbers as 1. A search with its own worker pool "
                                     "(--search.backend local / ray) runs in this process",
                                  resume_safe=True)
    num_threads: int = option(0, "CPU threads of torch for every stage (0: torch's default, one per core)",
                              resume_safe=True)

    def validate(self) -> None:
        super().validate()
        if min(self.budget, self.random_batch_size, self.parallel_stages, self.retrain_seeds) < 1 \
                or self.num_threads < 0:
            raise UserError("--budget, --random_batch_size, --parallel_stages and --retrain_seeds must be at least 1, "
                            "--num_threads at least 0.")
        if any(not 0.0 <= s <= 1.0 for s in self.share_fixed):
            raise UserError(f"--share_fixed amounts must be in [0, 1] (got {self.share_fixed}).")
        from mtl.meta.partition import PRESETS

        bad = [b for b in self.baselines if b not in PRESETS or b in ("share_fixed", "families")]
        if bad:
            raise UserError(f"--baselines: {', '.join(bad)} not a preset (choices: share_all, independent, "
                            "share_fwd_only, random; share_fixed amounts go in --share_fixed, the families "
                            "oracle is --oracle).")
