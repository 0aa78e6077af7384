"""Benchmark run configs: TOML or YAML → typed, validated dataclasses.

A config names datasets × variants × seeds and how to evaluate and report them::

    name = "tiny-ci"            # run folder: <out>/<name>/
    out = "runs"
    seeds = [0]

    [[datasets]]
    name = "shapes"             # evalkit.data registry; `root` for the real datasets
    size = 32
    n_train = 32
    n_test = 8
    options = { exemplars_per_query = 2 }

    [[variants]]
    name = "spade"              # methods registry, or a reference output (reference/blur, ...)
    preset = "tiny"
    steps = 4
    batch_size = 4
    # checkpoint = "ckpt.pt"    # load instead of training
    # overrides = { ngf = 16 }  # TranslatorConfig fields

    [evaluation]                # evalkit.metrics.options.EvaluationOptions: the options of `evalkit evaluate`
    metrics = ["fid", "ssim"]   # metric families (default: every one that applies)
    weights = "random"          # or "pretrained"
    # fid_mode = "legacy"; kid_subsets = 100; kid_subset_size = 1000; swd_shared_patches = false; seed = 0

    [report]
    paper_datasets = { shapes = "ADE20K" }
    baseline = "runs/previous"  # optional regression gate (run id, run folder or results.csv)
    policy = "configs/policy.toml"

:func:`load_config` reports *every* problem at once, one line each
(``<file>: <field>: <what is wrong>``), by raising :class:`ConfigError`; it never writes.
Relative paths are relative to the working directory.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

from evalkit.errors import EvalkitError
from evalkit.metrics.options import EvaluationOptions


def __getattr__(name: str):
    """``REFERENCE_VARIANTS``: the reference outputs registered in the methods registry (read lazily)."""
    if name == "REFERENCE_VARIANTS":
        from evalkit.methods.registry import is_reference, list_variants

        return tuple(v for v in list_variants(trainable=False) if is_reference(v))
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

FORMATS = ("md", "html", "tex", "csv")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class ConfigError(EvalkitError):
    """A config with one or more problems; ``problems`` holds one line per problem."""

    def __init__(self, path: str | Path, problems: list[str]):
        self.problems = [f"{path}: {p}" for p in problems]
        super().__init__(f"{len(problems)} problem(s) in config {path}: " + "; ".join(problems), path=path)


@dataclass(frozen=True)
class DatasetConfig:
    """One dataset of the benchmark (``evalkit.data.get_dataset`` arguments)."""

    name: str
    root: Path | None = None
    size: int = 64
    n_train: int = 64
    n_test: int = 16
    options: dict = field(default_factory=dict)  # extra get_dataset keywords (exemplars_per_query, ...)


@dataclass(frozen=True)
class VariantConfig:
    """One translator variant: trained for ``steps`` (or loaded from ``checkpoint``)."""

    name: str
    preset: str = "tiny"
    steps: int = 100
    batch_size: int = 4
    checkpoint: Path | None = None
    overrides: dict = field(default_factory=dict)

    @property
    def is_reference(self) -> bool:
        from evalkit.methods.registry import is_reference

        return is_reference(self.name)


@dataclass(frozen=True)
class ReportConfig:
    formats: tuple[str, ...] = FORMATS
    examples: int = 4
    paper_datasets: dict = field(default_factory=dict)  # ours → paper dataset name
    history: Path | None = None  # default: <out>/history.sqlite
    baseline: str | None = None
    policy: Path | None = None


@dataclass(frozen=True)
class RunConfig:
    name: str
    datasets: tuple[DatasetConfig, ...]
    variants: tuple[VariantConfig, ...]
    out: Path = Path("runs")
    seeds: tuple[int, ...] = (0,)
    device: str = "cpu"
    evaluation: EvaluationOptions = EvaluationOptions()
    report: ReportConfig = ReportConfig()

    @property
    def run_dir(self) -> Path:
        return self.out / self.name

    @property
    def history_path(self) -> Path:
        return self.report.history or self.out / "history.sqlite"

    def as_dict(self) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(self), default=str))

    def hash(self) -> str:
        """sha256 of the canonical JSON of the config (what the run computes, not where it writes)."""
        d = self.as_dict()
        d.pop("out", None)
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()


# -- generic typed parsing -------------------------------------------------------------

def _type_name(tp) -> str:
    origin = typing.get_origin(tp)
    if origin in (types.UnionType, typing.Union):
        return " or ".join(_type_name(a) for a in typing.get_args(tp) if a is not type(None))
    if origin is tuple:
        return f"list of {_type_name(typing.get_args(tp)[0])}s"
    if dataclasses.is_dataclass(tp):
        return "table"
    return {str: "string", int: "integer", float: "number", bool: "true/false", dict: "table", Path: "path"}.get(tp, str(tp))


_BAD = object()  # a value that failed to parse (already reported)


def _convert(value, tp, where: str, problems: list[str]):
    origin = typing.get_origin(tp)
    if origin in (types.UnionType, typing.Union):
        if value is None:
            return None
        return _convert(value, [a for a in typing.get_args(tp) if a is not type(None)][0], where, problems)
    if origin is tuple:
        if not isinstance(value, list):
            problems.append(f"{where}: expected a {_type_name(tp)}, got {value!r}")
            return _BAD
        items = [_convert(v, typing.get_args(tp)[0], f"{where}[{i}]", problems) for i, v in enumerate(value)]
        return tuple(v for v in items if v is not _BAD)
    if dataclasses.is_dataclass(tp):
        return _parse(tp, value, where, problems)
    ok = {
        str: isinstance(value, str),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, (int, float)) and not isinstance(value, bool),
        bool: isinstance(value, bool),
        dict: isinstance(value, dict),
        Path: isinstance(value, str) and value != "",
    }[tp]
    if not ok:
        problems.append(f"{where}: expected {_type_name(tp)}, got {value!r}")
        return _BAD
    return Path(value) if tp is Path else (float(value) if tp is float else value)


def _parse(cls, data, where: str, problems: list[str]):
    """Build ``cls`` from ``data``; a bad optional field falls back to its default (and is
    reported), so that the later checks still see the rest; a bad required field → ``_BAD``."""
    prefix = f"{where}." if where else ""
    if not isinstance(data, dict):
        problems.append(f"{where or 'config'}: expected a table, got {data!r}")
        return _BAD
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in data:
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1)
            problems.append(f"{prefix}{key}: unknown field" + (f" (did you mean {close[0]!r}?)" if close else
                                                              f" (known: {', '.join(names)})"))
    kwargs, complete = {}, True
    for f in dataclasses.fields(cls):
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if f.name not in data:
            if required:
                problems.append(f"{prefix}{f.name}: required field is missing")
                complete = False
            continue
        value = _convert(data[f.name], hints[f.name], f"{prefix}{f.name}", problems)
        if value is not _BAD:
            kwargs[f.name] = value
        elif required:
            complete = False
    return cls(**kwargs) if complete else _BAD


# -- semantic checks ---------------------------------------------------------------------

def _translator_builder(cfg: RunConfig, problems: list[str]):
    """``check(variant, i, dataset) -> problem or None``: build the variant's translator for the
    dataset's channels on the meta device (nothing allocated), so that every config that
    cannot build is reported now, not at training time. Datasets that cannot be built are
    reported once here (``datasets[i]: ...``); those already reported (unknown name,
    missing root, too small) are skipped."""
    import torch

    from evalkit.data import dataset_spec, get_dataset, list_datasets
    from evalkit.methods.registry import build_translator

    channels: dict[int, int | None] = {}
    results: dict[str, str | None] = {}

    def cond_channels(i: int, d: DatasetConfig) -> int | None:
        if i not in channels:
            channels[i] = None
            spec = dataset_spec(d.name) if d.name in list_datasets() else None
            if spec is not None and d.size >= 8 and not (spec.needs_root and (d.root is None or not d.root.is_dir())):
                try:
                    channels[i] = get_dataset(d.name, root=d.root, split="test", size=d.size, n=max(1, d.n_test),
                                              seed=cfg.seeds[0] if cfg.seeds else 0, **d.options).cond_channels
                except (EvalkitError, TypeError, ValueError, OSError) as err:
                    problems.append(f"datasets[{i}]: cannot build dataset {d.name!r} with options {d.options}: {err}")
        return channels[i]

    def check(v: VariantConfig, i: int, d: DatasetConfig) -> str | None:
        ch = cond_channels(i, d)
        if ch is None:
            return None
        overrides = {"size": d.size, **v.overrides}
        key = json.dumps([v.name, v.preset, ch, overrides], sort_keys=True, default=str)
        if key not in results:
            try:
                with torch.device("meta"):
                    build_translator(v.name, cond_channels=ch, preset=v.preset, seed=0, **overrides)
                results[key] = None
            except (EvalkitError, TypeError, ValueError, RuntimeError) as err:
                results[key] = str(err)
        return results[key]

    return check


def _check(cfg: RunConfig, problems: list[str]) -> None:
    from evalkit.data import dataset_spec, list_datasets
    from evalkit.methods.config import PRESETS
    from evalkit.methods.registry import list_variants, variant_spec
    from evalkit.reports.paper_tables import DATASETS as PAPER_DATASETS

    if not _NAME_RE.match(cfg.name):
        problems.append(f"name: {cfg.name!r} must be a folder name (letters, digits, . _ -)")
    if not cfg.seeds:
        problems.append("seeds: give at least one seed")
    if len(set(cfg.seeds)) != len(cfg.seeds) or any(s < 0 for s in cfg.seeds):
        problems.append(f"seeds: must be distinct integers >= 0, got {list(cfg.seeds)}")
    from evalkit.devices import resolve_device

    try:
        resolve_device(cfg.device, option="device")
    except EvalkitError as err:
        problems.append(str(err))
    if not cfg.datasets:
        problems.append("datasets: give at least one [[datasets]] table")
    if not cfg.variants:
        problems.append("variants: give at least one [[variants]] table")
    known_ds = list_datasets()
    for i, d in enumerate(cfg.datasets):
        w = f"datasets[{i}]"
        if d.name not in known_ds:
            problems.append(f"{w}.name: unknown dataset {d.name!r} (choose one of: {', '.join(known_ds)})")
        elif dataset_spec(d.name).needs_root:
            if d.root is None:
                problems.append(f"{w}.root: dataset {d.name!r} needs a root folder ({dataset_spec(d.name).layout or 'see docs/data.md'})")
            elif not d.root.is_dir():
                problems.append(f"{w}.root: folder {str(d.root)!r} does not exist")
        if d.size < 8:
            problems.append(f"{w}.size: {d.size} is too small (at least 8 pixels)")
        if d.n_test < 2:
            problems.append(f"{w}.n_test: need at least 2 test images for set metrics, got {d.n_test}")
        if d.n_train < 1:
            problems.append(f"{w}.n_train: need at least 1 training sample, got {d.n_train}")
    if len({d.name for d in cfg.datasets}) != len(cfg.datasets):
        problems.append("datasets: each dataset may appear once")
    known_v = list_variants()
    built = _translator_builder(cfg, problems)
    for i, v in enumerate(cfg.variants):
        w = f"variants[{i}]"
        if v.name not in known_v:
            close = difflib.get_close_matches(v.name, known_v, n=1)
            problems.append(f"{w}.name: unknown variant {v.name!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
                            + f"; choose one of: {', '.join(sorted(known_v))}")
            continue
        if v.preset not in PRESETS:
            problems.append(f"{w}.preset: unknown preset {v.preset!r} (choose one of: {', '.join(PRESETS)})")
        if v.steps < 1 and not v.is_reference and v.checkpoint is None:
            problems.append(f"{w}.steps: must be >= 1 (or give a checkpoint), got {v.steps}")
        if v.batch_size < 1:
            problems.append(f"{w}.batch_size: must be >= 1, got {v.batch_size}")
        if v.checkpoint is not None and not v.checkpoint.is_file():
            problems.append(f"{w}.checkpoint: file {str(v.checkpoint)!r} does not exist")
        if v.is_reference:
            if v.overrides:
                problems.append(f"{w}.overrides: reference outputs take no translator overrides")
            continue
        if not variant_spec(v.name).trainable:
            problems.append(f"{w}.name: variant {v.name!r} is neither trainable nor a reference output; "
                            "evaluate saved outputs with `evalkit evaluate --generated DIR` instead")
            continue
        if v.preset in PRESETS:
            for j, d in enumerate(cfg.datasets):
                err = built(v, j, d)
                if err is not None:
                    problems.append(f"{w}.overrides: {err} (with dataset {d.name!r} at size {d.size})")
    if len({v.name for v in cfg.variants}) != len(cfg.variants):
        problems.append("variants: each variant may appear once")
    problems += [f"evaluation.{p}" for p in cfg.evaluation.problems()]
    rep = cfg.report
    for f in rep.formats:
        if f not in FORMATS:
            problems.append(f"report.formats: unknown format {f!r} (choose from: {', '.join(FORMATS)})")
    if rep.examples < 0:
        problems.append(f"report.examples: must be >= 0, got {rep.examples}")
    for ours, paper in rep.paper_datasets.items():
        if paper not in PAPER_DATASETS:
            problems.append(f"report.paper_datasets.{ours}: unknown paper dataset {paper!r} "
                            f"(choose from: {', '.join(PAPER_DATASETS)})")
    if rep.policy is not None and not rep.policy.is_file():
        problems.append(f"report.policy: file {str(rep.policy)!r} does not exist")
    if rep.policy is not None and rep.baseline is None:
        problems.append("report.policy: a policy needs a report.baseline to compare against")


def parse_config(data: dict, *, source: str | Path = "config") -> RunConfig:
    """Validate an already-decoded config mapping; :class:`ConfigError` lists every problem."""
    problems: list[str] = []
    cfg = _parse(RunConfig, data, "", problems)
    if cfg is not _BAD:
        _check(cfg, problems)
    if problems:
        raise ConfigError(source, problems)
    return cfg


def load_config(path: str | Path) -> RunConfig:
    """Read a TOML (``.toml``) or YAML (``.yaml``/``.yml``) run config and validate it."""
    path = Path(path)
    if not path.is_file():
        raise EvalkitError(f"config file not found: {path}", path=path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise ConfigError(path, [f"not a UTF-8 text file ({err.reason} at byte {err.start})"]) from err
    if path.suffix == ".toml":
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(path, [f"not valid TOML: {err}"]) from err
    elif path.suffix in (".yaml", ".yml"):
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise ConfigError(path, [f"not valid YAML: {' '.join(str(err).split())}"]) from err
    else:
        raise EvalkitError(f"config {path}: unknown format {path.suffix!r}; use .toml, .yaml or .yml", path=path)
    return parse_config(data if data is not None else {}, source=path)
