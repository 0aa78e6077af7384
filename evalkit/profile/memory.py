"""Memory-complexity profiles of the alignment modules (real peak memory and time).

Every case (module, size) runs in a **fresh process** (a fork of one server process that
imported torch once, :class:`ForkServer`), so one case's caches, allocator pools and memory never leak into
another's numbers, and an out-of-memory kills only that case:

* CPU: the child resets the kernel's peak-RSS counter (``/proc/self/clear_refs`` ← 5,
  Linux ≥ 4.0), records its resident set (``VmRSS``) once the inputs exist, runs the
  case and reads the peak (``VmHWM``); ``peak_bytes`` = peak - baseline, i.e. the memory
  the forward (and backward) pass itself touched.  Where ``clear_refs`` is not writable,
  ``getrusage`` peak RSS is used instead (``method`` says which).  The child's address
  space is capped (``RLIMIT_AS``: what is mapped once the inputs exist plus
  ``memory_limit``, by default 50% of ``MemAvailable`` as the machine may be shared), so
  a case too big fails its allocation and is recorded as ``status="oom"`` instead of
  pushing the host into swap or its OOM killer.
* CUDA: ``torch.cuda.max_memory_allocated()`` minus the allocation before the run
  (after ``reset_peak_memory_stats``); ``torch.cuda.OutOfMemoryError`` → ``"oom"``.

``seconds`` is the wall time of one forward (+ backward) pass including the warp of a
3-channel image, measured once after a warm-up on a 4x4 grid (CUDA synchronised).  The
child runs with ``MALLOC_MMAP_THRESHOLD_=131072`` so freed tensors go back to the kernel
at once and RSS tracks live tensor memory rather than the allocator's history.  ``theory_bytes`` is
the leading-order element count of the method's correspondence times the element size:
cosine ``L^2``; RAS ``N k b^2 + N k b C + 2 tile`` (level 2's attention and retrieved keys, and
one tile of level 1's block scores with its gradient: evalkit never holds the paper's ``N^2``,
RABIT §3.1, ``N = L / b``); dense UOT ``L^2``; streaming
UOT ``chunk L + 2 C L``.  ``fit_exponent`` fits ``peak ~ L^p`` by least squares on log-log
axes over a module's successful cases.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import resource
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from evalkit.errors import EvalkitError
from evalkit.files import atomic_path

MODULES = ("cosine", "ras", "uot", "uot-streaming")
BLOCK, TOPK, CHUNK = 2, 3, 1024  # RAS defaults (RABIT §3.1) and the streaming chunk


@dataclass
class ProfileConfig:
    """One profiling run (all cases share it)."""

    modules: tuple[str, ...] = MODULES
    sizes: tuple[int, ...] = (32, 64, 128, 256)
    device: str = "cpu"
    backward: bool = False
    channels: int = 64
    iters: int = 10
    memory_limit: int | None = None  # bytes; None → 50% of MemAvailable (CPU)
    timeout: float = 1800.0
    seed: int = 0


@dataclass
class ProfileRow:
    module: str
    size: int
    L: int
    device: str
    backward: bool
    status: str
    peak_bytes: int | None
    seconds: float | None
    theory_bytes: int
    method: str
    fit_exponent: float | None = None
    detail: str = field(default="")


def theory_elements(module: str, size: int, channels: int) -> int:
    """Leading-order number of elements the module's correspondence needs at ``size x size``."""
    L = size * size
    if module in ("cosine", "uot"):
        return L * L
    if module == "ras":  # level 2's attention and retrieved keys; level 1 one tile of block
        # scores and its gradient (ot_topk_largest_of_products), not the paper's N^2 + N k b^2
        from evalkit.methods.alignment.topk import TILE_ELEMENTS

        b = BLOCK * BLOCK
        n = L // b
        return n * TOPK * b * b + n * TOPK * b * channels + 2 * min(TILE_ELEMENTS, n * n)
    if module == "uot-streaming":  # the warp's chunk of plan rows, the features, the
        # solver's augmented features ([x / eps, 1, -shift] and [z, (h - 1) / eps, 1], both ways)
        return min(CHUNK, L) * L + 2 * channels * L + 4 * (channels + 2) * L
    raise EvalkitError(f"unknown module {module!r}; choose from {', '.join(MODULES)}")


