"""Reference statistics: a real image set's Inception features, kept in one ``.npz`` so
outputs can be evaluated (FID, KID, prdc) without the real images.

``evalkit stats build`` writes, atomically, an ``.npz`` holding

- ``mu`` ``[D]``, ``sigma`` ``[D, D]`` (float64, ``ddof=1``): the Gaussian of FID
  (Heusel et al. 2017, Eq. 6), under the names pytorch-fid and clean-fid use;
- ``features`` ``[N, D]`` (float32, as the feature cache holds them, in the order the real
  set is read): what KID's subsets (Bińkowski et al. 2018) and the k-NN radii of
  precision/recall/density/coverage need, and what makes ``--real-stats`` give exactly the
  numbers of ``--real`` (the same arrays enter the same functions);
- ``evalkit_stats``: one JSON text with ``format``, ``version``, ``protocol`` (the Protocol
  fields that apply to the real side: ``metric_variant`` (FID mode), ``resolution``,
  ``resize``, ``real_resize``, ``image_format``, ``backbone``, ``weights_sha256``,
  ``n_images``, ``metric_seed``, ``library_versions``, ``evalkit_version``, ``comparable``,
  and ``protocol``: the ``--protocol`` preset, ``clean`` by default), ``manifest`` (file name →
  sha256 of the file's bytes, in feature order) and ``source`` (the ``--real`` given).

:func:`check_requested` / :func:`check_backbone` refuse a file whose protocol differs from
the evaluation's on any field of :data:`COMPARED`, with one line naming the fields.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from evalkit.errors import EvalkitError

FORMAT = "evalkit-reference-stats"
VERSION = 1
HEADER = "evalkit_stats"
# Protocol fields that change the real set's features: a stats file differing on one is refused.
COMPARED = ("metric_variant", "resolution", "resize", "real_resize", "backbone", "weights_sha256", "protocol")
# How to ask for a field's value, for the refusal's fix.
_HOW = {"metric_variant": "--fid-mode", "real_resize": "--real-size/--real-filter", "protocol": "--protocol",
        "weights_sha256": "--weights/--seed", "backbone": "--weights/--fid-mode"}


@dataclass(frozen=True)
class ReferenceStats:
    """The Inception statistics of one real image set (see the module docstring)."""

    features: np.ndarray  # [N, D] float32
    mu: np.ndarray  # [D] float64
    sigma: np.ndarray  # [D, D] float64
    protocol: dict
    manifest: dict[str, str] = field(default_factory=dict)  # name -> sha256 of the file
    source: str = ""
    path: Path | None = None

    @property
    def n(self) -> int:
        return int(self.features.shape[0])

    def where(self) -> str:
        return str(self.path) if self.path is not None else "reference statistics"


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def preset_name(options) -> str:
    """The ``--protocol`` preset of ``options`` (:mod:`evalkit.protocols`; ``clean`` by default)."""
    return str(getattr(options, "protocol", None) or "clean")


def real_protocol(net, options, *, real_resize: str, image_format: str, n_images: int) -> dict:
    """The protocol fields of a real set embedded by ``net`` (an :class:`InceptionFID`)."""
    from evalkit.protocol import Protocol

    p = Protocol(resolution=net.resolution, resize=net.resize, image_format=image_format, backbone=net.backbone,
                 weights_sha256=net.weights_id, n_images=n_images, metric_seed=options.seed,
                 real_resize=real_resize).as_columns()
    return {"metric_variant": options.fid_mode, **p, "protocol": preset_name(options)}


def build(real, options, *, recursive: bool = False, real_size: int | None = None, real_filter: str = "bicubic",
          progress: bool = False, backbones: dict | None = None) -> ReferenceStats:
    """Embed the real images ``real`` (a folder, a glob or ``DATASET:ROOT[:SPLIT]``, read and
    resized exactly as ``evaluate --real`` reads them) with the Inception of ``options``
    (:class:`evalkit.metrics.options.EvaluationOptions`; ``backbones`` may inject an
    ``inception`` module, as for :func:`evalkit.metrics.evaluate_arrays`) through the feature cache."""
    from evalkit.features import FeatureCache
    from evalkit.images import image_format, resize_tag, resolve_images
    from evalkit.metrics import registry
    from evalkit.metrics.evaluate import check_real_size, real_images
    from evalkit.metrics.fid import embed_images
    from evalkit.progress import Progress

    options = options.check()
    check_real_size(real_size, real_filter)
    real_size, real_filter = _preset_real_size(options, real_size, real_filter)
    images = resolve_images(real, recursive=recursive)
    decoded = real_images(images, real_size, real_filter, preset_name(options))  # validates every file first
    if len(decoded) < 2:
        raise EvalkitError(f"{real}: {len(decoded)} image; reference statistics need at least 2 (FID's covariance)")
    manifest = {name: file_sha256(p) for name, p in zip(images.names, images.files)}
    net = registry.build_backbones(["fid"], options, options.device, have=backbones)["inception"]
    with Progress(progress) as bars:  # the stack `evaluate --real` reads: same hashes, same batches
        feats = embed_images(decoded, decoded.hashes, net, FeatureCache(options.cache_root),
                             advance=bars.task("Inception features", len(decoded)))
    features = np.stack(feats)
    registry.check_finite(features, "real set features", "stats build")
    f64 = features.astype(np.float64)
    from evalkit import protocols

    fmt = protocols.format_tag(preset_name(options), "real", "+".join(sorted({image_format(p) for p in images.files})))
    protocol = real_protocol(net, options, real_resize=resize_tag(real_size, real_filter), image_format=fmt,
                             n_images=len(features))
    return ReferenceStats(features, f64.mean(0), np.cov(f64, rowvar=False), protocol, manifest, str(real))


def _preset_real_size(options, real_size: int | None, real_filter: str) -> tuple[int | None, str]:
    """How the preset of ``options`` resizes real images: a paper preset resizes them to the
    generated images' side, which a real set alone does not know (``--real-size`` says it)."""
    from evalkit import protocols

    name = preset_name(options)
    if protocols.get(name).real_resize is not None and real_size is None:
        raise EvalkitError(f"protocol {name} resizes the real images to the generated images' size; pass "
                           "--real-size N (the side of the outputs you will evaluate, e.g. 256)")
    return protocols.real_size(name, real_size, real_filter, real_size)


