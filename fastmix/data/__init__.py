"""From betons to batches: FFCV loaders and the training streams (augmented views, outliers)."""
