"""Generic run machinery: atomic files, checkpoints, run folders, logging, seeding, signals."""
