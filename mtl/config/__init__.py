"""Typed options, named config modules (mtl/config/exp/*.py) and command-line resolution."""
