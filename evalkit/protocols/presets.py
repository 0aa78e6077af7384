"""The evaluation presets: evalkit's own protocol (``clean``) and one per published
evaluation (CoCosNet 2020, UNITE 2021, RABIT 2022), each field with where it comes from.

A :class:`Preset` pins what the official test and metric scripts did: the FID
implementation, the codec the generated (and, where the script saved them, real and exemplar)
images went through, how real images were resized, the SWD settings, the LPIPS protocol and
the semantic/style consistency computation. Every pinned field carries its citations
(:class:`Source`: repository, file, lines, as read in the public repositories in December
2026); what the scripts leave open is listed in ``unpinned`` and what they get wrong in
``defects``. docs/protocols.md is the long form; ``evalkit protocols`` prints these.
"""

from __future__ import annotations

from dataclasses import dataclass

from evalkit.protocols.codec import Codec

COCOSNET = "microsoft/CoCosNet"
UNITE = "fnzhan/UNITE"
RABIT = "fnzhan/RABIT"
# The SWD scripts of the `evaluation.zip` attached to CoCosNet#25, as the UNITE/RABIT author ships them.
SWD_COPY = "fnzhan/MoNCE"


@dataclass(frozen=True)
class Source:
    """Where a pinned value comes from: ``repo`` (GitHub owner/name, or ``paper``), ``path``
    and ``lines`` (``46-48``), or an issue thread (``path`` ``issues/19``)."""

    repo: str
    path: str
    lines: str = ""
    note: str = ""

    def __str__(self) -> str:
        where = f"{self.repo} {self.path}" + (f":{self.lines}" if self.lines else "")
        return f"{where} ({self.note})" if self.note else where

    def as_dict(self) -> dict:
        return {"repo": self.repo, "path": self.path, "lines": self.lines, "note": self.note}


@dataclass(frozen=True)
class Pin:
    """One field of a preset: its ``name`` (``fid``, ``generated codec``, ...), what it is
    (``value``, in words) and its ``sources``; ``inferred`` when no script of that paper's
    repository states it and it is taken from the same author's account elsewhere."""

    name: str
    value: str
    sources: tuple[Source, ...] = ()
    inferred: bool = False

    def as_dict(self) -> dict:
        return {"field": self.name, "value": self.value, "inferred": self.inferred,
                "sources": [s.as_dict() for s in self.sources]}


@dataclass(frozen=True)
class Preset:
    """An evaluation protocol, frozen.

    families: the metric families it defines (``None``: every family, as evalkit defines
        them); the others are skipped (or refused when asked for) under it.
    fid_mode: the FID implementation (``legacy`` = pytorch-fid), or None (the options').
    generated_codec / real_codec / exemplar_codec: what each image set went through before
        the official metric scripts read it (None: nothing).
    real_resize: ``generated-size``: real images (and exemplars) PIL-resized with
        ``real_filter`` to the generated images' size, as the official data loaders did
        (256 x 256 in the papers); None: as the options say (``--real-size``).
    swd_levels: pyramid levels of the PGGAN SWD (None: from the image size down to 16 px).
    consistency: ``unite2021``: semantic/style consistency as UNITE's scripts computed them
        (:mod:`evalkit.protocols.unite`); None: evalkit's definition (README).
    """

    name: str
    title: str
    reproduces: str
    families: tuple[str, ...] | None = None
    fid_mode: str | None = None
    generated_codec: Codec | None = None
    real_codec: Codec | None = None
    exemplar_codec: Codec | None = None
    real_resize: str | None = None
    real_filter: str = "bicubic"
    swd_levels: int | None = None
    consistency: str | None = None
    pins: tuple[Pin, ...] = ()
    defects: tuple[str, ...] = ()
    unpinned: tuple[str, ...] = ()

    @property
    def is_clean(self) -> bool:
        return self.name == "clean"

    def defines(self, family: str) -> bool:
        return self.families is None or family in self.families

    def as_dict(self) -> dict:
        """What ``evalkit protocols --json`` prints for this preset."""
        return {
            "name": self.name, "title": self.title, "reproduces": self.reproduces,
            "families": list(self.families) if self.families is not None else None,
            "settings": {
                "fid_mode": self.fid_mode,
                "generated_codec": self.generated_codec.tag if self.generated_codec else None,
                "real_codec": self.real_codec.tag if self.real_codec else None,
                "exemplar_codec": self.exemplar_codec.tag if self.exemplar_codec else None,
                "real_resize": f"{self.real_resize} ({self.real_filter})" if self.real_resize else None,
                "swd_levels": self.swd_levels, "swd_variant": "pggan" if not self.is_clean else None,
                "consistency": self.consistency,
            },
            "fields": [p.as_dict() for p in self.pins],
            "defects": list(self.defects), "unpinned": list(self.unpinned),
        }


