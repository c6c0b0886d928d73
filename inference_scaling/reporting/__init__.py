"""Everything that writes or logs: result files, image grids, W&B, scaling-curve figures."""
