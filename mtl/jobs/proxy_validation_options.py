"""Options of the proxy_validation job: which partitions, which proxy budgets, which full training."""

from __future__ import annotations

from dataclasses import dataclass

from mtl.config.groups import Group
from mtl.config.options import option
from mtl.data.domains import task_families
from mtl.errors import UserError
from mtl.jobs.distill_options import READOUTS, DistillOptions
from mtl.meta.partition import equal_size_of, equal_size_presets

DEFAULT_BUDGETS = {
    "steps_1000": {"steps": 1000},
    "steps_300": {"steps": 300},
    "steps_750_batch_16": {"steps": 750, "batch_size": 16},
}
BUDGET_KEYS = ("steps", "batch_size", "lr", "lr_drop_steps", "lr_drop_factor", "momentum", "weight_decay",
               "val_images", "train_images", "proxy_readout")  # proxy_readout: compare the readouts in one study


@dataclass
class ProxyValidationOptions(DistillOptions):
    """Rank correlation of the proxy (this job's distill options = the default budget) with full training."""

    teachers: str = option("", "teacher runs as for distill; empty = train one per task here (teacher_config)")
    num_partitions: int = option(16, "random partitions to sample (the original's restrict draw)")
    restrict_range: list[float] = option([0.15, 0.85], "each sampled partition's mean channel fraction is drawn "
                                         "uniformly from this range (so the sample spans resource levels)")
    presets: list[str] = option(["share_all", "independent"], "preset partitions added to the sample (spread)")
    sample: str = option("spread", "spread: partitions across resource levels (each draw around its own mean "
                         "channel fraction); equal_size: every partition uses the same channel fraction per task "
                         "and they differ only in what they share (the presets at that size: families, share_fixed)",
                         choices=("spread", "equal_size"))
    equal_size_fraction: float = option(0.0, "channel fraction of every task in the equal_size sample (0: 1/K for "
                                        "a dataset of K task families, else 0.5)")
    family_mix: list[float] = option([], "equal_size sample on a families dataset: partitions between the oracle "
                                     "and each wrong pairing, a share (0 < a < 1) of every task's channels shared "
                                     "with its cross-family partner instead of its family (a sample ordered by "
                                     "design: full training should rank it by a)")
    budgets: dict = option(DEFAULT_BUDGETS, "cheaper proxy budgets: --budgets.<name>.steps 300 (also batch_size, "
                           "lr, ...); the LR drops at 2/3 of the steps unless lr_drop_steps is given; budgets "
                           "may be added on --continue", resume_safe=True,
                           group=Group("budgets", job="distill", named=True, keys=BUDGET_KEYS))
    full_config: str = option("exp.mini_dec", "train config of the full multi-task trainings")
    full_options: dict = option({}, "train option overrides of the full trainings, e.g. --full.num_rounds 3",
                                group=Group("full", job="train", config="full_config"))
    full_seeds: list[int] = option([0], "training seeds per partition (full-training scores are averaged; "
                                   "seeds may be added on --continue)", resume_safe=True)
    teacher_config: str = option("exp.mini_finetune", "train config of teachers trained here (--teachers empty)")
    teacher_options: dict = option({}, "train option overrides of the teachers trained here",
                                   group=Group("teacher", job="train", config="teacher_config"))
    bootstrap: int = option(1000, "bootstrap resamples for the confidence intervals", resume_safe=True)
    max_population: int = option(0, "largest stack of students trained at once (0: every partition)",
                                 resume_safe=True)

    def validate(self) -> None:
        super().validate()
        if self.sample == "spread" and self.num_partitions + len(self.presets) < 3:
            raise UserError("proxy validation needs at least 3 partitions (--num_partitions plus --presets).")
        low, high = (self.restrict_range + [0, 0])[:2]
        if len(self.restrict_range) != 2 or not 0.0 < low <= high <= 1.0:
            raise UserError(f"--restrict_range must be two fractions 0 < low <= high <= 1 (got {self.restrict_range}).")
        for name, budget in self.budgets.items():
            unknown = set(budget) - set(BUDGET_KEYS) if isinstance(budget, dict) else {"(not a mapping)"}
            if unknown:
                raise UserError(f"--budgets.{name}: unknown {', '.join(sorted(unknown))} "
                                f"(allowed: {', '.join(BUDGET_KEYS)}).")
            if budget.get("proxy_readout", "original") not in READOUTS:
                raise UserError(f"--budgets.{name}.proxy_readout {budget['proxy_readout']!r}: choose one of "
                                f"{', '.join(READOUTS)}.")
        if not 0.0 <= self.equal_size_fraction <= 1.0:
            raise UserError(f"--equal_size_fraction must be in [0, 1] (got {self.equal_size_fraction}).")
        if any(not 0.0 < a < 1.0 for a in self.family_mix):
            raise UserError(f"--family_mix: every share must be strictly between 0 (the oracle) and 1 (a wrong "
                            f"pairing), which the sample has already (got {self.family_mix}).")
        if self.family_mix and self.sample != "equal_size":
            raise UserError("--family_mix adds to the equal_size sample: also give --sample equal_size.")
        if not self.full_seeds:
            raise UserError("--full_seeds needs at least one seed.")
        if self.sample == "equal_size":
            self._check_equal_size_sample()

    def _check_equal_size_sample(self) -> None:
        """The named partitions the equal_size sample will hold (mtl/meta/partition.py decides): at least 3
        partitions in all, and the family_mix ones when asked for."""
        families = task_families(self.dataset, self.task_names())
        fraction = equal_size_of(self.equal_size_fraction, families)
        named = equal_size_presets(families, fraction, self.family_mix)
        if self.num_partitions + len(named) < 3:
            raise UserError(f"proxy validation needs at least 3 partitions: the equal_size sample has "
                            f"{len(named)} named ({', '.join(named) or 'none'}); raise --num_partitions.")
        if self.family_mix and not any("family_mix" in p.info for p in named.values()):
            raise UserError(f"--family_mix needs a dataset of K task families of K tasks each and the fraction 1/K "
                            f"(got dataset {self.dataset} with families {families}, fraction {fraction:g}).")
