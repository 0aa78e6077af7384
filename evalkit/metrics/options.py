"""The evaluation options: one object shared by ``evalkit evaluate``, :func:`evaluate_folders`
and a run config's ``[evaluation]`` table, so every option of the CLI is reachable from a
config (``fid_mode = "legacy"``) and the metric seed lands in every number's Protocol."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from evalkit.errors import EvalkitError

WEIGHTS_CHOICES = ("pretrained", "random")
FID_MODES = ("clean", "legacy")


@dataclass(frozen=True)
class EvaluationOptions:
    """How a set of images is evaluated.

    metrics: metric families (:func:`evalkit.metrics.registry.families`); ``None``: all that apply.
    weights: ``pretrained`` (registered files, sha256-checked) or ``random`` (seeded, not comparable).
    fid_mode: ``clean`` (clean-fid) or ``legacy`` (pytorch-fid's Inception and resize).
    kid_subsets, kid_subset_size: KID's subset sampling (Binkowski et al. 2018).
    swd_shared_patches: SWD with one draw of patch centres for both sets (variant ``pggan-shared-patches``).
    seed: the metric seed: KID subsets, SWD patches and directions, random backbones.
    device: ``auto`` | ``cpu`` | ``cuda[:N]`` for the backbones.
    cache_dir: the feature cache folder (``None``: ``$EVALKIT_CACHE`` or ``~/.cache/evalkit/features``).
    cache: ``False`` neither reads nor writes the feature cache.
    protocol: the evaluation preset (:mod:`evalkit.protocols`, ``evalkit protocols``):
        ``clean`` (evalkit's own, every option as given) or an as-published one
        (``cocosnet2020``, ``unite2021``, ``rabit2022``) that pins FID mode, codecs, real
        resize, SWD, LPIPS and consistency as the official scripts had them.
    weights_files: weights registry key -> a file the registry does not know
        (``--weights-file KEY=PATH``), loaded strictly into that backbone's architecture and
        recorded as ``unregistered:<sha256>``.
    """

    metrics: tuple[str, ...] | None = None
    weights: str = "pretrained"
    fid_mode: str = "clean"
    kid_subsets: int = 100
    kid_subset_size: int = 1000
    swd_shared_patches: bool = False
    seed: int = 0
    device: str = "auto"
    cache_dir: Path | None = None
    cache: bool = True
    protocol: str = "clean"
    weights_files: dict = field(default_factory=dict)

    def problems(self) -> list[str]:
        """One line per invalid field (``field: what is wrong``); empty when valid."""
        from evalkit.metrics import registry

        out = []
        known = registry.families()
        for m in self.metrics or ():
            if m not in known:
                out.append(f"metrics: unknown metric {m!r} (choose from: {', '.join(known)})")
        if self.weights not in WEIGHTS_CHOICES:
            out.append(f"weights: expected one of {', '.join(WEIGHTS_CHOICES)}, got {self.weights!r}")
        if self.fid_mode not in FID_MODES:
            out.append(f"fid_mode: expected one of {', '.join(FID_MODES)}, got {self.fid_mode!r}")
        for name in ("kid_subsets", "kid_subset_size"):
            if getattr(self, name) < 1:
                out.append(f"{name}: must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.seed < 2 ** 32:  # KID's np.random.RandomState takes 32-bit seeds
            out.append(f"seed: must be an integer in [0, 2**32), got {self.seed}")
        from evalkit.devices import resolve_device

        try:
            resolve_device(self.device, option="device")
        except EvalkitError as err:
            out.append(str(err))
        from evalkit import protocols
        from evalkit.weights import REGISTRY

        out += protocols.problems(self)
        for key, path in (self.weights_files or {}).items():
            if key not in REGISTRY:
                out.append(f"weights_files: unknown weights key {key!r} (choose from: {', '.join(REGISTRY)})")
            elif not isinstance(path, (str, Path)) or not Path(path).is_file():
                out.append(f"weights_files.{key}: file {str(path)!r} does not exist")
        return out

    def check(self) -> "EvaluationOptions":
        """``self`` with the protocol's pins applied (:func:`evalkit.protocols.resolve`: a paper
        preset's FID mode), or one :class:`EvalkitError` naming the first invalid field."""
        problems = self.problems()
        if problems:
            raise EvalkitError(f"evaluation option {problems[0]}")
        from evalkit import protocols

        return protocols.resolve(self)

    def replace(self, **changes) -> "EvaluationOptions":
        return dataclasses.replace(self, **changes)

    @property
    def cache_root(self) -> Path | None:
        """The cache folder in use, ``None`` when caching is off."""
        if not self.cache:
            return None
        from evalkit.features import default_cache_dir

        return Path(self.cache_dir) if self.cache_dir is not None else default_cache_dir()


def options_from(options: EvaluationOptions | None = None, **fields) -> EvaluationOptions:
    """``options`` (default: the defaults) with ``fields`` replaced; ``cache_dir=False`` means
    ``cache=False`` (the keyword spelling of ``--no-cache``). Unknown fields are an error."""
    options = options or EvaluationOptions()
    names = {f.name for f in dataclasses.fields(EvaluationOptions)}
    unknown = sorted(set(fields) - names)
    if unknown:
        raise TypeError(f"unknown evaluation option(s) {unknown}; known: {sorted(names)}")
    if fields.get("cache_dir", None) is False:
        fields["cache_dir"], fields["cache"] = None, False
    if fields.get("metrics") is not None:
        fields["metrics"] = tuple(m.lower() for m in fields["metrics"])
    return dataclasses.replace(options, **fields)
