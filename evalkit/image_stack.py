"""The image sets of an evaluation, held in memory or decoded from their files batch by batch.

An :class:`ImageStack` is N uint8 ``[3, H, W]`` images with their content hashes
(:func:`evalkit.images.content_hash`, the feature cache's keys) and shapes. A set read from
files is decoded once when it is built: every file is validated and hashed before any work.
A set of at most ``hold_bytes`` decoded bytes (:data:`HOLD_BYTES` by default) is then
held. A larger one is decoded again, batch by batch, wherever a metric asks for its images.
Memory then stays bounded whatever N is (issue 15 item 3). Each batch costs one more decode,
small next to the backbone pass it feeds.

Indexing follows a ``[N, 3, H, W]`` tensor: ``stack[i]`` is one ``[3, H, W]`` image,
``stack[[i, j]]`` (a list, range, slice or index array) a ``[B, 3, H, W]`` batch (one size).
``subset`` and ``concat`` are views: they decode nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch

from evalkit.errors import EvalkitError
from evalkit.images import content_hash

HOLD_BYTES = 64 * 2 ** 20  # a set of at most this many decoded bytes is held in memory
DECODE_BATCH = 32  # images decoded at a time when a set is read or iterated


class _Held:
    """Images in memory: a ``[N, 3, H, W]`` tensor or a list of ``[3, H, W]`` tensors."""

    def __init__(self, images):
        self.images = images

    def get(self, local: list[int]) -> list[torch.Tensor]:
        return [self.images[i] for i in local]

    def batch(self, local: list[int]) -> torch.Tensor | None:
        return self.images[local] if isinstance(self.images, torch.Tensor) else None


class _Files:
    """Images decoded on demand: ``prepare(indices)`` returns their uint8 ``[H, W, 3]`` arrays."""

    def __init__(self, prepare: Callable[[list[int]], list[np.ndarray]]):
        self.prepare = prepare

    def get(self, local: list[int]) -> list[torch.Tensor]:
        return [_chw(im) for im in self.prepare(local)]

    def batch(self, local: list[int]) -> torch.Tensor | None:
        return None


def as_stack(images, what: str = "images") -> ImageStack:
    """``images`` as an :class:`ImageStack`: a stack as it is, a uint8 ``[N, 3, H, W]`` array
    or tensor validated (:func:`evalkit.images.as_uint8_batch`, naming ``what``) and held."""
    from evalkit.images import as_uint8_batch

    return images if isinstance(images, ImageStack) else ImageStack.of(as_uint8_batch(images, what))


def _chw(image_hwc: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image_hwc.transpose(2, 0, 1)))


class ImageStack:
    """N uint8 ``[3, H, W]`` images (see the module docstring); ``hashes[i]`` and
    ``shapes[i]`` are image i's content hash and shape."""

    def __init__(self, sources: list, index: list[tuple[int, int]], hashes: list[str] | None, shapes: list[tuple]):
        self._sources, self._index = sources, index
        self._hashes, self.shapes = hashes, shapes

    @property
    def hashes(self) -> list[str]:
        """The content hash of each image (computed on first use for a stack of tensors)."""
        if self._hashes is None:
            self._hashes = [content_hash(x) for x in self]
        return self._hashes

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def of(cls, images) -> ImageStack:
        """A held stack of a ``[N, 3, H, W]`` uint8 tensor, a list of ``[3, H, W]`` tensors, or a stack."""
        if isinstance(images, ImageStack):
            return images
        return cls([_Held(images)], [(0, i) for i in range(len(images))], None, [tuple(x.shape) for x in images])

    @classmethod
    def from_files(cls, n: int, prepare: Callable[[list[int]], list[np.ndarray]], *,
                   hold_bytes: int | None = None) -> ImageStack:
        """The ``n`` images ``prepare(indices)`` decodes (uint8 ``[H, W, 3]``), each decoded
        now (validated, hashed); held when they take at most ``hold_bytes`` (default
        :data:`HOLD_BYTES`), else decoded again on demand."""
        hold_bytes = HOLD_BYTES if hold_bytes is None else hold_bytes
        hashes, shapes, held, size = [], [], [], 0
        for start in range(0, n, DECODE_BATCH):
            for im in prepare(list(range(start, min(n, start + DECODE_BATCH)))):
                t = _chw(im)
                hashes.append(content_hash(t))
                shapes.append(tuple(t.shape))
                size += t.numel()
                if held is not None and size > hold_bytes:
                    held = None
                if held is not None:
                    held.append(t)
        if held is not None:
            one = len(set(shapes)) == 1 and n > 0
            source = _Held(torch.stack(held) if one else held)
        else:
            source = _Files(prepare)
        return cls([source], [(0, i) for i in range(n)], hashes, shapes)

    @classmethod
    def concat(cls, *stacks: ImageStack) -> ImageStack:
        """The images of ``stacks`` one after the other (a view)."""
        sources, index = [], []
        for s in stacks:
            offset = len(sources)
            sources += s._sources
            index += [(src + offset, i) for src, i in s._index]
        return cls(sources, index, [h for s in stacks for h in s.hashes], [x for s in stacks for x in s.shapes])

    def subset(self, indices: Sequence[int]) -> ImageStack:
        """Images ``indices`` of this stack, in that order (a view)."""
        indices = [int(i) for i in indices]
        hashes = None if self._hashes is None else [self._hashes[i] for i in indices]
        return ImageStack(self._sources, [self._index[i] for i in indices], hashes, [self.shapes[i] for i in indices])

    # -- what it holds --------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._index)

    @property
    def held(self) -> bool:
        """Every image is in memory (nothing is decoded on access)."""
        return all(isinstance(self._sources[s], _Held) for s, _ in self._index)

    @property
    def one_size(self) -> bool:
        return len(set(self.shapes)) == 1

    @property
    def shape(self) -> tuple[int, ...]:
        """``(N, 3, H, W)``; an AttributeError for mixed sizes (``hasattr`` is then False)."""
        if not self.one_size:
            raise AttributeError("images of mixed sizes have no one shape")
        return (len(self), *self.shapes[0])

    @property
    def ndim(self) -> int:
        return 4 if self.one_size else 1

    def images(self, indices: Sequence[int]) -> list[torch.Tensor]:
        """Images ``indices`` as ``[3, H, W]`` tensors, each source read once per call."""
        by_source: dict[int, list[tuple[int, int]]] = {}
        for k, i in enumerate(indices):
            src, local = self._index[int(i)]
            by_source.setdefault(src, []).append((k, local))
        out: list = [None] * len(indices)
        for src, items in by_source.items():
            for (k, _), image in zip(items, self._sources[src].get([local for _, local in items])):
                out[k] = image
        return out

    def __getitem__(self, key):
        if isinstance(key, (int, np.integer)):
            return self.images([int(key) % len(self)])[0]
        if isinstance(key, slice):
            indices = list(range(len(self)))[key]
        elif isinstance(key, torch.Tensor):
            indices = key.tolist()
        else:
            indices = [int(i) for i in key]
        return self.batch(indices)

    def batch(self, indices: Sequence[int]) -> torch.Tensor:
        """Images ``indices`` as one ``[B, 3, H, W]`` tensor (they must share one size)."""
        indices = list(indices)
        if len({self.shapes[i] for i in indices}) > 1:
            raise EvalkitError("a batch of images of mixed sizes cannot be one tensor; take them one by one")
        sources = {self._index[i][0] for i in indices}
        if len(sources) == 1:
            src = next(iter(sources))
            direct = self._sources[src].batch([self._index[i][1] for i in indices])
            if direct is not None:
                return direct
        if not indices:
            return torch.empty((0, *self.shapes[0]) if self.shapes else (0, 3, 0, 0), dtype=torch.uint8)
        return torch.stack(self.images(indices))

    def batches(self, size: int = DECODE_BATCH) -> Iterator[tuple[list[int], torch.Tensor]]:
        """``(indices, [B, 3, H, W])`` over the whole stack in order, ``size`` images at a time."""
        for start in range(0, len(self), size):
            idx = list(range(start, min(len(self), start + size)))
            yield idx, self.batch(idx)

    def __iter__(self) -> Iterator[torch.Tensor]:
        for start in range(0, len(self), DECODE_BATCH):
            yield from self.images(range(start, min(len(self), start + DECODE_BATCH)))

    def tensor(self) -> torch.Tensor:
        """Every image as one ``[N, 3, H, W]`` tensor (O(N) memory: for small sets and shards)."""
        return self.batch(range(len(self)))
