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
    # label = "spade-ngf16"     # the method's name in folders and results (default: name)

    [[variants]]                # an external method's saved outputs, scored beside the others
    name = "outputs"
    folder = "my_outputs/"      # <sample name>.png|.jpg for every test sample
    label = "mymethod"

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
Everything a run would otherwise find only after writing its folder is checked here:
datasets are built (unknown options, missing roots or pair lists, train sets smaller than
a batch), translators are built on the meta device, ``out`` must be writable, seeds must
fit 32 bits, and ``report.baseline`` must name an existing run (read-only look-up).
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
# A method name (a variant's label): path segments of letters, digits, . _ + - joined by "/".
_LABEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*(/[A-Za-z0-9][A-Za-z0-9._+-]*)*$")
SEED_MAX = 2 ** 32 - 1  # numpy's RandomState (KID subsets) takes 32-bit seeds; every seed of a run fits it


def method_name_problem(name) -> str | None:
    """Why ``name`` cannot name a method in the outputs layout and results, or None."""
    if not isinstance(name, str) or not _LABEL_RE.match(name) or "__" in name:
        return (f"{name!r} must be letters, digits and . _ + - (segments joined by /, no '__'), "
                "e.g. mymethod or mymethod/v2")
    if name.startswith("reference/"):
        return f"{name!r}: names under reference/ are the built-in reference outputs"
    return None


def check_method_name(name: str, option: str = "--name") -> str:
    """``name`` if it can name a method (:func:`method_name_problem`), else one EvalkitError line."""
    why = method_name_problem(name)
    if why is not None:
        raise EvalkitError(f"{option} {why}")
    return name


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
    data_seed: int = 0  # the data instance (scenes, exemplar draws): the same for every seed of the run


@dataclass(frozen=True)
class VariantConfig:
    """One translator variant: trained for ``steps`` (or loaded from ``checkpoint``); or,
    with ``name = "outputs"``, an external method's saved outputs read from ``folder``.
    ``label`` names the method in the run's folders and results (default: ``name``)."""

    name: str
    preset: str = "tiny"
    steps: int = 100
    batch_size: int = 4
    checkpoint: Path | None = None
    overrides: dict = field(default_factory=dict)
    folder: Path | None = None
    label: str | None = None

    @property
    def is_reference(self) -> bool:
        from evalkit.methods.registry import is_reference

        return is_reference(self.name)

    @property
    def key(self) -> str:
        """The method's name in the run: folders, stage names, the results' ``variant``."""
        return self.label or self.name

    @property
    def method(self) -> str:
        """The results' ``method`` column: the label, else the variant's family (``rabit/ras`` → ``rabit``)."""
        return self.label or self.name.split("/")[0]

    @property
    def trains(self) -> bool:
        """Trained in the run: a trainable variant without a checkpoint."""
        from evalkit.methods.registry import variant_spec

        return not self.is_reference and self.checkpoint is None and variant_spec(self.name).trainable

    def fields(self) -> dict:
        """The variant's fields for hashes and stage keys; the optional ``folder``/``label``
        only when set, so that configs without them keep their hashes."""
        d = dict(self.__dict__)
        for k in ("folder", "label"):
            if d[k] is None:
                del d[k]
        return d


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
    # training processes run side by side on a CPU, each with cores // train_workers threads
    # (small translators use a second thread poorly: at `tiny` two 1-thread trainings finish in
    # about 0.6x the time of two 2-thread ones); how the run executes, not what it computes
    train_workers: int = 1

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
        d.pop("train_workers", None)
        d["variants"] = [json.loads(json.dumps(v.fields(), default=str)) for v in self.variants]
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

_UNEXPECTED_KW = re.compile(r"unexpected keyword argument '([^']+)'")


