"""Multi-task optimization methods (loss weighting and gradient combination), one per module.

``build_method(name, num_tasks, options)`` builds one; ``METHODS.available()`` lists them; the
interface is documented in ``mtl.methods.base``.
"""

from importlib import import_module

from mtl.methods.base import (METHODS, Method, SharedParts, StepInfo, build_method,
                              options_from_dict)

for _module in dict.fromkeys(METHODS.modules.values()):  # registers every method, in the registry's order
    import_module(_module)

__all__ = ["METHODS", "Method", "SharedParts", "StepInfo", "build_method", "options_from_dict"]
