"""Hydra configs (the project's conf/ folder), shipped in the package as inference_scaling.conf."""