def validate(config: ProfileConfig):
    """Check a config before anything runs; returns its resolved ``torch.device``."""
    bad = [m for m in config.modules if m not in MODULES]
    if bad or not config.modules:
        raise EvalkitError(
            f"unknown module(s) {', '.join(bad) or '(none given)'}; choose from {', '.join(MODULES)}")
    if not config.sizes or any(s < 2 for s in config.sizes):
        raise EvalkitError(f"sizes must be integers >= 2, got {list(config.sizes)}")
    if "ras" in config.modules and any(s % BLOCK for s in config.sizes):
        raise EvalkitError(
            f"RAS uses {BLOCK}x{BLOCK} blocks, so every size must be even; got {list(config.sizes)}")
    from evalkit.devices import resolve_device

    device = resolve_device(config.device)  # a device this machine lacks fails here, not per case
    if device.type not in ("cpu", "cuda"):
        raise EvalkitError(f"--device {config.device}: profiles run on cpu or cuda[:N], not {device.type}")
    if config.channels < 1 or config.iters < 1:
        raise EvalkitError(f"--channels and --iters must be >= 1, got {config.channels} and {config.iters}")
    if not config.timeout > 0:
        raise EvalkitError(f"--timeout must be > 0 seconds per case, got {config.timeout}")
    if config.memory_limit is not None and config.memory_limit <= 0:
        raise EvalkitError(f"--memory-limit-gb must be > 0, got {config.memory_limit / 2**30:g}")
    return device


