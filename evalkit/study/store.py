"""The study database: one SQLite file (WAL) holding a blinded forced-choice study.

A *study* shows each participant a series of *trials*. A trial shows one *item* (a sample:
its conditional input and its exemplar) and one candidate image per method, in a random,
position-balanced order, and asks one or more *questions* ("which image looks most
realistic?", "which matches the exemplar's style best?"), as in RABIT (ECCV 2022) Fig. 11
and UNITE (CVPR 2021) Table 3.

Blinding: every picture a participant can fetch is named by an opaque random token
(``secrets.token_urlsafe``); the token -> method map lives only in this database. Images are
converted to sRGB (an embedded ICC profile is applied, then dropped) and re-encoded as PNG
with no ancillary chunk at all, so neither a metadata chunk (which may carry a method name)
nor a colour profile (which browsers render differently) survives: candidates of different
methods with the same pixels are byte-identical. Every trial encodes its own pictures
(:func:`encode_png` with a per-trial encoding key), so a repeated trial, an item shown
again in a catch trial, and the exemplar among an exemplar-catch trial's candidates are
never byte-identical to a picture served before.

Participants (schema 2): a participant is enrolled once, by POST, and gets a random session
secret (only its sha256 is stored); the server serves one trial at a time and accepts a
vote only for the trial it last served to that session (``participants.served_trial``).

Trial kinds:

- ``main``: the trials the selection rates are computed from.
- ``catch``: attention checks. ``corrupt``: all candidates but one are visibly corrupted
  (pixelated + heavy noise); the expected answer to every question is the clean one.
  ``exemplar``: the exemplar itself replaces one candidate; the expected answer to the
  style questions is the exemplar.
- ``repeat``: a main trial shown again with its candidate order reversed; agreement between
  the two answers measures consistency. Repeats are not counted in the selection rates.

Integrity is enforced by the schema, not only by the application: a participant answers a
trial at most once (``UNIQUE(participant_id, trial_id)`` on ``submissions``), each answer
names a candidate of that trial (composite foreign key), and an AMT assignment is imported
at most once (``UNIQUE(assignment_id)``).
"""

from __future__ import annotations

import hashlib
import io
import json
import random
import secrets
import sqlite3
import time
import zlib
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from evalkit.errors import EvalkitError
from evalkit.files import atomic_path, check_writable, load_srgb
from evalkit.layout import OutputsLayout, variant_from_dir

SCHEMA_VERSION = 2
READABLE_VERSIONS = (1, 2)  # schema 1 (no sessions) is read and analysed; `study serve` upgrades it
BUSY_TIMEOUT_MS = 30_000

SCHEMA = """
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE methods(id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE questions(
    id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, prompt TEXT NOT NULL,
    exemplar_catch INTEGER NOT NULL CHECK (exemplar_catch IN (0, 1)));
CREATE TABLE images(id INTEGER PRIMARY KEY, sha256 TEXT NOT NULL UNIQUE, png BLOB NOT NULL);
CREATE TABLE media(token TEXT PRIMARY KEY, image_id INTEGER NOT NULL REFERENCES images(id));
CREATE TABLE items(
    id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE,
    cond_image INTEGER NOT NULL REFERENCES images(id),
    exemplar_image INTEGER NOT NULL REFERENCES images(id));
CREATE TABLE trials(
    id INTEGER PRIMARY KEY, token TEXT NOT NULL UNIQUE,
    item_id INTEGER NOT NULL REFERENCES items(id),
    kind TEXT NOT NULL CHECK (kind IN ('main', 'catch', 'repeat')),
    catch_kind TEXT CHECK ((kind = 'catch') = (catch_kind IN ('corrupt', 'exemplar'))),
    repeat_of INTEGER REFERENCES trials(id) CHECK ((kind = 'repeat') = (repeat_of IS NOT NULL)),
    cond_token TEXT NOT NULL UNIQUE REFERENCES media(token),
    exemplar_token TEXT NOT NULL UNIQUE REFERENCES media(token));
CREATE TABLE candidates(
    id INTEGER PRIMARY KEY,
    trial_id INTEGER NOT NULL REFERENCES trials(id),
    slot INTEGER NOT NULL CHECK (slot >= 1),
    token TEXT NOT NULL UNIQUE REFERENCES media(token),
    method_id INTEGER REFERENCES methods(id),
    role TEXT NOT NULL CHECK (role IN ('method', 'corrupted', 'exemplar')),
    expected INTEGER NOT NULL DEFAULT 0 CHECK (expected IN (0, 1)),
    UNIQUE (trial_id, slot), UNIQUE (trial_id, id),
    CHECK ((role = 'exemplar') = (method_id IS NULL)));
CREATE TABLE participants(
    id INTEGER PRIMARY KEY, external_id TEXT NOT NULL UNIQUE,
    source TEXT NOT NULL CHECK (source IN ('local', 'amt')),
    created REAL NOT NULL, order_seed INTEGER NOT NULL, trial_order TEXT NOT NULL,
    session_sha256 TEXT UNIQUE, served_trial INTEGER REFERENCES trials(id));
CREATE TABLE submissions(
    id INTEGER PRIMARY KEY,
    participant_id INTEGER NOT NULL REFERENCES participants(id),
    trial_id INTEGER NOT NULL REFERENCES trials(id),
    rt_ms REAL CHECK (rt_ms IS NULL OR rt_ms >= 0),
    source TEXT NOT NULL CHECK (source IN ('local', 'amt')),
    assignment_id TEXT UNIQUE, hit_id TEXT, created REAL NOT NULL,
    UNIQUE (participant_id, trial_id), UNIQUE (id, trial_id));
CREATE TABLE responses(
    submission_id INTEGER NOT NULL,
    trial_id INTEGER NOT NULL,
    question_id INTEGER NOT NULL REFERENCES questions(id),
    candidate_id INTEGER NOT NULL,
    rt_ms REAL CHECK (rt_ms IS NULL OR rt_ms >= 0),
    PRIMARY KEY (submission_id, question_id),
    FOREIGN KEY (submission_id, trial_id) REFERENCES submissions(id, trial_id),
    FOREIGN KEY (trial_id, candidate_id) REFERENCES candidates(trial_id, id));
"""


