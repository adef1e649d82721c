"""Training jobs: one template (load, split, fit, evaluate, log, register, promote) and its uses."""