class _Builds:
    """What the checks build, each once: the datasets of the config (test split, and the
    train split where a variant trains) and the translators (on the meta device, nothing
    allocated), so that every config that cannot run is reported now, not after the run
    folder is written. A dataset that cannot be built is reported once
    (``datasets[i]...``); those already reported (unknown name, missing root, too small)
    are skipped."""

    def __init__(self, cfg: RunConfig, problems: list[str]):
        self.cfg, self.problems = cfg, problems
        self._datasets: dict[tuple[int, str], object] = {}
        self._translators: dict[str, str | None] = {}

    def dataset(self, i: int, d: DatasetConfig, split: str):
        """The dataset (None when it cannot be built; the problem is reported once)."""
        from evalkit.data import dataset_spec, get_dataset, list_datasets

        key = (i, split)
        if key in self._datasets:
            return self._datasets[key]
        self._datasets[key] = None
        spec = dataset_spec(d.name) if d.name in list_datasets() else None
        if spec is None or d.size < 8 or (spec.needs_root and (d.root is None or not d.root.is_dir())):
            return None
        if (i, "test") in self._datasets and self._datasets[(i, "test")] is None and split == "train":
            return None  # the dataset itself is broken: reported for the test split
        n = max(1, d.n_test if split == "test" else d.n_train)
        seed = self.cfg.seeds[0] if self.cfg.seeds else 0
        try:
            self._datasets[key] = get_dataset(d.name, root=d.root, split=split, size=d.size, n=n, seed=seed,
                                              **d.options)
        except TypeError as err:
            unknown = _UNEXPECTED_KW.search(str(err))
            if unknown:
                self.problems.append(f"datasets[{i}]: cannot build dataset {d.name!r}: unknown option "
                                     f"{unknown.group(1)!r} in datasets[{i}].options (the options are in docs/data.md)")
            else:
                self.problems.append(f"datasets[{i}].options: cannot build dataset {d.name!r} with {d.options}: {err}")
        except (EvalkitError, ValueError, OSError) as err:
            where = "datasets[{}]".format(i) + ("" if split == "test" else " (train split)")
            self.problems.append(f"{where}: cannot build dataset {d.name!r}"
                                 + (f" with options {d.options}" if d.options else "") + f": {err}")
        return self._datasets[key]

    def translator_problem(self, v: VariantConfig, i: int, d: DatasetConfig) -> str | None:
        """Why ``v`` cannot be built for dataset ``d``'s channels, or None."""
        import torch

        from evalkit.methods.registry import build_translator

        ds = self.dataset(i, d, "test")
        if ds is None:
            return None
        overrides = {"size": d.size, **v.overrides}
        key = json.dumps([v.name, v.preset, ds.cond_channels, overrides], sort_keys=True, default=str)
        if key not in self._translators:
            try:
                with torch.device("meta"):
                    build_translator(v.name, cond_channels=ds.cond_channels, preset=v.preset, seed=0, **overrides)
                self._translators[key] = None
            except (EvalkitError, TypeError, ValueError, RuntimeError) as err:
                self._translators[key] = str(err)
        return self._translators[key]


def _outputs_problem(folder: Path, ds, d: DatasetConfig) -> str | None:
    """Why an external method's ``folder`` cannot stand in for a translator on dataset
    ``d`` (no image for some test sample, or images of another size), or None."""
    from PIL import Image

    from evalkit.files import is_image_file

    files = {p.stem: p for p in sorted(folder.iterdir()) if p.is_file() and is_image_file(p)}
    if hasattr(ds, "items") and hasattr(ds, "sample_name"):
        names = [ds.sample_name(item.key) for item in ds.items]
    else:
        names = [ds[i].name for i in range(len(ds))]
    missing = [n for n in names if n not in files]
    if missing:
        return (f"no image for {len(missing)} of the {len(names)} test samples of {d.name!r} in {str(folder)!r} "
                f"(e.g. {missing[0]}.png); name each output by its sample, as `evalkit infer` names them")
    try:
        with Image.open(files[names[0]]) as im:
            size = im.size
    except OSError:
        return None  # undecodable: named by the decoder when the run reads it
    if size != (d.size, d.size):
        return (f"the outputs in {str(folder)!r} are {size[0]}x{size[1]} but dataset {d.name!r} has size "
                f"{d.size}; set the dataset's size to the outputs' resolution")
    return None


def _baseline_problem(cfg: RunConfig) -> str | None:
    """Why ``report.baseline`` names nothing a gate can read: a run folder with results.csv,
    a results.csv, or a run id recorded in the history (looked up read-only)."""
    from evalkit.reports import history

    spec = cfg.report.baseline
    p = Path(spec)
    if p.is_dir():
        return None if (p / "results.csv").is_file() else f"report.baseline: folder {spec!r} has no results.csv"
    if p.suffix == ".csv":
        return None if p.is_file() else f"report.baseline: file {spec!r} does not exist"
    try:
        known = history.run_ids(cfg.history_path)
    except EvalkitError as err:
        return f"report.baseline: {err}"
    if spec in known:
        return None
    latest = ", ".join(known[:3]) or "none recorded yet"
    return (f"report.baseline: {spec!r} is neither a run folder, a results.csv nor a run id in "
            f"{cfg.history_path} (latest: {latest})")


