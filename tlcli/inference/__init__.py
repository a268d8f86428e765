"""Evaluation and prediction: metrics, reports and batch inference."""