JPEG75 = Codec("jpeg", 75, pil_default=True)

# -- the pieces the three papers share ---------------------------------------------------------
_FID_PYTORCH = Pin(
    "fid", "pytorch-fid (Seitzer): pt_inception-2015-12-05 weights, bilinear resize to 299 inside the model "
           "(align_corners=False), 2048-d pool features: evalkit's fid_mode = legacy",
    (Source(COCOSNET, "issues/19", "", "panzhang0212, 2020-10-13: the FID is from pytorch-fid "
                                       "(mseitzer/pytorch-fid or the shepnerd fork)"),
     Source("mseitzer/pytorch-fid", "src/pytorch_fid/inception.py", "", "InceptionV3.forward: resize_input, "
                                                                          "normalize_input")))
_SWD_PGGAN = Pin(
    "swd", "PGGAN sliced Wasserstein distance (Karras et al. 2018): Laplacian pyramid, 128 random 7x7 "
           "neighbourhoods per image and level, drawn independently per minibatch of each set, descriptors "
           "standardised per set and channel, 4 repeats x 128 random directions, x1e3; 5 levels, as the script "
           "hard-codes a 256 x 256 image shape; both sets of equal size: evalkit's variant pggan, swd_levels = 5",
    (Source(COCOSNET, "issues/25", "", "panzhang0212, 2020-10-31: the official PGGAN code, evaluation.zip, "
                                       "`python cal_sliced_wasserstein.py synthesis_folder real_folder`"),
     Source(SWD_COPY, "Utils/SWD/sliced_wasserstein.py", "91-101", "API: nhood_size 7, nhoods_per_image 128, "
                                                                  "dir_repeats 4, dirs_per_repeat 128, levels "
                                                                  "while res >= 16"),
     Source(SWD_COPY, "Utils/SWD/sliced_wasserstein.py", "6-16", "centres drawn per minibatch and neighbourhood"),
     Source(SWD_COPY, "Utils/SWD/cal_sliced_wasserstein.py", "48,56", "equal counts asserted; image_shape fixed "
                                                                     "at [3, 256, 256]")))
_SWD_DEFECT = ("SWD: the script draws patch centres and directions from NumPy's global RNG without a seed "
               "(cal_sliced_wasserstein.py, sliced_wasserstein.py:13-14,35), so its value changes from run to run "
               "and it lists the folders with os.listdir; evalkit draws the same distributions from a seeded "
               "generator (float64 instead of float32)")
_FID_DEFECT = ("FID: pytorch-fid takes the matrix square root with scipy.linalg.sqrtm; evalkit computes the "
               "same trace term from eigenvalues (README, FID), equal to far below the printed digits")


def _real_resize_pin(repo: str, dataset_lines: str, transform_lines: str) -> Pin:
    """The test loader's resize (``repo`` publishes it, else UNITE's, same author)."""
    note = "" if repo != RABIT else ("; RABIT's tree publishes data/pix2pix_dataset.py only, which imports "
                                     "get_transform from data/base_dataset.py: UNITE's, same author")
    src = UNITE if repo == RABIT else repo
    return Pin("real resize", "real images (and exemplars) PIL-bicubic-resized to the output size, 256 x 256 "
                              "(aspect ratio not kept): the test loader's resize_and_crop with load_size = "
                              "crop_size = 256; evalkit resizes them to the generated images' size",
               (Source(src, "data/ade20k_dataset.py", dataset_lines, "preprocess_mode resize_and_crop, test "
                                                                     "load_size 256, crop_size 256"),
                Source(src, "data/base_dataset.py", transform_lines,
                       "transforms.Resize([load_size, load_size], interpolation=BICUBIC)" + note)),
               inferred=repo == RABIT)


