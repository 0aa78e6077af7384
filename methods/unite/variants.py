"""UNITE's named variants: the paper model, the official code's settings and Table 3's ablations.

| name | alignment | masses | injection | multi-stage |
| --- | --- | --- | --- | --- |
| ``unite`` (= ``unite/seace+uot+ms``) | unbalanced OT, eta 1e-4 | eq. 3, positive, un-normalised (``eq3``) | SEACE | yes |
| ``unite-code`` | balanced OT, eps 0.025 (fnzhan/UNITE) | softmax (the code's) | SEACE | yes |
| ``unite/spade`` | none | - | SPADE (labels) + the exemplar's VAE style code | - |
| ``unite/spade+cos`` | cosine, softmax temperature 0.01 | - | SPADE (warped + labels) | no |
| ``unite/spade+ot`` | balanced OT, eps 1e-4 | uniform ("without learnt unbalanced weights", Fig. 7) | SPADE (warped + labels) | no |
| ``unite/spade+uot`` | unbalanced OT | ``eq3`` | SPADE (warped + labels) | no |
| ``unite/seace+uot`` | unbalanced OT | ``eq3`` | SEACE | no |

Transport on a grid 1/4 of the output (paper: 64x64 for 256x256), 128-d features. The
``-code`` variant follows the released code in the transport (balanced, eps 0.025, softmax
masses) and in the released ``train_ade.sh`` loss flags (``--warp_mask_losstype direct
--weight_mask 100``, ``--ctx_w 0.1``); it keeps evalkit's F_X / F_Z and SEACE (the code's
``--use_coordconv``, ``--adaptor_nonlocal``, ``--maskmix`` and non-local blocks are not built).
"""

from __future__ import annotations

from evalkit.methods.registry import register_variant
from evalkit.methods.unite.model import UNITETranslator

_COMMON = dict(corr_ratio=0.25)
_FULL = dict(alignment="uot", injection="seace", multi_stage=True, ot_eps=1e-4)

VARIANTS = {
    "unite": (dict(_FULL), "UNITE (paper): unbalanced OT (eta 1e-4), multi-stage transport, SEACE"),
    "unite-code": (dict(_FULL, alignment="ot", ot_eps=0.025, ot_masses="softmax", losses={"mask": 100.0}),
                   "UNITE as fnzhan/UNITE ships: balanced OT, eps 0.025, masses softmax(x_i . mean z)"),
    "unite/spade": (dict(alignment="none", injection="spade", multi_stage=False),
                    "UNITE Table 3: SPADE baseline, no alignment, style injected from the exemplar (VAE code)"),
    "unite/spade+cos": (dict(alignment="cosine", injection="concat", multi_stage=False, temperature=0.01),
                        "UNITE Table 3: SPADE + cosine alignment"),
    "unite/spade+ot": (dict(alignment="ot", injection="concat", multi_stage=False, ot_eps=1e-4, ot_masses="uniform"),
                       "UNITE Table 3: SPADE + classical OT (uniform masses)"),
    "unite/spade+uot": (dict(alignment="uot", injection="concat", multi_stage=False, ot_eps=1e-4),
                        "UNITE Table 3: SPADE + unbalanced OT"),
    "unite/seace+uot": (dict(alignment="uot", injection="seace", multi_stage=False, ot_eps=1e-4),
                        "UNITE Table 3: SEACE + unbalanced OT, single-stage"),
    "unite/seace+uot+ms": (dict(_FULL), "UNITE Table 3 last row: SEACE + UOT + multi-stage (= unite)"),
}

for _name, (_fields, _desc) in VARIANTS.items():
    register_variant(_name, UNITETranslator, description=_desc, **_COMMON, **_fields)
