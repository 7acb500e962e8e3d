"""Training: the run's options, the (seed, step)-pure batches, the run directory, the loop."""