CLEAN = Preset(
    name="clean", title="evalkit's own protocol (today's default)",
    reproduces="no paper: the definitions of README.md (Metrics and evaluation protocol), every option as given",
    pins=(Pin("all", "every option of `evalkit evaluate` applies as given (--fid-mode, --real-size, "
                     "--swd-shared-patches, ...); no codec is simulated", (Source("evalkit", "README.md", "",
                                                                                    "Metrics and evaluation "
                                                                                    "protocol"),)),),
)

COCOSNET2020 = Preset(
    name="cocosnet2020", title="CoCosNet (Zhang et al., CVPR 2020), released evaluation",
    reproduces="CoCosNet Table 1 (FID, SWD) as the authors re-ran it in CoCosNet#19/#25: the 14.3 FID on "
               "CelebA-HQ needs the .jpg outputs",
    families=("fid", "swd"), fid_mode="legacy", generated_codec=JPEG75, real_resize="generated-size",
    swd_levels=5,
    pins=(
        Pin("generated codec", "JPEG, Pillow's defaults (quality 75, 4:2:0): test.py --save_per_img names each "
                               "output after its dataset image (ADE_val_*.jpg) and torchvision's save_image "
                               "writes it with Image.save(fp)",
            (Source(COCOSNET, "test.py", "46-48", "name = os.path.basename(data_i['path'][i]); "
                                                  "vutils.save_image(...)"),
             Source(COCOSNET, "data/pix2pix_dataset.py", "", "'path': image_path, the .jpg of the dataset"),
             Source(COCOSNET, "issues/19", "", "fnzhan, 2020-10-13: saving '.png' lowers the FID, '.jpg' "
                                               "reproduces the reported one"))),
        _FID_PYTORCH,
        _real_resize_pin(COCOSNET, "14,18-19", "47,51-53"),
        Pin("real codec", "none simulated: the ground-truth folder the scripts read (fid_256) is not published",
            (Source(SWD_COPY, "Utils/SWD/cal_sliced_wasserstein.py", "", "usage line: .../ADEChallengeData2016/"
                                                                        "fid_256/"),)),
        _SWD_PGGAN,
    ),
    defects=(
        "test.py without --save_per_img writes grids (label | exemplar | output) as .png (test.py:51-67), "
        "which no metric reads; the per-image .jpg outputs are what the numbers were computed on",
        _SWD_DEFECT, _FID_DEFECT,
    ),
    unpinned=(
        "semantic consistency / style relevance (CoCosNet Table 2): CoCosNet#28 names sc_vgg_metric.py of the "
        "evaluation.zip (a copy: fnzhan/UNITE util/sc_vgg_metric.py: relu3_2/4_2/5_2 of the Caffe VGG19, the "
        "original ground truth bilinear-resized to 256, cosines of label-region means weighted by region "
        "area); not reproduced here, so the vgg family is not part of this preset",
        "the real images' file format (fid_256): unknown, so no real codec is simulated",
        "LPIPS: CoCosNet's released scripts compute none",
    ),
)

_UNITE_VGG = ("models/vgg19_conv.pth, the Caffe-converted VGG19 in the scripts' layout: conv1_1 ... conv5_4, "
              "keys conv{b}_{i}.weight / .bias (evalkit weights key vgg19-caffe)")

