"""RABIT's named variants: the paper model, the official code's settings, Fig. 6's ablations, manipulation.

| name | alignment (grid / output) | position | injection |
| --- | --- | --- | --- |
| ``rabit`` | RAS, 2x2 blocks, OT top-k k=3 (1/2: 128 for 256) | SPE | CONFI |
| ``rabit-code`` | RAS, hard top-k k=1, softmax(100 cos) retrieval (1/2) | global CoordConv | CONFI |
| ``rabit/baseline-cos`` | dense cosine (1/4: 64 for 256) | none | warped + labels |
| ``rabit/ras`` | RAS (1/2) | none | warped + labels |
| ``rabit/coord+ras`` | RAS (1/2) | global CoordConv (the paper's "vanilla position encoding") | warped + labels |
| ``rabit/spe`` | dense cosine (1/4) | SPE | warped + labels |
| ``rabit/spe+ras`` | RAS (1/2) | SPE | warped + labels |
| ``rabit/manipulation`` | as ``rabit``, trained on self-reference pairs only | SPE | CONFI |

Fig. 6 compares warped exemplars, so its ablations keep one generator; evalkit's keep
CoCosNet's injection (warped exemplar concatenated with the labels), which makes
``rabit/spe+ras`` vs ``rabit`` the CONFI ablation and ``rabit/coord+ras`` vs
``rabit/spe+ras`` the SPE-vs-vanilla-position ablation (RABIT §3.1, Fig. 3).

``rabit-code`` follows fnzhan/RABIT in the retrieval (``softmax(100 cos)``, one block, as
``RankNet``), the global CoordConv position channels (``--use_coordconv``; 2 channels here,
the code adds a radius channel) and the ``train_ade.sh`` loss flags (``--warp_mask_losstype
direct --weight_mask 100``, ``--ctx_w 0.1``); it keeps evalkit's F_X / F_Z, CONFI and
generator (the code's two-level 64/128 warps, ``--maskmix``, ``--adaptor_nonlocal`` and
non-local blocks are not built).
"""

from __future__ import annotations

from evalkit.methods.rabit.model import RABITTranslator
from evalkit.methods.registry import register_variant

_RAS = dict(alignment="ras", block=2, topk=3, retrieval="ot", corr_ratio=0.5)
_COS = dict(alignment="cosine", corr_ratio=0.25)

VARIANTS = {
    "rabit": (dict(_RAS, position="spe", injection="confi"), "RABIT (paper): RAS k=3 at 128x128, SPE, CONFI"),
    "rabit-code": (dict(_RAS, topk=1, retrieval="softmax", temperature=0.01, position="coord", injection="confi",
                        losses={"mask": 100.0}),
                   "RABIT as fnzhan/RABIT ships: softmax(100 cos) retrieval, k=1, global CoordConv"),
    "rabit/baseline-cos": (dict(_COS, position="none", injection="concat"), "RABIT Fig. 6 Baseline: dense cosine at 64x64"),
    "rabit/ras": (dict(_RAS, position="none", injection="concat"), "RABIT Fig. 6: RAS at 128x128, no position encoding"),
    "rabit/coord+ras": (dict(_RAS, position="coord", injection="concat"),
                        "RABIT §3.1: RAS + the vanilla position encoding (global CoordConv), to compare with SPE"),
    "rabit/spe": (dict(_COS, position="spe", injection="concat"), "RABIT Fig. 6: dense cosine at 64x64 + SPE"),
    "rabit/spe+ras": (dict(_RAS, position="spe", injection="concat"), "RABIT Fig. 6: SPE + RAS (no CONFI)"),
    "rabit/manipulation": (dict(_RAS, position="spe", injection="confi", self_ref_mode="always"),
                           "RABIT image manipulation: exemplar = original image, condition = edited label map"),
}

for _name, (_fields, _desc) in VARIANTS.items():
    register_variant(_name, RABITTranslator, description=_desc, **_fields)
