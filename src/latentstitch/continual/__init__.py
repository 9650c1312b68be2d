"""Continual learning: CaSpeR's spectral regulariser for rehearsal methods, and the ER vs
ER + CaSpeR experiment (``python run.py +experiment=casper``).

``spectral`` (pure torch) holds the loss; ``regularizer`` makes it a loss term or a Lightning
callback for any rehearsal model; ``buffer`` the reservoir replay buffer; ``er`` experience
replay, a small CNN and the class-incremental tasks; ``casper`` the experiment (``run(cfg)``).
"""

from latentstitch.continual.buffer import ReservoirBuffer
from latentstitch.continual.regularizer import CasperCallback, CasperRegularizer
from latentstitch.continual.spectral import casper_loss, knn_graph, laplacian_eigenvalues, normalized_laplacian, squared_distances

__all__ = [
    "CasperCallback",
    "CasperRegularizer",
    "ReservoirBuffer",
    "casper_loss",
    "knn_graph",
    "laplacian_eigenvalues",
    "normalized_laplacian",
    "squared_distances",
]