UNITE2021 = Preset(
    name="unite2021", title="UNITE (Zhan et al., CVPR 2021), released evaluation scripts",
    reproduces="UNITE Table 1 (FID, SWD, LPIPS diversity) and Table 2 (semantic VGG42/VGG52, style VGG_M/VGG_V) "
               "as its released test.py and util/vgg_*_relevance.py compute them",
    families=("fid", "swd", "lpips-diversity", "vgg"), fid_mode="legacy", generated_codec=JPEG75,
    exemplar_codec=JPEG75, real_resize="generated-size", swd_levels=5, consistency="unite2021",
    pins=(
        Pin("generated codec", "JPEG, Pillow's defaults (quality 75): outputs saved as pre/<i>_<j>.jpg",
            (Source(UNITE, "test.py", "62-63", "vutils.save_image(pre_, ... + '.jpg')"),)),
        Pin("exemplar codec", "JPEG, Pillow's defaults (quality 75): exemplars saved as <i>_<j>_ref.jpg",
            (Source(UNITE, "test.py", "70-71", "vutils.save_image(ref_, ... + '_ref.jpg')"),)),
        Pin("real codec", "none: test.py does not save the ground truth (its save_image is commented out)",
            (Source(UNITE, "test.py", "66-67"),)),
        Pin("fid", _FID_PYTORCH.value, _FID_PYTORCH.sources + (
            Source(COCOSNET, "issues/19", "", "fnzhan (UNITE's first author) reproducing CoCosNet's FID with "
                                              "pytorch-fid on .jpg outputs; UNITE's repository names no FID code"),),
            inferred=True),
        _real_resize_pin(UNITE, "14,18-19", "50,54-56"),
        Pin("swd", _SWD_PGGAN.value, _SWD_PGGAN.sources + (
            Source(COCOSNET, "issues/25", "", "asked for by fnzhan, who ships the script in fnzhan/MoNCE"),),
            inferred=True),
        Pin("lpips", "LPIPS diversity: the lpips package, AlexNet trunk (v0.1 linear layers, its default), inputs "
                     "in [-1, 1]; per conditional input the mean over all pairs of its outputs under 3 exemplars, "
                     "averaged over inputs (evalkit's lpips-diversity)",
            (Source("paper", "UNITE Sec. 4 (Evaluation Metrics)", "", "LPIPS on AlexNet features for diversity "
                                                                       "with different exemplars"),
             Source("paper", "RABIT Sec. 4.1", "", "same author: three exemplars per input, LPIPS averaged over "
                                                   "any two outputs")), inferred=True),
        Pin("vgg weights", _UNITE_VGG,
            (Source(UNITE, "util/vgg_seman_relevance.py", "168-169", "VGG19_feature_color_torchversion("
                                                                    "vgg_normal_correct=False), load_state_dict"),
             Source(UNITE, "util/vgg_style_relevance.py", "13-80,146-147"),
             Source(COCOSNET, "issues/28", "", "the file is VGG19 pretrained by Caffe (zhangmozhe, 2020-11-10)"))),
        Pin("vgg input", "RGB -> BGR, minus (0.40760392, 0.45795686, 0.48501961), x 255 (Caffe's mean-"
                         "subtracted BGR 0..255, given RGB in [0, 1]); the style script divides the pixels by 255 "
                         "first, the semantic script does not (its inputs are 255 x too large)",
            (Source(UNITE, "util/vgg_style_relevance.py", "82-91,178-182", "vgg_preprocess; pre / 255.0"),
             Source(UNITE, "util/vgg_seman_relevance.py", "83-92,205-209", "vgg_preprocess; no / 255"))),
        Pin("semantic consistency", "relu4_2 (VGG42; VGG52: the same code at relu5_2) of output and ground "
                                    "truth, nearest-upsampled to the image size; per image the sum over the "
                                    "label values k of the label map of cos(mean of F_gt over region k, mean of "
                                    "F_out over region k) x area(k) / area(image); mean over images; output, "
                                    "ground truth and label map paired by file name (needs --labels)",
            (Source(UNITE, "util/vgg_seman_relevance.py", "143-159", "cal_feat_dist"),
             Source(UNITE, "util/vgg_seman_relevance.py", "190-218", "same nms[i] for gt, pre, label; r42; "
                                                                    "F.interpolate(..., (256, 256), 'nearest')"))),
        Pin("style consistency", "relu1_2 of output and exemplar; cosine (eps 1e-6) of the channel means (VGG_M, "
                                 "row style-mean) and of the channel variances, unbiased (torch.var; VGG_V, row "
                                 "style-std); output i is paired with the exemplar of the next sample in the "
                                 "listing (off-by-one), the last with the first; mean over images",
            (Source(UNITE, "util/vgg_style_relevance.py", "166,168-205", "ref_path = ref_dir + nms[i+1]; "
                                                                         "torch.var; nn.CosineSimilarity"),)),
    ),
    defects=(
        "style consistency pairs each output with the exemplar of the next listed sample "
        "(util/vgg_style_relevance.py:174, nms[i+1]); as published the last index runs past the list "
        "(IndexError), evalkit pairs the last output with the first exemplar; the listing is os.listdir "
        "(file-system order), evalkit's is the sorted generated names",
        "VGG_V compares channel variances (torch.var, unbiased), not standard deviations as the paper says; "
        "the row is still named style-std",
        "the semantic script feeds 0..255 pixels to a preprocessing that expects [0, 1] "
        "(util/vgg_seman_relevance.py:205-209), so its VGG sees the image x 255",
        "util/vgg_style_relevance2.py, the other style script, pairs correctly but computes VGG_M from the "
        "variances too (m = cos(pre_var, ref_var)); not this preset",
        "test.py stops after 400 samples (test.py:35) and raises ZeroDivisionError after the first image "
        "(print(1/0), test.py:84): the released script cannot have written the evaluated sets as is",
        _SWD_DEFECT, _FID_DEFECT,
    ),
    unpinned=(
        "the real images of FID/SWD: test.py saves none; taken as the data loader's bicubic 256 x 256 images, "
        "not re-encoded",
        "the sha256 of vgg19_conv.pth: published nowhere (Google Drive file of the CoCosNet README); evalkit "
        "records the sha256 of the file it loads",
        "lpips version: the package default (v0.1) is assumed",
    ),
)