@dataclass(frozen=True)
class Question:
    """One question asked on every trial.

    ``exemplar_catch``: an exemplar catch trial expects the exemplar as the answer to this
    question (true for style-relevance questions).
    """

    name: str
    prompt: str
    exemplar_catch: bool = False


QUESTIONS: dict[str, Question] = {
    "quality": Question("quality", "Which image looks the most realistic, with the best quality?"),
    "style": Question(
        "style", "Which image matches the style (colours, textures) of the exemplar best?", True
    ),
    "semantic": Question("semantic", "Which image follows the conditional input (layout) best?"),
}


def parse_questions(spec: str) -> list[Question]:
    """``"quality,style"`` -> the built-in questions; ``"name=Prompt text"`` adds a custom one."""
    out: list[Question] = []
    for part in [p.strip() for p in spec.split(",") if p.strip()]:
        name, _, prompt = part.partition("=")
        name = name.strip()
        if not name.isidentifier():
            raise EvalkitError(f"question name {name!r} must be a plain identifier (letters, digits, _)")
        if prompt:
            out.append(Question(name, prompt.strip()))
        elif name in QUESTIONS:
            out.append(QUESTIONS[name])
        else:
            raise EvalkitError(
                f"unknown question {name!r}; use one of {sorted(QUESTIONS)} or name=Prompt text"
            )
    if not out or len({q.name for q in out}) != len(out):
        raise EvalkitError(f"--questions {spec!r}: give one or more distinct questions, e.g. quality,style")
    return out


@dataclass(frozen=True)
class StudyConfig:
    """How trials are drawn (all randomness comes from ``seed``, recorded in the study)."""

    questions: tuple[Question, ...]
    trials: int
    catch_rate: float = 0.1
    repeat_rate: float = 0.1
    seed: int = 0


@dataclass
class OutputsSource:
    """Images to study: per item name, the conditional input, the exemplar, one output per method."""

    cond: dict[str, Path]
    exemplar: dict[str, Path]
    methods: dict[str, dict[str, Path]]
    notes: list[str] = field(default_factory=list)
    run_dir: Path | None = None  # the benchmark run the outputs belong to (its report/ gets the analysis)


# --------------------------------------------------------------------------- sources

