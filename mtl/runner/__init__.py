"""Running jobs in their run folders: the command line's launch, nested runs, child runs in worker processes."""
