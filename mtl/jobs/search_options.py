"""Options of the search job: meta-optimizer, objective, search space, budget and workers."""

from __future__ import annotations

from dataclasses import dataclass

from mtl.config.groups import Group
from mtl.config.options import TaskOptions, option
from mtl.errors import UserError

BACKEND_CHOICES = ("inprocess", "local", "ray")


@dataclass
class SearchOptions(TaskOptions):
    """A meta-optimizer proposes candidates, an objective scores them, the results store keeps every one."""

    optimizer: str = option("es", "meta-optimizer: es, es_multiobjective, random, grid, runner or nevergrad")
    optimizer_options: dict = option({}, "settings of --optimizer (--help with it lists them)",
                                     group=Group("optimizer", kind="optimizer", plugin="optimizer"))
    nevergrad_optimizer: str = option("NGOpt", "nevergrad: the optimizer's name in Nevergrad's registry (CMA, "
                                               "TwoPointsDE, NGOpt, OnePlusOne, DiagonalCMA, PSO, ...)")
    nevergrad_population: int = option(16, "nevergrad: candidates asked (and evaluated together) per generation")
    nevergrad_budget: int = option(0, "nevergrad: evaluations it plans for (NGOpt picks its algorithms from it); "
                                      "0: the first run's --budget (kept when --budget grows on --continue)")
    objective: str = option("debug", "what scores a candidate: debug (known optimum, no training), "
                                     "proxy (distillation) or train (a full training run each)")
    objective_options: dict = option({}, "settings of --objective (--help with it lists them)",
                                     group=Group("objective", kind="objective", plugin="objective"))
    search_partition: bool = option(True, "search the partition matrices of the chosen tasks")
    restrict_amt: float = option(0.5, "mean channel fraction of random partitions (the original's restrict_amt)",
                                 at_least=0, at_most=1)
    fixed_fraction: float = option(0.0, "every task's channel fraction fixed to this value (0: searched): the "
                                   "search is then over what tasks share at one resource level", at_least=0, at_most=1)
    hyperparameters: list[str] = option([], "hyperparameter ranges, es.txt lines 'name default low high "
                                            "linear|log is_int' (a JSON list for several)")
    hyperparameters_file: str = option("", "file of es.txt-style hyperparameter lines (the original's config/cmd)")
    budget: int = option(10000, "evaluations in the results store when the search stops (failed ones count); "
                                "may grow on --continue", resume_safe=True, at_least=1)
    backend: str = option("inprocess", "where candidates are evaluated: inprocess (CPU, or one GPU with "
                                       "population evaluation), local (one process per GPU) or ray",
                          resume_safe=True, choices=BACKEND_CHOICES)
    ray_address: str = option("", "Ray cluster to join (auto, ray://head:10001); empty: start a local one",
                              resume_safe=True)
    num_workers: int = option(0, "local: CPU workers when no GPU is visible; ray: CPUs of a local cluster "
                                 "(0: every core)", resume_safe=True, at_least=0)
    devices: list[str] = option([], "local: one worker per entry, e.g. cuda:0,cuda:1 or cpu,cpu "
                                    "(empty: every visible GPU, else num_workers CPU workers)", resume_safe=True)
    cpus_per_eval: float = option(1.0, "ray: CPUs each actor reserves (one actor per this many CPUs without GPUs)",
                                  resume_safe=True, above=0)
    gpus_per_eval: float = option(0.0, "ray: GPUs each actor reserves (0: one per GPU when the cluster has GPUs; "
                                       "0.5: two per GPU)", resume_safe=True, at_least=0)
    max_retries: int = option(2, "extra attempts for an evaluation that raised or whose worker died; then it "
                                 "is recorded as failed", resume_safe=True, at_least=0)

    def validate(self) -> None:
        super().validate()
        if self.budget < 1:
            raise UserError(f"--budget must be at least 1 (got {self.budget}).")
        if self.max_retries < 0 or self.num_workers < 0:
            raise UserError("--max_retries and --num_workers must not be negative.")
        if not 0.0 <= self.fixed_fraction <= 1.0:
            raise UserError(f"--fixed_fraction must be in [0, 1] (got {self.fixed_fraction}).")
        if self.nevergrad_population < 1 or self.nevergrad_budget < 0:
            raise UserError("--nevergrad_population must be at least 1 and --nevergrad_budget not negative.")
        if not 0.0 <= self.restrict_amt <= 1.0:
            raise UserError(f"--restrict_amt must be in [0, 1] (got {self.restrict_amt}).")
        from mtl.jobs.search_setup import build_optimizer, check_objective_name, check_objective_options

        check_objective_name(self.objective)
        check_objective_options(self)
        build_optimizer(self, self.build_space())  # refuses unknown optimizers and bad optimizer_options early

    def build_space(self):
        """The declared search space: the tasks' partition block and/or the hyperparameter ranges."""
        from mtl.jobs.search_setup import build_space

        return build_space(self)