def mem_available() -> int:
    """``MemAvailable`` from /proc/meminfo in bytes (0 when unknown)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def fit_exponent(sizes_L, peaks) -> float | None:
    """Least-squares slope of ``log(peak)`` on ``log(L)`` (None with < 2 usable points)."""
    pts = [(math.log(l), math.log(p)) for l, p in zip(sizes_L, peaks) if p and p > 0]
    if len({x for x, _ in pts}) < 2:
        return None
    mx = sum(x for x, _ in pts) / len(pts)
    my = sum(y for _, y in pts) / len(pts)
    sxx = sum((x - mx) ** 2 for x, _ in pts)
    return sum((x - mx) * (y - my) for x, y in pts) / sxx


# ----------------------------------------------------------------------------- parent side

# the children's environment: one intra-op thread, and a fixed mmap threshold (glibc's adaptive
# one would keep freed tensors of up to 32 MiB in the heap, so RSS would measure the allocator's
# history, not the case)
CHILD_ENV = {"OMP_NUM_THREADS": "1", "MALLOC_MMAP_THRESHOLD_": "131072"}


class ForkServer:
    """A server process (:func:`_serve`) that imports torch and the
    alignment modules once (under :data:`CHILD_ENV`) and runs every case in a fresh ``fork`` of
    itself, with its own address space, allocator, peak-RSS counter and limits (what a fresh
    interpreter gives, without its ~3 s of imports per case). Protocol, one JSON line each: the
    parent sends a case; the server answers ``{"pid"}``, then the child's ``{"result"}`` (if it
    got that far), then ``{"exit", "signal"}``."""

    def __init__(self):
        import subprocess

        env = dict(os.environ)
        for k, v in CHILD_ENV.items():
            env.setdefault(k, v)
        self.proc = subprocess.Popen([sys.executable, "-c", "from evalkit.profile.memory import _serve; _serve()"], env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)

    def _line(self, deadline: float | None) -> dict | None:
        import select

        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            return None
        line = self.proc.stdout.readline()
        if not line:
            raise EvalkitError("the profiling server exited; rerun `evalkit profile memory`")
        return json.loads(line)

    def run(self, case: dict, timeout: float) -> tuple[dict | None, dict, bool]:
        """``(result or None, exit record, timed_out)`` of one case."""
        import signal

        self.proc.stdin.write(json.dumps(case) + "\n")
        self.proc.stdin.flush()
        deadline = time.monotonic() + timeout
        pid = self._line(None)["pid"]
        result, timed_out = None, False
        while True:
            msg = self._line(deadline)
            if msg is None:  # past the case's time: kill the child, then read its exit
                timed_out = True
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                deadline = None
                continue
            if "result" in msg:
                result = msg["result"]
            else:
                return result, msg, timed_out

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.proc.stdin.close()
            self.proc.wait(timeout=10)


def _serve() -> None:
    """The server side of :class:`ForkServer` (stdin: cases; stdout: replies)."""
    import evalkit.methods.alignment  # noqa: F401  (imported once, shared by every fork)
    import torch  # noqa: F401

    for line in sys.stdin:
        case = json.loads(line)
        pid = os.fork()
        if pid == 0:
            try:
                result = {"result": _child(case)}
            except BaseException as err:  # noqa: BLE001 — reported as the case's error row
                result = {"result": {"status": "error", "peak_bytes": None, "seconds": None, "method": "",
                                     "detail": f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"}}
            sys.stdout.write(json.dumps(result) + "\n")
            sys.stdout.flush()
            os._exit(0)
        sys.stdout.write(json.dumps({"pid": pid}) + "\n")
        sys.stdout.flush()
        _, status = os.waitpid(pid, 0)
        sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else 0
        sys.stdout.write(json.dumps({"exit": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
                                     "signal": sig}) + "\n")
        sys.stdout.flush()


def run_case(module: str, size: int, config: ProfileConfig, server: ForkServer | None = None) -> ProfileRow:
    """Run one case in a fresh process (a fork of ``server``, started for it when not given)."""
    limit = config.memory_limit
    if limit is None and config.device == "cpu":
        limit = int(0.5 * mem_available()) or None
    case = {"module": module, "size": size, "device": config.device,
            "backward": config.backward, "channels": config.channels, "iters": config.iters,
            "seed": config.seed, "memory_limit": limit}
    base = ProfileRow(module, size, size * size, config.device, config.backward, "error", None,
                      None, theory_elements(module, size, config.channels) * 4, "")
    own = server is None
    server = server or ForkServer()
    try:
        out, exit_record, timed_out = server.run(case, config.timeout)
    finally:
        if own:
            server.close()
    if timed_out:
        base.status, base.detail = "timeout", f"exceeded {config.timeout:.0f} s"
        return base
    if out is not None:
        base.status, base.peak_bytes, base.seconds = out["status"], out["peak_bytes"], out["seconds"]
        base.method, base.detail = out["method"], out.get("detail", "")
        return base
    if exit_record.get("signal") == 9:  # killed, most likely by the kernel's OOM killer
        base.status, base.detail = "oom", "killed by signal 9 (out of memory)"
        return base
    base.detail = f"exit {exit_record.get('exit')}, signal {exit_record.get('signal')}: no output"
    return base


def profile_memory(config: ProfileConfig, *, progress: bool = True) -> list[ProfileRow]:
    """Profile every (module, size) of ``config``; rows in module-major order."""
    config = replace(config, device=str(validate(config)))  # "auto" -> "cpu" / "cuda"
    import sys

    from evalkit.progress import Progress

    cases = [(m, s) for m in config.modules for s in sorted(config.sizes)]
    rows = []
    if progress:  # a line per case too: a bar alone says nothing when stderr is a log file
        print(f"profiling {len(cases)} case(s) on {config.device}, one fresh process each", file=sys.stderr, flush=True)
    server = ForkServer()
    with Progress(progress) as bars, contextlib.closing(server):
        advance = bars.task("profiling", len(cases))
        for i, (module, size) in enumerate(cases, 1):
            advance.describe(f"{module} {size}x{size}")
            row = run_case(module, size, config, server)
            rows.append(row)
            advance()
            if progress:
                peak = "" if row.peak_bytes is None else f", peak {row.peak_bytes / 2**20:.1f} MiB"
                took = "" if row.seconds is None else f", {row.seconds:.3f} s"
                print(f"profiled {i}/{len(cases)}: {module} {size}x{size}: {row.status}{peak}{took}",
                      file=sys.stderr, flush=True)
    for module in config.modules:
        own = [r for r in rows if r.module == module and r.status == "ok"]
        p = fit_exponent([r.L for r in own], [r.peak_bytes for r in own])
        for r in rows:
            if r.module == module:
                r.fit_exponent = p
    return rows


def rows_as_dicts(rows: list[ProfileRow]) -> list[dict]:
    return [asdict(r) for r in rows]


def check_plot_path(path: str | Path) -> Path:
    """A plot path with a known image suffix in an existing folder."""
    path = Path(path)
    if path.suffix.lower() not in (".png", ".pdf", ".svg"):
        raise EvalkitError(f"plot file {path} must end in .png, .pdf or .svg")
    if not path.parent.is_dir():
        raise EvalkitError(f"folder {path.parent} for the plot does not exist; create it first")
    return path


def plot_profile(rows: list[ProfileRow], path: str | Path) -> Path:
    """Log-log plot of peak memory vs L per module (theory dashed, OOM as crosses)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = check_plot_path(path)
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    for i, module in enumerate(dict.fromkeys(r.module for r in rows)):
        own = sorted((r for r in rows if r.module == module), key=lambda r: r.L)
        colour = f"C{i}"
        ok = [r for r in own if r.status == "ok" and r.peak_bytes]
        exponent = ok[0].fit_exponent if ok else None
        label = module if exponent is None else f"{module} (~L^{exponent:.2f})"
        if ok:
            ax.plot([r.L for r in ok], [r.peak_bytes for r in ok], "o-", color=colour, label=label)
        ax.plot([r.L for r in own], [r.theory_bytes for r in own], "--", color=colour, alpha=0.5)
        failed = [r for r in own if r.status != "ok"]
        if failed:
            ax.plot([r.L for r in failed], [r.theory_bytes for r in failed], "x", color=colour,
                    markersize=10, mew=2, label=f"{module}: {', '.join(sorted({r.status for r in failed}))}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("correspondence size L = H x W")
    ax.set_ylabel("peak memory (bytes)")
    device = rows[0].device if rows else "cpu"
    passes = "fwd+bwd" if rows and rows[0].backward else "forward"
    ax.set_title(f"alignment memory on {device} ({passes}); dashed: theory")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=120, bbox_inches="tight", format=path.suffix.lower().lstrip("."))
    finally:
        plt.close(fig)
    return path


