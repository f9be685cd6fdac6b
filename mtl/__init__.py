"""mtl: experiment management and meta-optimization for multi-task networks."""

__version__ = "0.1.0"
