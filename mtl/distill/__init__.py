"""The distillation proxy: score a partition by how well a partitioned student reproduces single-task teachers.

teachers.py (load single-task runs), features.py (teacher stages computed once), student.py (P partitioned
students stacked), sgd.py (their per-task optimizer), proxy.py (schedule, training and scoring),
population.py (P candidates in one process), objective.py (`ProxyObjective`, the search's "proxy",
registered in mtl.meta.objectives.OBJECTIVES), validation.py (rank correlation of proxy vs full training).
"""