def _images_in(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        raise EvalkitError(f"image folder {folder} not found", path=folder)
    found = {p.stem: p for p in OutputsLayout.image_files(folder)}
    if not found:
        raise EvalkitError(f"no images (.png/.jpg) in {folder}", path=folder)
    return found


def select_methods(found: list[str], methods: list[str] | None = None, exclude: list[str] = ()) -> tuple[list[str], list[str]]:
    """``(taken, left out)`` of the methods ``found``: exactly ``methods`` when given (reference
    outputs too, if named), else every method but the reference outputs
    (``reference/...``: anchors, not candidates), minus ``exclude``."""
    unknown = [m for m in [*(methods or []), *exclude] if m not in found]
    if unknown:
        raise EvalkitError(f"--methods/--exclude: unknown method(s) {', '.join(unknown)}; the outputs hold "
                           f"{', '.join(sorted(found))}")
    taken = list(methods) if methods else [m for m in found if not m.startswith("reference/")]
    taken = [m for m in taken if m not in exclude]
    return taken, [m for m in found if m not in taken]


def read_outputs(outputs: list[str], inputs: Path | None = None, *, methods_only: list[str] | None = None,
                 exclude: list[str] = ()) -> OutputsSource:
    """Collect the images of a study.

    ``outputs`` is either one folder in the outputs layout (``OUT/inputs/{cond,exemplar}``,
    ``OUT/<variant_dir>/images``; the method name is ``meta.json``'s ``variant`` or the
    folder name), a benchmark run folder holding exactly one such folder under
    ``outputs/`` (``RUN/outputs/<dataset>/seed<S>``), or several ``method=DIR`` entries (``DIR`` holds the images, or has an
    ``images/`` folder). ``inputs`` (a folder with ``cond/`` and ``exemplar/``) defaults to
    ``OUT/inputs``; it is required with ``method=DIR`` entries. Images are matched by file
    name (stem); items missing from any method are dropped with a note. The methods taken
    are :func:`select_methods` of ``methods_only`` / ``exclude`` (reference outputs only when
    named); the note says which were left out.
    """
    if not outputs:
        raise EvalkitError("no --outputs given: pass an outputs folder or method=DIR entries")
    methods: dict[str, dict[str, Path]] = {}
    run_dir = None
    named = [o for o in outputs if "=" in o]
    if named and len(named) != len(outputs):
        raise EvalkitError("--outputs: give either one outputs folder or only method=DIR entries, not both")
    if named:
        for entry in named:
            name, _, folder = entry.partition("=")
            name, folder_path = name.strip(), Path(folder.strip())
            if not name or name in methods:
                raise EvalkitError(f"--outputs {entry!r}: method names must be non-empty and distinct")
            images = OutputsLayout(folder_path.parent).images(variant_from_dir(folder_path.name))  # DIR/images
            methods[name] = _images_in(images if images.is_dir() else folder_path)
        if inputs is None:
            raise EvalkitError("--outputs method=DIR needs --inputs DIR (a folder with cond/ and exemplar/)")
    else:
        if len(outputs) != 1:
            raise EvalkitError("--outputs: give one outputs folder, or method=DIR entries")
        root = Path(outputs[0])
        if not root.is_dir():
            raise EvalkitError(f"outputs folder {root} not found", path=root)
        if not OutputsLayout(root).inputs.is_dir() and (root / "outputs").is_dir():
            layouts = sorted(d for d in (root / "outputs").glob("*/*") if OutputsLayout(d).inputs.is_dir())
            if len(layouts) != 1:
                raise EvalkitError(
                    f"run {root} has {len(layouts)} outputs folders {[str(p) for p in layouts]}; "
                    "pass one of them as --outputs", path=root)
            root = layouts[0]
        layout = OutputsLayout(root)
        run_dir = next((p for p in [root, *root.parents] if (p / "run.json").is_file() and (p / "outputs").is_dir()),
                       None)
        inputs = inputs or layout.inputs
        for sub in layout.variant_dirs():
            name = folder_variant = variant_from_dir(sub.name)
            meta = layout.meta_path(folder_variant)
            if meta.is_file():
                try:
                    name = str(json.loads(meta.read_text(encoding="utf-8"))["variant"])
                except (ValueError, KeyError, TypeError) as err:
                    raise EvalkitError(f"{meta} is not valid meta.json with a 'variant' ({err})", path=meta) from err
            if name in methods:
                raise EvalkitError(f"two folders in {root} name the same method {name!r}", path=root)
            methods[name] = _images_in(layout.images(folder_variant))
    taken, left_out = select_methods(list(methods), methods_only, list(exclude))
    methods = {m: methods[m] for m in taken}
    if len(methods) < 2:
        raise EvalkitError(
            f"a study needs at least 2 methods, found {len(methods)} ({sorted(methods)}"
            f"{'; left out: ' + ', '.join(left_out) if left_out else ''}); "
            "pass an outputs folder with several <variant>/images folders or several method=DIR, or name them "
            "with --methods"
        )
    cond, exemplar = _images_in(Path(inputs) / "cond"), _images_in(Path(inputs) / "exemplar")
    common = set(cond) & set(exemplar)
    for images in methods.values():
        common &= set(images)
    if not common:
        raise EvalkitError(
            f"no image name is shared by {Path(inputs)}/cond, exemplar and every method folder; "
            "images are matched by file name"
        )
    notes = [f"methods left out: {', '.join(left_out)} (reference outputs are left out unless --methods names "
             "them)"] if left_out else []
    for label, images in [("cond", cond), ("exemplar", exemplar), *methods.items()]:
        dropped = len(set(images) - common)
        if dropped:
            notes.append(f"{label}: {dropped} image(s) not present everywhere were left out")
    keep = sorted(common)
    return OutputsSource(
        cond={n: cond[n] for n in keep},
        exemplar={n: exemplar[n] for n in keep},
        methods={m: {n: imgs[n] for n in keep} for m, imgs in methods.items()},
        notes=notes,
        run_dir=None if run_dir is None else run_dir.resolve(),
    )


# --------------------------------------------------------------------------- images

_CRITICAL = (b"IHDR", b"PLTE", b"IDAT", b"IEND")
ENCODINGS = 10  # compression levels 0..9; higher keys also split the pixel data into more IDAT chunks


def _png_chunks(png: bytes) -> list[tuple[bytes, bytes]]:
    out, i = [], 8
    while i < len(png):
        n = int.from_bytes(png[i:i + 4], "big")
        out.append((png[i + 4:i + 8], png[i + 8:i + 8 + n]))
        i += 12 + n
    return out


def _chunk(kind: bytes, data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + kind + data + (zlib.crc32(kind + data) & 0xFFFFFFFF).to_bytes(4, "big")


def to_display(image: Path | np.ndarray | Image.Image, size: tuple[int, int] | None = None) -> np.ndarray:
    """RGB uint8 pixels as a participant sees them: files are decoded and converted to sRGB
    (:func:`evalkit.files.load_srgb`); ``size`` (w, h) resizes with Lanczos."""
    if isinstance(image, (str, Path)):
        image = load_srgb(image)
    img = Image.fromarray(image) if isinstance(image, np.ndarray) else image.convert("RGB")
    if size is not None and img.size != tuple(size):
        img = img.resize(tuple(size), Image.Resampling.LANCZOS)
    return np.asarray(img.convert("RGB"), dtype=np.uint8)


def encode_png(image: Path | np.ndarray | Image.Image, size: tuple[int, int] | None = None, *, key: int = 0) -> bytes:
    """A plain RGB PNG of ``image`` (:func:`to_display`): only the critical chunks IHDR, IDAT,
    IEND, so no text, time, gamma, colour-profile or any other ancillary chunk survives.
    ``key`` picks one of many byte-different encodings of the same pixels (zlib level
    ``(6 + key) % 10``, pixel data split into ``1 + key // 10`` IDAT chunks); key 0 is
    Pillow's default. The same pixels and key always give the same bytes."""
    img = Image.fromarray(to_display(image, size))
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=(6 + key) % ENCODINGS)
    chunks = _png_chunks(buf.getvalue())
    data = b"".join(d for k, d in chunks if k == b"IDAT")
    parts = max(1, min(1 + key // ENCODINGS, len(data)))
    step = -(-len(data) // parts)
    out = [b"\x89PNG\r\n\x1a\n"] + [_chunk(k, d) for k, d in chunks if k in (b"IHDR", b"PLTE")]
    out += [_chunk(b"IDAT", data[i:i + step]) for i in range(0, len(data), step)]
    return b"".join(out + [_chunk(b"IEND", b"")])


def corrupt(png: bytes | np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A visibly corrupted copy: 8x pixelation plus Gaussian noise (sigma 60 grey levels)."""
    if isinstance(png, np.ndarray):
        img = Image.fromarray(png)
    else:
        with Image.open(io.BytesIO(png)) as opened:
            img = opened.convert("RGB")
    w, h = img.size
    small = img.resize((max(1, w // 8), max(1, h // 8)), Image.Resampling.BOX)
    blocky = np.asarray(small.resize((w, h), Image.Resampling.NEAREST), dtype=np.float64)
    noisy = blocky + rng.normal(0.0, 60.0, size=blocky.shape)
    return np.clip(np.round(noisy), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------- connections

def connect(db: str | Path) -> sqlite3.Connection:
    """One connection (use one per thread/request): WAL, busy timeout, foreign keys on."""
    db = Path(db)
    if not db.is_file():
        raise EvalkitError(f"study database {db} not found; create it with `evalkit study create`", path=db)
    conn = sqlite3.connect(db, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
    conn.row_factory = sqlite3.Row
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA synchronous = NORMAL")
        version = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    except sqlite3.DatabaseError as err:
        conn.close()
        raise EvalkitError(f"{db} is not an evalkit study database ({err})", path=db) from err
    if version is None or not str(version[0]).isdigit() or int(version[0]) not in READABLE_VERSIONS:
        conn.close()
        raise EvalkitError(f"{db} has study schema {version and version[0]}, expected {SCHEMA_VERSION}", path=db)
    return conn


def schema_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0])


def upgrade(conn: sqlite3.Connection) -> None:
    """Bring a schema-1 study (no participant sessions) to schema 2 in one transaction:
    participants get ``session_sha256`` and ``served_trial`` (existing participants have no
    session; they cannot vote through the server again, their answers are kept)."""
    if schema_version(conn) >= SCHEMA_VERSION:
        return
    with transaction(conn):
        conn.execute("ALTER TABLE participants ADD COLUMN session_sha256 TEXT")
        conn.execute("ALTER TABLE participants ADD COLUMN served_trial INTEGER REFERENCES trials(id)")
        conn.execute("CREATE UNIQUE INDEX participants_session ON participants(session_sha256)")
        conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``; rolls back everything on any exception."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def new_token() -> str:
    """An opaque, unguessable name for one picture or trial (128 bits)."""
    return secrets.token_urlsafe(16)


# --------------------------------------------------------------------------- design

def balanced_orders(n_trials: int, n_methods: int, rng: np.random.Generator) -> list[list[int]]:
    """Candidate orders for ``n_trials`` trials, position-balanced across trials.

    Trials are taken in blocks of ``n_methods``; a block uses the ``n_methods`` cyclic
    rotations of a fresh random permutation (a Latin square), in random order. So every
    method appears in every position equally often within a block, and over all trials the
    counts per (method, position) differ by at most one.
    """
    orders: list[list[int]] = []
    while len(orders) < n_trials:
        base = rng.permutation(n_methods).tolist()
        block = [base[r:] + base[:r] for r in range(n_methods)]
        orders.extend(block[i] for i in rng.permutation(n_methods))
    return orders[:n_trials]


def validate_study(db: str | Path, source: OutputsSource, config: StudyConfig) -> None:
    """Raise :class:`EvalkitError` for a study that cannot be created (before any work)."""
    db = Path(db)
    if db.exists():
        raise EvalkitError(f"{db} already exists; choose another --study path or delete it", path=db)
    check_writable(db)
    names = sorted(source.cond)
    if config.trials < 1:
        raise EvalkitError(f"--trials must be at least 1, got {config.trials}")
    if config.trials > len(names):
        raise EvalkitError(
            f"--trials {config.trials} exceeds the {len(names)} items shared by every method; "
            f"use --trials {len(names)} or fewer"
        )
    if config.seed < 0:
        raise EvalkitError(f"--seed {config.seed}: seeds are integers >= 0")
    for label, rate in [("--catch-rate", config.catch_rate), ("--repeat-rate", config.repeat_rate)]:
        if not 0.0 <= rate <= 1.0:
            raise EvalkitError(f"{label} must be in [0, 1], got {rate}")


def create_study(db: str | Path, source: OutputsSource, config: StudyConfig, *, progress=None) -> dict:
    """Write a new study database at ``db`` (built in a temp file, then moved into place).

    ``progress(done, total)`` is called after each item's images are encoded. Returns a
    summary: numbers of items, methods and trials of each kind.
    """
    validate_study(db, source, config)
    db = Path(db)
    names = sorted(source.cond)
    method_names = sorted(source.methods)
    n_methods = len(method_names)
    rng = np.random.default_rng(config.seed)
    chosen = sorted(rng.choice(len(names), size=config.trials, replace=False).tolist())
    main_items = [names[i] for i in chosen]
    orders = balanced_orders(config.trials, n_methods, rng)
    n_catch = int(round(config.catch_rate * config.trials))
    n_repeat = int(round(config.repeat_rate * config.trials))
    exemplar_catch_ok = any(q.exemplar_catch for q in config.questions)
    catch_kinds = [("exemplar" if exemplar_catch_ok and i % 2 else "corrupt") for i in range(n_catch)]
    catch_items = [names[i] for i in rng.choice(len(names), size=n_catch, replace=n_catch > len(names))]
    repeat_src = sorted(rng.choice(config.trials, size=n_repeat, replace=False).tolist())

    with atomic_path(db) as tmp:  # built in a temp file, renamed into place when complete
        conn = sqlite3.connect(tmp, isolation_level=None)
        try:
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA foreign_keys = ON")
            conn.executescript(SCHEMA)
            conn.execute("BEGIN")
            meta = {
                "schema_version": SCHEMA_VERSION,
                "seed": config.seed,
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "trials": config.trials,
                "catch_rate": config.catch_rate,
                "repeat_rate": config.repeat_rate,
                "notes": json.dumps(source.notes),
                "run_dir": "" if source.run_dir is None else str(source.run_dir),
            }
            conn.executemany("INSERT INTO meta VALUES (?, ?)", [(k, str(v)) for k, v in meta.items()])
            conn.executemany(
                "INSERT INTO questions(name, prompt, exemplar_catch) VALUES (?, ?, ?)",
                [(q.name, q.prompt, int(q.exemplar_catch)) for q in config.questions],
            )
            method_id = {}
            for name in method_names:
                method_id[name] = conn.execute("INSERT INTO methods(name) VALUES (?)", (name,)).lastrowid

            image_ids: dict[str, int] = {}
            enc_rng = np.random.default_rng([config.seed, 1])  # encoding keys: apart from the design's draws
            served: dict[str, dict[bytes, tuple]] = {}  # pixels -> {png bytes: the trial role that shows them}

            def trial_png(pixels: np.ndarray, key: int, owner: tuple) -> bytes:
                """The encoding of ``pixels`` for one role of one trial (its candidates, its
                references): ``key`` unless that exact byte string is already served by
                another trial or role, then the next key. Identical pixels within a role
                (two methods' identical outputs) keep identical bytes."""
                digest = hashlib.sha256(repr(pixels.shape).encode() + pixels.tobytes()).hexdigest()
                taken = served.setdefault(digest, {})
                for k in range(key, key + 64 * ENCODINGS):
                    png = encode_png(pixels, key=k)
                    if taken.get(png, owner) == owner:
                        taken[png] = owner
                        return png
                raise EvalkitError("cannot encode a picture distinctly for every trial that shows it")

            def store_image(png: bytes) -> int:
                digest = hashlib.sha256(png).hexdigest()
                if digest not in image_ids:
                    image_ids[digest] = conn.execute(
                        "INSERT INTO images(sha256, png) VALUES (?, ?)", (digest, png)
                    ).lastrowid
                return image_ids[digest]

            def media(image_id: int) -> str:
                token = new_token()
                conn.execute("INSERT INTO media VALUES (?, ?)", (token, image_id))
                return token

            used = sorted(set(main_items) | set(catch_items))
            item_id, output_px, exemplar_px, refs, resized = {}, {}, {}, {}, 0
            for k, name in enumerate(used):
                refs[name] = (to_display(source.cond[name]), to_display(source.exemplar[name]))
                item_id[name] = conn.execute(
                    "INSERT INTO items(name, cond_image, exemplar_image) VALUES (?, ?, ?)",
                    (name, store_image(encode_png(refs[name][0])), store_image(encode_png(refs[name][1]))),
                ).lastrowid
                # candidates of one item share one size (the most common), so pixel size cannot unblind
                outputs = {m: to_display(source.methods[m][name]) for m in method_names}
                size = Counter((a.shape[1], a.shape[0]) for a in outputs.values()).most_common(1)[0][0]
                resized += sum((a.shape[1], a.shape[0]) != size for a in outputs.values())
                output_px[name] = {m: to_display(a, size) for m, a in outputs.items()}
                exemplar_px[name] = to_display(refs[name][1], size)
                if progress:
                    progress(k + 1, len(used))
            conn.execute("INSERT INTO meta VALUES ('resized_candidates', ?)", (str(resized),))

            trial_key: dict[int, int] = {}

            def add_trial(name, kind, catch_kind=None, repeat_of=None) -> int:
                key = int(enc_rng.integers(ENCODINGS))
                cond, exemplar = refs[name]
                cond_tok = media(store_image(trial_png(cond, key, ("cond", len(trial_key)))))
                ex_tok = media(store_image(trial_png(exemplar, key, ("exemplar", len(trial_key)))))
                tid = conn.execute(
                    "INSERT INTO trials(token, item_id, kind, catch_kind, repeat_of, cond_token, exemplar_token)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (new_token(), item_id[name], kind, catch_kind, repeat_of, cond_tok, ex_tok),
                ).lastrowid
                trial_key[tid] = key
                return tid

            def add_candidate(trial_id, slot, pixels, method, role, expected=False):
                png = trial_png(pixels, trial_key[trial_id], ("candidates", trial_id))
                conn.execute(
                    "INSERT INTO candidates(trial_id, slot, token, method_id, role, expected) VALUES (?, ?, ?, ?, ?, ?)",
                    (trial_id, slot, media(store_image(png)), method_id.get(method), role, int(expected)),
                )

            main_ids = []
            for name, order in zip(main_items, orders):
                tid = add_trial(name, "main")
                main_ids.append((tid, name, order))
                for slot, m in enumerate(order, start=1):
                    add_candidate(tid, slot, output_px[name][method_names[m]], method_names[m], "method")
            for j in repeat_src:
                src_id, name, order = main_ids[j]
                tid = add_trial(name, "repeat", repeat_of=src_id)
                for slot, m in enumerate(reversed(order), start=1):
                    add_candidate(tid, slot, output_px[name][method_names[m]], method_names[m], "method")
            for name, kind in zip(catch_items, catch_kinds):
                tid = add_trial(name, "catch", catch_kind=kind)
                order = rng.permutation(n_methods).tolist()
                special = int(rng.integers(n_methods))  # slot index of the clean / exemplar candidate
                for slot, m in enumerate(order, start=1):
                    method = method_names[m]
                    px = output_px[name][method]
                    if kind == "corrupt" and slot - 1 != special:
                        add_candidate(tid, slot, corrupt(encode_png(px), rng), method, "corrupted")
                    elif kind == "corrupt":
                        add_candidate(tid, slot, px, method, "method", expected=True)
                    elif slot - 1 == special:
                        add_candidate(tid, slot, exemplar_px[name], None, "exemplar", expected=True)
                    else:
                        add_candidate(tid, slot, px, method, "method")
            conn.execute("COMMIT")
            conn.execute("PRAGMA journal_mode = WAL")
        finally:
            conn.close()
    return {
        "study": str(db),
        "items": len(names),
        "methods": method_names,
        "trials": {"main": config.trials, "catch": n_catch, "repeat": n_repeat},
        "seed": config.seed,
        "notes": source.notes,
        "run_dir": None if source.run_dir is None else str(source.run_dir),
        "resized_candidates": resized,
    }


# --------------------------------------------------------------------------- participants

def participant_order(conn: sqlite3.Connection, seed: int, external_id: str) -> tuple[int, list[int]]:
    """Per-participant trial order, reproducible from (study seed, participant id).

    A shuffle of all trials; a repeated trial that would come before its original swaps
    places with it, so the repeat is always seen second.
    """
    order_seed = int.from_bytes(hashlib.sha256(f"{seed}:{external_id}".encode()).digest()[:8], "big") >> 1
    rows = conn.execute("SELECT id, repeat_of FROM trials ORDER BY id").fetchall()
    order = [r["id"] for r in rows]
    random.Random(order_seed).shuffle(order)
    pos = {t: i for i, t in enumerate(order)}
    for r in rows:
        if r["repeat_of"] is not None and pos[r["id"]] < pos[r["repeat_of"]]:
            i, j = pos[r["id"]], pos[r["repeat_of"]]
            order[i], order[j] = order[j], order[i]
            pos[r["id"]], pos[r["repeat_of"]] = j, i
    return order_seed, order


def ensure_participant(conn: sqlite3.Connection, external_id: str, source: str = "local") -> sqlite3.Row:
    """The participant row for ``external_id``, registering it (with its trial order) if new."""
    external_id = external_id.strip()
    if not external_id or len(external_id) > 128 or not external_id.isprintable():
        raise EvalkitError("participant id must be 1-128 printable characters")
    row = conn.execute("SELECT * FROM participants WHERE external_id = ?", (external_id,)).fetchone()
    if row is not None:
        return row
    seed = int(get_meta(conn)["seed"])
    order_seed, order = participant_order(conn, seed, external_id)
    conn.execute(
        "INSERT OR IGNORE INTO participants(external_id, source, created, order_seed, trial_order)"
        " VALUES (?, ?, ?, ?, ?)",
        (external_id, source, time.time(), order_seed, json.dumps(order)),
    )
    return conn.execute("SELECT * FROM participants WHERE external_id = ?", (external_id,)).fetchone()


def session_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def enroll(conn: sqlite3.Connection, external_id: str) -> tuple[sqlite3.Row, str]:
    """Register a new local participant and give it a session: ``(row, secret)``; the
    secret (256 random bits) is returned once, only its sha256 is stored. An id that is
    already enrolled raises :class:`DuplicateParticipant`: knowing an id is not enough to
    answer for it. Call inside :func:`transaction`."""
    external_id = external_id.strip() if isinstance(external_id, str) else ""
    if conn.execute("SELECT 1 FROM participants WHERE external_id = ?", (external_id,)).fetchone():
        raise DuplicateParticipant("this participant id is already enrolled; continue in the browser you started "
                                   "in, or ask the study's organiser for a new id")
    person = ensure_participant(conn, external_id, "local")
    secret = secrets.token_urlsafe(32)
    conn.execute("UPDATE participants SET session_sha256 = ? WHERE id = ?", (session_digest(secret), person["id"]))
    return conn.execute("SELECT * FROM participants WHERE id = ?", (person["id"],)).fetchone(), secret


def participant_by_session(conn: sqlite3.Connection, secret: str | None) -> sqlite3.Row | None:
    """The participant a session secret belongs to, or None."""
    if not secret or not isinstance(secret, str) or len(secret) > 128:
        return None
    return conn.execute("SELECT * FROM participants WHERE session_sha256 = ?", (session_digest(secret),)).fetchone()


def serve_next(conn: sqlite3.Connection, person: sqlite3.Row) -> tuple[int, int, sqlite3.Row | None]:
    """:func:`next_trial`, recording the trial as the one served to ``person`` (the only
    one a vote is then accepted for)."""
    with transaction(conn):
        fresh = conn.execute("SELECT * FROM participants WHERE id = ?", (person["id"],)).fetchone()
        done, total, trial = next_trial(conn, fresh)
        conn.execute("UPDATE participants SET served_trial = ? WHERE id = ?",
                     (None if trial is None else trial["id"], person["id"]))
    return done, total, trial


def get_meta(conn: sqlite3.Connection) -> dict[str, str]:
    return {r["key"]: r["value"] for r in conn.execute("SELECT key, value FROM meta")}


def get_questions(conn: sqlite3.Connection) -> list[sqlite3.Row]:
    return conn.execute("SELECT * FROM questions ORDER BY id").fetchall()


class DuplicateSubmission(EvalkitError):
    """This participant already answered this trial (or this AMT assignment was imported)."""


class UnknownToken(EvalkitError):
    """A trial, candidate or participant that the study does not have."""


class DuplicateParticipant(EvalkitError):
    """A participant id that is already enrolled."""


class NotServed(EvalkitError):
    """A vote on a trial the server has not served (or no longer serves) to this participant."""


def record_submission(
    conn: sqlite3.Connection,
    *,
    participant: str,
    trial_token: str,
    answers: dict[str, str],
    rt_ms: float | None = None,
    answer_rt_ms: dict[str, float] | None = None,
    source: str = "local",
    assignment_id: str | None = None,
    hit_id: str | None = None,
    register: bool = False,
    in_transaction: bool = False,
    require_served: bool = False,
) -> int:
    """Store one participant's answers to one trial, all questions at once, atomically.

    ``answers`` maps question name -> candidate token of that trial. Raises
    :class:`UnknownToken` / :class:`EvalkitError` for bad input and
    :class:`DuplicateSubmission` when the participant already answered the trial (the
    ``UNIQUE(participant_id, trial_id)`` constraint decides, so concurrent replays cannot
    both succeed). ``require_served`` (the web server): the trial must be the one last
    served to the participant (:func:`serve_next`), else :class:`NotServed`; the vote then
    clears it. Nothing is stored on any error. Returns the submission id.
    """
    questions = {q["name"]: q["id"] for q in get_questions(conn)}
    if (not isinstance(answers, dict) or set(answers) != set(questions)
            or not all(isinstance(v, str) for v in answers.values())):
        raise EvalkitError(f"answers must give exactly one candidate token for each question {sorted(questions)}")
    for value in [rt_ms, *(answer_rt_ms or {}).values()]:
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not 0 <= value < 1e9):
            raise EvalkitError(f"reaction time {value!r} must be a non-negative number of milliseconds")
    trial = conn.execute("SELECT id FROM trials WHERE token = ?", (str(trial_token),)).fetchone()
    if trial is None:
        raise UnknownToken("unknown trial token")
    cands = {
        r["token"]: r["id"]
        for r in conn.execute("SELECT id, token FROM candidates WHERE trial_id = ?", (trial["id"],))
    }
    for q, token in answers.items():
        if token not in cands:
            raise UnknownToken(f"answer to {q!r} is not a candidate of this trial")

    def write() -> int:
        if register:
            person = ensure_participant(conn, participant, source)
        else:
            person = conn.execute("SELECT * FROM participants WHERE external_id = ?", (participant,)).fetchone()
            if person is None:
                raise UnknownToken("unknown participant; open the start page first")
        if require_served:
            done = conn.execute("SELECT 1 FROM submissions WHERE participant_id = ? AND trial_id = ?",
                                (person["id"], trial["id"])).fetchone()
            if done is None and person["served_trial"] != trial["id"]:
                raise NotServed("this trial was not served to this participant; answer the page the study shows")
            conn.execute("UPDATE participants SET served_trial = NULL WHERE id = ? AND served_trial = ?",
                         (person["id"], trial["id"]))
        try:
            sid = conn.execute(
                "INSERT INTO submissions(participant_id, trial_id, rt_ms, source, assignment_id, hit_id, created)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (person["id"], trial["id"], rt_ms, source, assignment_id, hit_id, time.time()),
            ).lastrowid
        except sqlite3.IntegrityError as err:
            if "assignment_id" in str(err):
                raise DuplicateSubmission(f"AMT assignment {assignment_id} was already imported") from err
            raise DuplicateSubmission("this participant already answered this trial; resubmissions are refused") from err
        conn.executemany(
            "INSERT INTO responses(submission_id, trial_id, question_id, candidate_id, rt_ms) VALUES (?, ?, ?, ?, ?)",
            [(sid, trial["id"], questions[q], cands[t], (answer_rt_ms or {}).get(q)) for q, t in answers.items()],
        )
        return sid

    if in_transaction:
        return write()
    with transaction(conn):
        return write()


def next_trial(conn: sqlite3.Connection, participant: sqlite3.Row) -> tuple[int, int, sqlite3.Row | None]:
    """(number answered, total, next unanswered trial row in this participant's order or None)."""
    order = json.loads(participant["trial_order"])
    done = {
        r[0] for r in conn.execute("SELECT trial_id FROM submissions WHERE participant_id = ?", (participant["id"],))
    }
    for tid in order:
        if tid not in done:
            return len(done), len(order), conn.execute("SELECT * FROM trials WHERE id = ?", (tid,)).fetchone()
    return len(done), len(order), None


def image_bytes(conn: sqlite3.Connection, token: str) -> bytes | None:
    row = conn.execute(
        "SELECT images.png FROM media JOIN images ON images.id = media.image_id WHERE media.token = ?", (token,)
    ).fetchone()
    return None if row is None else bytes(row[0])


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value):
    """A CSV cell that a spreadsheet shows as text: a string starting with ``= + - @``, a tab
    or a carriage return (a formula, e.g. a participant id ``=HYPERLINK(...)``) gets a
    leading apostrophe (OWASP's CSV-injection advice); other values are unchanged."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def export_rows(conn: sqlite3.Connection) -> list[dict]:
    """Every answer, un-blinded (method names included): one dict per (submission, question)."""
    rows = conn.execute(
        """
        SELECT p.external_id AS participant, p.source AS participant_source, s.source, s.assignment_id,
               s.hit_id, s.rt_ms AS trial_rt_ms, s.created, t.token AS trial, t.kind, t.catch_kind,
               rt.token AS repeat_of, i.name AS item, q.name AS question, c.slot, c.role, c.expected,
               m.name AS method, r.rt_ms
        FROM responses r
        JOIN submissions s ON s.id = r.submission_id
        JOIN participants p ON p.id = s.participant_id
        JOIN trials t ON t.id = s.trial_id
        LEFT JOIN trials rt ON rt.id = t.repeat_of
        JOIN items i ON i.id = t.item_id
        JOIN questions q ON q.id = r.question_id
        JOIN candidates c ON c.id = r.candidate_id
        LEFT JOIN methods m ON m.id = c.method_id
        ORDER BY s.id, q.id
        """
    ).fetchall()
    return [dict(r) for r in rows]
