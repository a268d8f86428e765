"""Backbones, their weights, tlcli's layers, classifiers and feature extraction."""