def _check(cfg: RunConfig, problems: list[str]) -> None:
    from evalkit.data import dataset_spec, list_datasets
    from evalkit.devices import resolve_device
    from evalkit.files import check_writable
    from evalkit.methods.config import PRESETS
    from evalkit.methods.registry import list_variants, variant_spec
    from evalkit.reports.paper_tables import DATASETS as PAPER_DATASETS

    if not _NAME_RE.match(cfg.name):
        problems.append(f"name: {cfg.name!r} must be a folder name (letters, digits, . _ -)")
    if not cfg.seeds:
        problems.append("seeds: give at least one seed")
    if len(set(cfg.seeds)) != len(cfg.seeds) or any(not 0 <= s <= SEED_MAX for s in cfg.seeds):
        problems.append(f"seeds: must be distinct integers in [0, 2**32), got {list(cfg.seeds)}")
    try:
        check_writable(cfg.run_dir, directory=True)
    except EvalkitError as err:
        problems.append(f"out: {err}")
    try:
        resolve_device(cfg.device, option="device")
    except EvalkitError as err:
        problems.append(str(err))
    if not cfg.datasets:
        problems.append("datasets: give at least one [[datasets]] table")
    if not cfg.variants:
        problems.append("variants: give at least one [[variants]] table")
    known_ds = list_datasets()
    builds = _Builds(cfg, problems)
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
        if not 0 <= d.data_seed <= SEED_MAX:
            problems.append(f"{w}.data_seed: must be an integer in [0, 2**32), got {d.data_seed}")
        builds.dataset(i, d, "test")
    if len({d.name for d in cfg.datasets}) != len(cfg.datasets):
        problems.append("datasets: each dataset may appear once")
    known_v = list_variants()
    for i, v in enumerate(cfg.variants):
        w = f"variants[{i}]"
        if v.name not in known_v:
            close = difflib.get_close_matches(v.name, known_v, n=1)
            problems.append(f"{w}.name: unknown variant {v.name!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
                            + f"; choose one of: {', '.join(sorted(known_v))}")
            continue
        if v.label is not None and (why := method_name_problem(v.label)) is not None:
            problems.append(f"{w}.label: {why}")
        if v.preset not in PRESETS:
            problems.append(f"{w}.preset: unknown preset {v.preset!r} (choose one of: {', '.join(PRESETS)})")
        if v.steps < 1 and not v.is_reference and v.checkpoint is None:
            problems.append(f"{w}.steps: must be >= 1 (or give a checkpoint), got {v.steps}")
        if v.batch_size < 1:
            problems.append(f"{w}.batch_size: must be >= 1, got {v.batch_size}")
        if v.checkpoint is not None and not v.checkpoint.is_file():
            problems.append(f"{w}.checkpoint: file {str(v.checkpoint)!r} does not exist")
        if v.name == "outputs":
            if v.folder is None:
                problems.append(f"{w}.folder: variant 'outputs' reads an external method's saved outputs: give "
                                "folder = \"DIR\" (one image per test sample, named by the sample)")
            elif not v.folder.is_dir():
                problems.append(f"{w}.folder: folder {str(v.folder)!r} does not exist")
            else:
                for j, d in enumerate(cfg.datasets):
                    ds = builds.dataset(j, d, "test")
                    if ds is not None and (why := _outputs_problem(v.folder, ds, d)) is not None:
                        problems.append(f"{w}.folder: {why}")
            if v.overrides or v.checkpoint is not None:
                problems.append(f"{w}: variant 'outputs' takes no overrides or checkpoint, only folder and label")
            continue
        if v.folder is not None:
            problems.append(f"{w}.folder: only variant 'outputs' reads a folder of saved outputs")
        if v.is_reference:
            if v.overrides:
                problems.append(f"{w}.overrides: reference outputs take no translator overrides")
            continue
        if not variant_spec(v.name).trainable:
            problems.append(f"{w}.name: variant {v.name!r} is neither trainable nor a reference output; "
                            "give name = \"outputs\" with folder = \"DIR\" to score saved outputs")
            continue
        if v.preset in PRESETS:
            for j, d in enumerate(cfg.datasets):
                err = builds.translator_problem(v, j, d)
                if err is not None:
                    problems.append(f"{w}.overrides: {err} (with dataset {d.name!r} at size {d.size})")
        if v.checkpoint is None and v.batch_size >= 1:
            for j, d in enumerate(cfg.datasets):
                train = builds.dataset(j, d, "train")
                if train is not None and len(train) < v.batch_size:
                    problems.append(f"{w}.batch_size: {v.batch_size} is more than the {len(train)} training samples "
                                    f"of {d.name!r} (datasets[{j}].n_train = {d.n_train}); lower batch_size")
    if len({v.key for v in cfg.variants}) != len(cfg.variants):
        problems.append("variants: each variant may appear once (give a distinct label to run one twice, "
                        "or to score several external methods)")
    if cfg.train_workers < 1:
        problems.append(f"train_workers: must be >= 1, got {cfg.train_workers}")
    elif cfg.train_workers > 1 and cfg.device != "cpu":
        problems.append(f"train_workers: {cfg.train_workers} parallel training processes run on the CPU only; "
                        f"set device = \"cpu\" or train_workers = 1 (device is {cfg.device!r})")
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
    if rep.baseline is not None and (why := _baseline_problem(cfg)) is not None:
        problems.append(why)
    if rep.history is not None:
        try:
            check_writable(rep.history)
        except EvalkitError as err:
            problems.append(f"report.history: {err}")


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
