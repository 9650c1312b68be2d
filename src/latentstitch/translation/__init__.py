"""Latent space translation: scaling and closed-form translators. Pure torch, no Hydra."""

from latentstitch.translation.scaling import StandardScaling, make_scaling
from latentstitch.translation.translators import (
    TRANSLATORS,
    AffineTranslator,
    IdentityTranslator,
    LinearTranslator,
    LOrthoTranslator,
    OrthoTranslator,
    TranslationError,
    Translator,
)

__all__ = [
    "TRANSLATORS",
    "AffineTranslator",
    "IdentityTranslator",
    "LinearTranslator",
    "LOrthoTranslator",
    "OrthoTranslator",
    "StandardScaling",
    "TranslationError",
    "Translator",
    "make_scaling",
]