def save(stats: ReferenceStats, path: str | Path) -> Path:
    """Write ``stats`` to ``path`` (``.npz``) atomically: a complete file or none."""
    from evalkit.files import atomic_path

    header = {"format": FORMAT, "version": VERSION, "protocol": stats.protocol, "manifest": stats.manifest,
              "source": stats.source}
    with atomic_path(path) as tmp, open(tmp, "wb") as f:  # a file object: np.savez(path) would add ".npz"
        np.savez(f, **{HEADER: np.array(json.dumps(header)), "mu": stats.mu, "sigma": stats.sigma,
                       "features": stats.features})
    return Path(path)


def load(path: str | Path) -> ReferenceStats:
    """The stats of ``path``, validated; one :class:`EvalkitError` for a missing, corrupt,
    foreign (e.g. a clean-fid ``mu``/``sigma`` file) or inconsistent file."""
    path = Path(path)
    fix = "build one with `evalkit stats build --real DIR --out FILE.npz`"
    if not path.is_file():
        raise EvalkitError(f"{path}: {'is a folder' if path.is_dir() else 'not found'}; expected a reference-"
                           f"statistics .npz ({fix})", path=path)
    try:
        with np.load(path, allow_pickle=False) as z:
            keys = set(z.files)
            if HEADER not in keys:
                raise EvalkitError(f"{path}: not an evalkit reference-statistics file (entries: "
                                   f"{', '.join(sorted(keys)) or 'none'}; no '{HEADER}'); {fix}", path=path)
            header = json.loads(str(z[HEADER][()]))
            arrays = {k: z[k] for k in ("mu", "sigma", "features") if k in keys}
    except EvalkitError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError, TypeError) as err:
        raise EvalkitError(f"{path}: unreadable reference-statistics file ({type(err).__name__}: "
                           f"{' '.join(str(err).split())[:120]}); {fix}", path=path) from err
    problem = _problem(header, arrays)
    if problem:
        raise EvalkitError(f"{path}: corrupt reference-statistics file: {problem}; {fix}", path=path)
    return ReferenceStats(arrays["features"], arrays["mu"], arrays["sigma"], header["protocol"],
                          header["manifest"], header.get("source", ""), path)


