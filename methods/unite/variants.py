"""UNITE's named variants: the paper model, the official code's settings and Table 3's ablations.

| name | alignment | injection | multi-stage |
| --- | --- | --- | --- |
| ``unite`` (= ``unite/seace+uot+ms``) | unbalanced OT, eta 1e-4 | SEACE | yes |
| ``unite-code`` | balanced OT, eps 0.025 (fnzhan/UNITE) | SEACE | yes |
| ``unite/spade`` | none | SPADE (labels) | - |
| ``unite/spade+cos`` | cosine, softmax temperature 0.01 | SPADE (warped + labels) | no |
| ``unite/spade+ot`` | balanced OT, eps 1e-4 | SPADE (warped + labels) | no |
| ``unite/spade+uot`` | unbalanced OT | SPADE (warped + labels) | no |
| ``unite/seace+uot`` | unbalanced OT | SEACE | no |

Transport on a grid 1/4 of the output (paper: 64x64 for 256x256), 128-d features.
"""

from __future__ import annotations

from evalkit.methods.registry import register_variant
from evalkit.methods.unite.model import UNITETranslator

_COMMON = dict(corr_ratio=0.25)
_FULL = dict(alignment="uot", injection="seace", multi_stage=True, ot_eps=1e-4)

VARIANTS = {
    "unite": (dict(_FULL), "UNITE (paper): unbalanced OT (eta 1e-4), multi-stage transport, SEACE"),
    "unite-code": (dict(_FULL, alignment="ot", ot_eps=0.025),
                   "UNITE as fnzhan/UNITE ships: balanced OT, eps 0.025, masses softmax(x_i . mean z)"),
    "unite/spade": (dict(alignment="none", injection="spade", multi_stage=False),
                    "UNITE Table 3: SPADE baseline, no alignment"),
    "unite/spade+cos": (dict(alignment="cosine", injection="concat", multi_stage=False, temperature=0.01),
                        "UNITE Table 3: SPADE + cosine alignment"),
    "unite/spade+ot": (dict(alignment="ot", injection="concat", multi_stage=False, ot_eps=1e-4),
                       "UNITE Table 3: SPADE + classical OT"),
    "unite/spade+uot": (dict(alignment="uot", injection="concat", multi_stage=False, ot_eps=1e-4),
                        "UNITE Table 3: SPADE + unbalanced OT"),
    "unite/seace+uot": (dict(alignment="uot", injection="seace", multi_stage=False, ot_eps=1e-4),
                        "UNITE Table 3: SEACE + unbalanced OT, single-stage"),
    "unite/seace+uot+ms": (dict(_FULL), "UNITE Table 3 last row: SEACE + UOT + multi-stage (= unite)"),
}

for _name, (_fields, _desc) in VARIANTS.items():
    register_variant(_name, UNITETranslator, description=_desc, **_COMMON, **_fields)
