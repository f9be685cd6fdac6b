"""Multi-task optimization methods (loss weighting and gradient combination), one per module.

``build_method(name, num_tasks, options)`` builds one; ``METHODS.available()`` lists them; the
interface is documented in ``mtl.methods.base``.
"""

from importlib import import_module

from mtl.methods.base import (METHODS, Method, SharedParts, StepInfo, build_method,
                              options_from_dict)

_MODULES = ("naive", "sum", "mean", "uncertainty", "dwa", "rlw", "famo", "gradnorm", "mgda", "pcgrad",
            "cagrad", "imtl_g", "nash_mtl", "upgrad", "graddrop", "aligned_mtl", "rotograd")

for _name in _MODULES:
    import_module(f"{__name__}.{_name}")

__all__ = ["METHODS", "Method", "SharedParts", "StepInfo", "build_method", "options_from_dict"]
