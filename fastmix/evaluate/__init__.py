"""Evaluation: logits of every set, anomaly scores, OOD metrics, calibration -> results.json."""
