"""Meta-optimization: search spaces, optimizers, objectives, workers, results store, search loop, reports."""
