"""Named configs: `--config exp.NAME` loads mtl/config/exp/NAME.py (its docstring says how to run it)."""
