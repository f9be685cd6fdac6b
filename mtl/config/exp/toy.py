"""Toy two-task synthetic job that tests the runner in seconds: python main.py -e toy --config exp.toy"""

JOB = "toy"
OPTIONS = dict(num_rounds=4, train_iters=50)
