"""Training: models, the Outlier Exposure loss, the training loop, run directories, checkpoints."""