# ----------------------------------------------------------------------------- child side

def _status_kb(field_name: str) -> int | None:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1]) * 1024
    return None


def _build(module: str, iters: int):
    from evalkit.methods.alignment import RankingAttention, UnbalancedTransport, dense_cosine_attention

    if module == "cosine":
        return dense_cosine_attention
    if module == "ras":
        return RankingAttention(block=BLOCK, k=TOPK)
    if module == "uot":
        return UnbalancedTransport(eps=1e-2, tau=1.0, n_iters=iters, eps_steps=1, tol=0)
    return UnbalancedTransport(eps=1e-2, tau=1.0, n_iters=iters, eps_steps=1, tol=0,
                               chunk_size=CHUNK)


def _child(case: dict) -> dict:
    import torch

    torch.manual_seed(case["seed"])
    dev = torch.device(case["device"])
    s, c = case["size"], case["channels"]
    module = _build(case["module"], case["iters"])
    query = torch.randn(1, c, s, s, device=dev, requires_grad=case["backward"])
    key = torch.randn(1, c, s, s, device=dev, requires_grad=case["backward"])
    image = torch.randn(1, 3, s, s, device=dev)
    # warm-up on a 4x4 grid: lazy initialisation (thread pools, kernels) is not the case's
    with torch.set_grad_enabled(case["backward"]):
        small = [torch.randn(1, c, 4, 4, device=dev, requires_grad=case["backward"]) for _ in "qk"]
        out = module(*small).warp(torch.randn(1, 3, 4, 4, device=dev))
        if case["backward"]:
            out.sum().backward()
    del small, out
    if case["memory_limit"] and dev.type == "cpu":
        # cap the address space at what is mapped now plus the limit (torch's libraries
        # already map gigabytes of virtual memory, so an absolute cap would break imports)
        cap = _status_kb("VmSize") + int(case["memory_limit"])
        resource.setrlimit(resource.RLIMIT_AS, (cap, resource.RLIM_INFINITY))

    def run():
        with torch.set_grad_enabled(case["backward"]):
            out = module(query, key).warp(image)
            if case["backward"]:
                out.square().sum().backward()
        return out

    cuda = dev.type == "cuda"
    if cuda:
        torch.cuda.synchronize(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        baseline = torch.cuda.memory_allocated(dev)
        method = "cuda max_memory_allocated"
    else:
        try:
            Path("/proc/self/clear_refs").write_text("5")
            method = "rss peak above baseline (clear_refs)"
            baseline = _status_kb("VmRSS")
        except OSError:
            method = "rss peak above baseline (getrusage)"
            baseline = _status_kb("VmRSS") or 0
    oom_types = (torch.cuda.OutOfMemoryError, MemoryError)
    start = time.perf_counter()
    try:
        run()
        if cuda:
            torch.cuda.synchronize(dev)
    except oom_types as err:
        return {"status": "oom", "peak_bytes": None, "seconds": None, "method": method,
                "detail": str(err).splitlines()[0][:200]}
    except RuntimeError as err:
        text = str(err)
        if "can't allocate memory" in text or "out of memory" in text.lower():
            return {"status": "oom", "peak_bytes": None, "seconds": None, "method": method,
                    "detail": text.splitlines()[0][:200]}
        raise
    seconds = time.perf_counter() - start
    if cuda:
        peak = torch.cuda.max_memory_allocated(dev) - baseline
    elif "clear_refs" in method:
        peak = _status_kb("VmHWM") - baseline
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - baseline
    return {"status": "ok", "peak_bytes": max(int(peak), 0), "seconds": seconds, "method": method}


if __name__ == "__main__":  # one case by hand: python -m evalkit.profile.memory '{"module": ...}'
    print(json.dumps(_child(json.loads(sys.argv[1]))), flush=True)
