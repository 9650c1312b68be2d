"""Encoders: the model zoo, Lightning training and latent extraction, and cached spaces."""

from latentstitch.encoders.spaces import Space, SpaceBuilder, dataset_spec, encoder_spec
from latentstitch.encoders.zoo import build_encoder, encoder_label

__all__ = ["Space", "SpaceBuilder", "build_encoder", "dataset_spec", "encoder_label", "encoder_spec"]
