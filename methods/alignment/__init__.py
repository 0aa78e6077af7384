"""Alignment core shared by RABIT, UNITE and CoCosNet: correspondences and their solvers.

``from evalkit.methods.alignment import ...``: see docs/alignment.md.
"""

from evalkit.methods.alignment.confidence import peak_correlation
from evalkit.methods.alignment.correspondence import (BlockCorrespondence, Correspondence,
                                              DenseCorrespondence, PotentialCorrespondence)
from evalkit.methods.alignment.cosine import cosine_similarity, dense_cosine_attention
from evalkit.methods.alignment.position import coord_grid, semantic_position_encoding
from evalkit.methods.alignment.ranking import RankingAttention
from evalkit.methods.alignment.topk import (hard_topk_straight_through, ot_topk, ot_topk_largest,
                                            ot_topk_largest_of_products)
from evalkit.methods.alignment.transport import (TransportPotentials, UnbalancedTransport,
                                         balanced_sinkhorn, cosine_cost, transport_apply,
                                         unbalanced_sinkhorn, unbalanced_sinkhorn_streaming,
                                         unite_masses)

__all__ = [
    "Correspondence", "DenseCorrespondence", "BlockCorrespondence", "PotentialCorrespondence",
    "dense_cosine_attention", "cosine_similarity", "RankingAttention", "ot_topk", "ot_topk_largest",
    "ot_topk_largest_of_products",
    "hard_topk_straight_through", "unbalanced_sinkhorn", "balanced_sinkhorn",
    "unbalanced_sinkhorn_streaming", "transport_apply", "unite_masses", "cosine_cost",
    "TransportPotentials", "UnbalancedTransport", "semantic_position_encoding", "coord_grid",
    "peak_correlation",
]
