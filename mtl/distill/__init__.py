"""The distillation proxy: score a partition by how well a partitioned student reproduces single-task teachers.

teachers.py (load single-task runs), features.py (teacher stages computed once), student.py (P partitioned
students stacked), sgd.py (their per-task optimizer), proxy.py (schedule, training and scoring),
population.py (P candidates in one process), objective.py (`ProxyObjective`, the search's "proxy"),
validation.py (rank correlation of proxy vs full training).
"""

# The search resolves objective "proxy" by importing mtl.distill.proxy; importing this package registers it.
from mtl.distill import objective as _objective  # noqa: F401,E402