def _problem(header, arrays: dict) -> str | None:
    """What is wrong with a loaded header and its arrays, or None."""
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        return f"'{HEADER}' is not an {FORMAT} header"
    if header.get("version") != VERSION:
        return f"version {header.get('version')!r}, this evalkit reads version {VERSION}"
    missing = [k for k in ("mu", "sigma", "features") if k not in arrays]
    if missing:
        return f"no {', '.join(missing)} array"
    protocol, manifest = header.get("protocol"), header.get("manifest")
    if not isinstance(protocol, dict) or any(k not in protocol for k in (*COMPARED, "n_images")):
        return "its protocol lacks fields"
    if not isinstance(manifest, dict):
        return "no manifest"
    f, mu, sigma = arrays["features"], arrays["mu"], arrays["sigma"]
    if f.ndim != 2 or f.shape[0] < 2 or mu.shape != (f.shape[1],) or sigma.shape != (f.shape[1],) * 2:
        return (f"array shapes disagree (features {list(f.shape)}, mu {list(mu.shape)}, sigma {list(sigma.shape)})")
    if not all(np.issubdtype(a.dtype, np.floating) for a in (f, mu, sigma)):
        return "non-float arrays"
    if not (np.isfinite(f).all() and np.isfinite(mu).all() and np.isfinite(sigma).all()):
        return "non-finite values"
    if len(manifest) != f.shape[0] or protocol["n_images"] != f.shape[0]:
        return f"{f.shape[0]} feature rows for {len(manifest)} manifest entries (n_images {protocol['n_images']})"
    f64 = f.astype(np.float64)
    scale = float(np.abs(f64).max()) or 1.0
    if not np.allclose(mu, f64.mean(0), rtol=1e-9, atol=1e-9 * scale):
        return "mu is not the mean of the features"
    trace = float(((f64 - f64.mean(0)) ** 2).sum() / (len(f64) - 1))
    if not np.isclose(float(np.trace(sigma)), trace, rtol=1e-6, atol=1e-9 * scale ** 2):
        return "sigma is not the covariance of the features"
    return None


def _refuse(stats: ReferenceStats, differing: list[tuple[str, object, object]]) -> EvalkitError:
    parts = [f"{name} is {have!r} in the file, {want!r} here" for name, have, want in differing]
    hows = [_HOW[name] for name, _, _ in differing if name in _HOW]
    return EvalkitError(f"{stats.where()}: built under another protocol: {'; '.join(parts)}; rebuild it with "
                        f"`evalkit stats build` under this protocol or evaluate with the file's "
                        f"{'/'.join(dict.fromkeys(hows)) or 'options'}", path=stats.path)


def check_requested(stats: ReferenceStats, options, *, real_resize: str, weights: bool = True) -> None:
    """Refuse ``stats`` when it differs from what ``options`` ask on a field known before any
    backbone is built: FID mode, real resize, preset and, with ``weights`` (False when the
    caller injects its own network), random vs pretrained weights and the random seed. A
    user weights file (``--weights-file``) is compared once built (:func:`check_backbone`)."""
    from evalkit.protocol import random_init_tag

    p = stats.protocol
    want = {"metric_variant": options.fid_mode, "real_resize": real_resize, "protocol": preset_name(options)}
    differing = [(k, p.get(k), v) for k, v in want.items() if p.get(k) != v]
    have_w = str(p.get("weights_sha256"))
    if weights and not getattr(options, "weights_files", None):
        if options.weights == "random" and have_w != random_init_tag(options.seed):
            differing.append(("weights_sha256", have_w, random_init_tag(options.seed)))
        elif options.weights != "random" and have_w.startswith("random-init"):
            differing.append(("weights_sha256", have_w, "pretrained"))
    if differing:
        raise _refuse(stats, differing)


def check_backbone(stats: ReferenceStats, net, options) -> None:
    """Refuse ``stats`` when the built Inception ``net`` would not reproduce its features."""
    want = {"resolution": net.resolution, "resize": net.resize, "backbone": net.backbone,
            "weights_sha256": net.weights_id}
    differing = [(k, stats.protocol.get(k), v) for k, v in want.items() if stats.protocol.get(k) != v]
    if differing:
        raise _refuse(stats, differing)
