"""The metric backbones at the machine's speed, same numbers (opt-in benchmark, issue 15 item 2):

    .venv/bin/python -m pytest tests/benchmarks/bench_backbones.py -s

For Inception-v3 at 299 (FID), VGG19 to relu5_2 (semantic/style consistency) and AlexNet
(LPIPS) at 128 px, batch 32, warm, in one run side by side: torchvision's network contiguous and
channels_last (the floor: the fastest straightforward way on this CPU), and evalkit's extractor
as the metrics call it (LPIPS keeps the lpips library's contiguous AlexNet: its numbers stay
bit-identical to ``lpips.LPIPS``, and AlexNet at 128 px is a few percent of an evaluation) (random-init weights; the speed does not depend on them). Prints img/s,
GFLOP/s (FLOPs counted by ``torch.utils.flop_counter``) and evalkit's share of the best path,
and checks evalkit's features equal the contiguous reference to 1e-5 of their scale.
"""

from __future__ import annotations

import time

import torch
import torchvision
from torch.utils.flop_counter import FlopCounterMode

BATCH, REPEATS = 32, 3


def _flops(net, x) -> float:
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        net(x[:1])
    return counter.get_total_flops()


def _rate(fn, x) -> float:
    with torch.no_grad():
        fn(x[:2])
        best = float("inf")
        for _ in range(REPEATS):
            t = time.perf_counter()
            fn(x)
            best = min(best, time.perf_counter() - t)
    return len(x) / best


def _cases():
    from evalkit.features import InceptionFID, VGG19Features
    from evalkit.metrics import LPIPSAlex

    torch.manual_seed(0)
    inc = InceptionFID("clean", "random")
    vgg = VGG19Features("random")
    alex = LPIPSAlex("random")
    images299 = torch.randint(0, 256, (BATCH, 3, 299, 299), dtype=torch.uint8)
    last = lambda x: x.contiguous(memory_format=torch.channels_last)  # noqa: E731  as the extractors feed it
    return [  # (name, network, input, evalkit's call)
        ("inception-v3 @299", inc.network, (images299.float() - 128) / 128, lambda x: inc.network(last(x))),
        ("vgg19 relu5_2 @128", vgg.features, torch.randn(BATCH, 3, 128, 128), lambda x: vgg.features(last(x))),
        ("alexnet lpips @128", alex.model.net, torch.randn(BATCH, 3, 128, 128), lambda x: alex.model.net(x)),
    ]


def test_backbone_throughput_and_equality():
    import copy

    cases = _cases()
    print(f"\n| backbone | contiguous img/s | channels_last img/s | evalkit img/s | evalkit GFLOP/s | "
          "evalkit / best | max rel. diff |")
    for name, net, x, ours in cases:
        contiguous = copy.deepcopy(net).to(memory_format=torch.contiguous_format)
        last = copy.deepcopy(net).to(memory_format=torch.channels_last)
        flops = _flops(contiguous, x)
        r_contig = _rate(contiguous, x)
        r_last = _rate(lambda t: last(t.contiguous(memory_format=torch.channels_last)), x)
        r_ours = _rate(ours, x)
        with torch.no_grad():
            ref, got = contiguous(x), ours(x)
        ref = ref[-1] if isinstance(ref, (list, tuple)) else ref
        got = got[-1] if isinstance(got, (list, tuple)) else got
        rel = float((got - ref).abs().max() / ref.abs().max())
        print(f"| {name} | {r_contig:.1f} | {r_last:.1f} | {r_ours:.1f} | {flops * r_ours / 1e9:.0f} | "
              f"{r_ours / max(r_contig, r_last):.2f} | {rel:.1e} |")
        assert rel <= 1e-5


def test_random_builds_without_the_draws_they_drop():
    """The random builds that skip draws (issue 15 item 1's fixed cost), side by side in one run,
    best of 3 in one process (a fresh process pays more for the drawn builds: their memory is
    new): VGG19's torchvision init with its classifier drawn (as before) against ``load_trunk``
    advancing the generator past it (the values equal bit for bit), and lpips' model with its
    own random AlexNet drawn against ``LPIPSAlex`` built on the meta device. Prints s and ratio."""
    import lpips
    from bench_alignment import _best_seconds

    from evalkit.backbones import he_init_, load_trunk, seeded, vgg19_layers
    from evalkit.metrics import LPIPSAlex

    def vgg19_drawn():
        with seeded(0):
            features = vgg19_layers(64)
            for fan_in, fan_out in ((512 * 7 * 7, 4096), (4096, 4096), (4096, 1000)):
                torch.nn.Linear(fan_in, fan_out)
            return he_init_(features, "fan_out")

    def lpips_drawn():  # lpips' own random AlexNet, drawn and then replaced by the trunk
        with seeded(None):
            return lpips.LPIPS(net="alex", version="0.1", pretrained=True, pnet_rand=True, verbose=False)

    cases = [("vgg19 (torchvision init)", vgg19_drawn, lambda: load_trunk("vgg19", "random", 0)[0], True),
             ("lpips' model around the trunk", lpips_drawn, lambda: LPIPSAlex("random", 0), False)]
    print(f"\nrandom trunk builds, best of 3, torch threads {torch.get_num_threads()}")
    for name, drawn, skipped, same_values in cases:
        t_drawn, t_skipped = _best_seconds(drawn, rounds=3), _best_seconds(skipped, rounds=3)
        if same_values:
            got, expect = skipped().state_dict(), drawn().state_dict()
            assert list(got) == list(expect) and all(torch.equal(got[k], expect[k]) for k in expect), name
        print(f"  {name:<30} drawn {t_drawn:6.3f} s   skipped {t_skipped:6.3f} s   {t_drawn / t_skipped:5.2f}x")


def test_files_load_without_drawing_the_init_they_replace():
    """A weights file's architecture built on meta with the file's tensors assigned (the
    pretrained path's ``_loaded_into_architecture``) against the previous way: built with its
    default initialisation drawn, then the tensors copied in. Side by side, best of 3 in one
    process, for VGG19 and pytorch-fid's Inception, from the same state dict (reading and
    hashing the file are the same either way, so left out); the loaded tensors are asserted
    equal. Prints s and ratio."""
    from bench_alignment import _best_seconds

    from evalkit.backbones import TRUNKS, _loaded_into_architecture, seeded

    print(f"\nfile loads, best of 3, torch threads {torch.get_num_threads()}")
    for name in ("vgg19", "inception-v3-fid"):
        spec = TRUNKS[name]
        with seeded(0):
            state = {k: v.clone() for k, v in spec.architecture().state_dict().items()}

        def drawn():
            with seeded(None):
                net = spec.architecture()
            net.load_state_dict(state, strict=True)
            return net

        got, expect = _loaded_into_architecture(spec, state).state_dict(), drawn().state_dict()
        assert list(got) == list(expect) and all(torch.equal(got[k], expect[k]) for k in expect), name
        t_drawn = _best_seconds(drawn, rounds=3)
        t_meta = _best_seconds(lambda: _loaded_into_architecture(spec, state), rounds=3)
        print(f"  {name:<18} drawn, then copied {t_drawn:6.3f} s   on meta, assigned {t_meta:6.3f} s   {t_drawn / t_meta:5.2f}x")