RABIT2022 = Preset(
    name="rabit2022", title="RABIT (Zhan et al., ECCV 2022), released test script",
    reproduces="RABIT Table 1 (FID, SWD, LPIPS diversity) and the CelebA-HQ side of Table 2 (FID, SWD, "
               "LPIPS to the ground truth) on the pre/ and gt/ folders its test.py writes",
    families=("fid", "swd", "lpips", "lpips-diversity"), fid_mode="legacy", generated_codec=JPEG75,
    real_codec=JPEG75, real_resize="generated-size", swd_levels=5,
    pins=(
        Pin("generated codec", "JPEG, Pillow's defaults (quality 75): pre/<i>_<j>.jpg",
            (Source(RABIT, "test.py", "61-63", "vutils.save_image(pre_, ... + '.jpg')"),)),
        Pin("real codec", "JPEG, Pillow's defaults (quality 75): the ground truth is the loader's resized image "
                          "saved as gt/<i>_<j>.jpg",
            (Source(RABIT, "test.py", "47,65-67", "gt = data_i['image']; vutils.save_image(gt_, ... + '.jpg')"),)),
        _real_resize_pin(RABIT, "14,18-19", "50,54-56"),
        Pin("fid", _FID_PYTORCH.value, _FID_PYTORCH.sources, inferred=True),
        Pin("swd", _SWD_PGGAN.value, _SWD_PGGAN.sources, inferred=True),
        Pin("lpips", "the lpips package, AlexNet trunk (v0.1), inputs in [-1, 1]: diversity over 3 exemplars per "
                     "input (all pairs, averaged), and LPIPS to the ground truth for CelebA-HQ manipulation",
            (Source("paper", "RABIT Sec. 4.1", "", "three exemplars per input, LPIPS between any two outputs"),),
            inferred=True),
    ),
    defects=(_SWD_DEFECT, _FID_DEFECT),
    unpinned=(
        "RABIT's repository publishes no metric script: FID/SWD/LPIPS follow the same author's UNITE/CoCosNet "
        "evaluation (marked inferred)",
        "PSNR/SSIM of the ADE20K manipulation table: implementation not published; not part of this preset",
        "exemplars: test.py does not save them (commented out), so no exemplar codec",
    ),
)

PRESETS: dict[str, Preset] = {p.name: p for p in (CLEAN, COCOSNET2020, UNITE2021, RABIT2022)}
DEFAULT = "clean"


def names() -> tuple[str, ...]:
    return tuple(PRESETS)


def get(name: str) -> Preset:
    """The preset called ``name``; one :class:`EvalkitError` naming the choices otherwise."""
    from evalkit.errors import EvalkitError

    if isinstance(name, Preset):
        return name
    if name not in PRESETS:
        raise EvalkitError(f"unknown protocol {name!r}; choose one of {', '.join(PRESETS)} (`evalkit protocols`)")
    return PRESETS[name]


__all__ = ["Source", "Pin", "Preset", "PRESETS", "DEFAULT", "JPEG75", "names", "get"]
