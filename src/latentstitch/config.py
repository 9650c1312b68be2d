"""OmegaConf resolvers used by the configs (registered before Hydra composes anything)."""

from omegaconf import OmegaConf


def register_resolvers() -> None:
    """``${floordiv:a,b}``: integer division, e.g. a ViT patch size that fits the image size."""
    if not OmegaConf.has_resolver("floordiv"):
        OmegaConf.register_new_resolver("floordiv", lambda a, b: int(a) // int(b))
