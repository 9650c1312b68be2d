"""Latent space translation: scaling and closed-form translators. Pure torch, no Hydra."""

from latentstitch.translation.protocol import Method, ProjectingMethod, TranslatingMethod
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
    "Method",
    "ProjectingMethod",
    "TranslatingMethod",
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

# the relative-representation family and anchor-free translation (imported after TranslationError)
from latentstitch.translation.relative import (  # noqa: E402
    InverseRelativeTranslator,
    RelativeDecoderInput,
    RelativeProjection,
    RelativeStitching,
    farthest_point_sampling,
    kmeans,
)
from latentstitch.translation.unsupervised import UnsupervisedTranslator  # noqa: E402

# methods beside TRANSLATORS: config name -> class (projection methods train the decoder on the
# target's projection; unpaired ones fit on two unpaired samples instead of parallel anchors)
METHODS = {
    "relative": RelativeStitching,
    "inverse_relative": InverseRelativeTranslator,
    "unsupervised": UnsupervisedTranslator,
}

__all__ += [
    "METHODS",
    "InverseRelativeTranslator",
    "RelativeDecoderInput",
    "RelativeProjection",
    "RelativeStitching",
    "UnsupervisedTranslator",
    "farthest_point_sampling",
    "kmeans",
]
