"""Evaluation metrics, separate from the verifiers that guide search."""
