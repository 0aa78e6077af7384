"""Datasets of exemplar-based translation: typed samples, a registry, the official
layouts (ADE20K, CelebA-HQ, DeepFashion, COCO-Stuff) and the built-in "shapes"."""

from evalkit.data.registry import DatasetSpec, dataset_spec, get_dataset, list_datasets, register_dataset
from evalkit.data.sample import Batch, Sample, collate, label_palette, to_uint8_image, visualise_cond
from evalkit.data import shapes  # noqa: F401  (registers shapes, shapes-edge, shapes-keypoints)
from evalkit.data import ade20k, celebahq, cocostuff, deepfashion  # noqa: F401  (register the official layouts)
from evalkit.data import manipulation  # noqa: F401  (registers manipulation, shapes-manipulation)

__all__ = [
    "Sample", "Batch", "collate", "to_uint8_image", "visualise_cond", "label_palette",
    "get_dataset", "list_datasets", "register_dataset", "dataset_spec", "DatasetSpec",
]
