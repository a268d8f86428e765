"""Augmentation: its settings, the in-pipeline augmenter and its previews."""
