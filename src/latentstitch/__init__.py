"""latentstitch: latent space translation and zero-shot model stitching."""

__version__ = "0.1.0"
