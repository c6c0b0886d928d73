"""Model families, each adapted once onto the denoiser contract (`inference_scaling.denoiser`)."""
