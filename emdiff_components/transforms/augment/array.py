"""Serial-section EM augmentations of the Superhuman training recipe that MONAI lacks: misalignment, missing sections.

Lee et al. "Superhuman Accuracy on the SNEMI3D Connectomics Challenge", https://arxiv.org/abs/1706.00120 (section
2.3: misalignment and missing-section augmentation), with the values of the NeuroDiff public trainer (Jiang et al.,
ISBI 2026, https://arxiv.org/abs/2601.15779; ``segmentation_scripts/dataloader/provider_train.py``).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from monai.config import NdarrayOrTensor
from monai.transforms import RandomizableTransform
from monai.utils import TransformBackends, convert_to_numpy
from monai.utils.type_conversion import convert_to_dst_type

__all__ = ["RandMisalignment", "RandMissingSection"]

MISSING_MODES = ("mix", "fully", "partially")


def _check_probability(name: str, arg: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ValueError(f"{name}: {arg} must be a probability in [0, 1], got {value!r}.")
    return float(value)


def _check_int(name: str, arg: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{name}: {arg} must be an int >= 0, got {value!r}.")
    return int(value)


def _sections_first(name: str, img: NdarrayOrTensor, axis: int) -> np.ndarray:
    """``(C, Z, Y, X)`` with sections on ``axis`` -> numpy with sections on axis 1 (a view where possible)."""
    arr = convert_to_numpy(img)
    if arr.ndim != 4 or not 1 <= axis <= 3:
        raise ValueError(f"{name}: expected a channel-first volume (C, Z, Y, X) with axis in 1..3, got "
                         f"{tuple(arr.shape)} and axis {axis}.")
    return np.moveaxis(arr, axis, 1)


class RandMisalignment(RandomizableTransform):
    """Displace serial sections in-plane by whole voxels: one or several sections "slip", or all sections "shift".

    With probability ``prob`` a call misaligns; it then draws a slip with probability ``slip_ratio``, else a shift:

    - slip: every section but the first, independently with probability ``prob_slip``, gets its own offset;
    - shift: going up from the second section, the first section drawn with probability ``prob_shift`` gets an
      offset and every later section the same offset (the stack is cut in two); at most one cut.

    Offsets ``(dy, dx)`` are uniform integers in ``[-max_misalign, max_misalign]``, and ``out[:, z, y, x] =
    in[:, z, y + dy, x + dx]``: no interpolation, so labels stay labels. Outside the volume the section is mirrored
    (``numpy.pad`` "reflect") over ``padding`` voxels and 0 beyond. ``self.offsets`` holds the last draw, ``(Z, 2)``.

    Public code (``utils/augmentation.py`` ``ElasticAugment`` with ``jitter_sigma=[0, 0, 0]``, ``prob_slip=0.2``,
    ``prob_shift=0.2``, ``max_misalign=17``, ``padding=20``; ``skip_ratio`` 0.5 is ``prob``): the same draws and
    warp; its elastic part is off (zero jitter). Differences: it writes warped labels as uint16 (ids above 65535
    wrap); here the dtype is kept. The original Superhuman recipe (commented out there) could both slip and shift
    in one call.

    Args:
        prob: probability of misaligning at all; default 0.5.
        prob_slip: per-section slip probability; default 0.2.
        prob_shift: per-section probability of the cut of a shift; default 0.2.
        max_misalign: largest offset in voxels (int >= 0); default 17.
        padding: voxels mirrored in before shifting (int >= 0); default 20.
        slip_ratio: probability that a misaligning call slips rather than shifts; default 0.5.
        axis: the section axis of the channel-first input; default 1 (``(C, Z, Y, X)``).

    Returns:
        the misaligned volume, same shape, type and dtype as the input.

    Example::

        misalign = RandMisalignment()
        misalign.set_random_state(0)
        image = misalign(image)  # (1, 16, 160, 160)
    """

    backend: ClassVar[list[TransformBackends]] = [TransformBackends.NUMPY]

    def __init__(
        self,
        prob: float = 0.5,
        prob_slip: float = 0.2,
        prob_shift: float = 0.2,
        max_misalign: int = 17,
        padding: int = 20,
        slip_ratio: float = 0.5,
        axis: int = 1,
    ) -> None:
        name = type(self).__name__
        RandomizableTransform.__init__(self, _check_probability(name, "prob", prob))
        self.prob_slip = _check_probability(name, "prob_slip", prob_slip)
        self.prob_shift = _check_probability(name, "prob_shift", prob_shift)
        self.slip_ratio = _check_probability(name, "slip_ratio", slip_ratio)
        self.max_misalign = _check_int(name, "max_misalign", max_misalign)
        self.padding = _check_int(name, "padding", padding)
        self.axis = axis
        self.offsets = np.zeros((0, 2), dtype=np.int64)

    def randomize(self, num_sections: int) -> None:  # type: ignore[override]
        """Draw ``self.offsets`` (``(num_sections, 2)`` integer ``(dy, dx)``; all 0 when nothing happens)."""
        super().randomize(None)
        self.offsets = np.zeros((num_sections, 2), dtype=np.int64)
        if not self._do_transform:
            return
        m = self.max_misalign
        if self.R.rand() < self.slip_ratio:
            for z in range(1, num_sections):
                if self.R.rand() < self.prob_slip:
                    self.offsets[z] = self.R.randint(-m, m + 1, size=2)
        else:
            for z in range(1, num_sections):
                if self.R.rand() < self.prob_shift:
                    self.offsets[z:] = self.R.randint(-m, m + 1, size=2)
                    break

    def __call__(self, img: NdarrayOrTensor, randomize: bool = True) -> NdarrayOrTensor:
        arr = _sections_first(type(self).__name__, img, self.axis)
        if randomize:
            self.randomize(arr.shape[1])
        if len(self.offsets) != arr.shape[1]:
            raise ValueError(f"{type(self).__name__}: the drawn offsets are for {len(self.offsets)} sections, the "
                             f"volume has {arr.shape[1]}.")
        if not self.offsets.any():
            return img
        extra = max(0, int(np.abs(self.offsets).max()) - self.padding)
        pad = ((0, 0), (0, 0), (self.padding, self.padding), (self.padding, self.padding))
        padded = np.pad(np.pad(arr, pad, mode="reflect"), [(0, 0), (0, 0), (extra, extra), (extra, extra)])
        out = arr.copy()
        size_y, size_x, border = arr.shape[2], arr.shape[3], self.padding + extra
        for z in np.flatnonzero(self.offsets.any(axis=1)):
            y0, x0 = border + self.offsets[z, 0], border + self.offsets[z, 1]
            out[:, z] = padded[:, z, y0:y0 + size_y, x0:x0 + size_x]
        return convert_to_dst_type(np.moveaxis(out, 1, self.axis), img)[0]


class RandMissingSection(RandomizableTransform):
    """Blank whole sections or a rectangle in sections of an image, as lost or damaged serial sections.

    A call picks ``"fully"`` or ``"partially"`` (each with probability 1/2 in ``mode="mix"``), then:

    - fully: every section, independently with probability ``miss_fully_ratio``, is set to ``fill_value``;
    - partially: every section, with probability ``miss_part_ratio``, gets a rectangle of ``fill_value`` whose
      height is a uniform integer in ``[int(size_ratio * Y), int((1 - size_ratio) * Y)]`` (width likewise in X) and
      whose corner is uniform in ``[0, Y - height - 1]`` x ``[0, X - width - 1]``.

    All channels of a section are blanked together. For images only: labels of a missing section stay (the network
    must infer them from the neighbouring sections). ``self.boxes`` holds the last draw, rows ``(z, y0, y1, x0, x1)``.

    Public code (``utils/consistency_aug_perturbations.py`` ``Missing(miss_fully_ratio=0.2, miss_part_ratio=0.5)``,
    filling 'zero', mode 'mix'): the same draws. Its ``skip_ratio`` is never read, so it always runs: ``prob``
    defaults to 1. NeuroDiff's configs leave this augmentation off (``if_missing_aug: False``); its 'random' filling
    is not carried over. Images there are in [0, 1], so 0 is black; set ``fill_value`` for other ranges (-1 in [-1, 1]).

    Args:
        prob: probability of running at all; default 1.0.
        miss_fully_ratio: per-section probability of a whole missing section; default 0.2.
        miss_part_ratio: per-section probability of a missing rectangle; default 0.5.
        mode: ``"mix"`` (default), ``"fully"`` or ``"partially"``.
        size_ratio: rectangle sides lie in ``[size_ratio, 1 - size_ratio]`` of the section, in [0, 0.5]; default 0.3.
        fill_value: value of the missing voxels; default 0.0.
        axis: the section axis of the channel-first input; default 1 (``(C, Z, Y, X)``).

    Returns:
        the image, same shape, type and dtype as the input.

    Example::

        missing = RandMissingSection(fill_value=-1.0)
        missing.set_random_state(0)
        image = missing(image)  # (1, 16, 160, 160) in [-1, 1]
    """

    backend: ClassVar[list[TransformBackends]] = [TransformBackends.NUMPY]

    def __init__(
        self,
        prob: float = 1.0,
        miss_fully_ratio: float = 0.2,
        miss_part_ratio: float = 0.5,
        mode: str = "mix",
        size_ratio: float = 0.3,
        fill_value: float = 0.0,
        axis: int = 1,
    ) -> None:
        name = type(self).__name__
        RandomizableTransform.__init__(self, _check_probability(name, "prob", prob))
        self.miss_fully_ratio = _check_probability(name, "miss_fully_ratio", miss_fully_ratio)
        self.miss_part_ratio = _check_probability(name, "miss_part_ratio", miss_part_ratio)
        if mode not in MISSING_MODES:
            raise ValueError(f"{name}: mode must be one of {MISSING_MODES}, got {mode!r}.")
        if isinstance(size_ratio, bool) or not isinstance(size_ratio, (int, float)) or not 0 <= size_ratio <= 0.5:
            raise ValueError(f"{name}: size_ratio must lie in [0, 0.5], got {size_ratio!r}.")
        self.mode, self.size_ratio, self.fill_value, self.axis = mode, float(size_ratio), float(fill_value), axis
        self.boxes = np.zeros((0, 5), dtype=np.int64)

    def randomize(self, spatial_shape: tuple[int, int, int]) -> None:  # type: ignore[override]
        """Draw ``self.boxes`` for a ``(Z, Y, X)`` volume."""
        super().randomize(None)
        self.boxes = np.zeros((0, 5), dtype=np.int64)
        if not self._do_transform:
            return
        num, h, w = spatial_shape
        mode = self.mode if self.mode != "mix" else ("fully" if self.R.rand() < 0.5 else "partially")
        boxes = []
        for z in range(num):
            if mode == "fully":
                if self.R.rand() < self.miss_fully_ratio:
                    boxes.append((z, 0, h, 0, w))
            elif self.R.rand() < self.miss_part_ratio:
                sub_h = self.R.randint(int(h * self.size_ratio), int(h * (1 - self.size_ratio)) + 1)
                sub_w = self.R.randint(int(w * self.size_ratio), int(w * (1 - self.size_ratio)) + 1)
                y0, x0 = self.R.randint(0, max(h - sub_h, 1)), self.R.randint(0, max(w - sub_w, 1))
                boxes.append((z, y0, y0 + sub_h, x0, x0 + sub_w))
        self.boxes = np.asarray(boxes, dtype=np.int64).reshape(-1, 5)

    def __call__(self, img: NdarrayOrTensor, randomize: bool = True) -> NdarrayOrTensor:
        arr = _sections_first(type(self).__name__, img, self.axis)
        if randomize:
            self.randomize(arr.shape[1:])
        if len(self.boxes) == 0:
            return img
        out = arr.copy()
        for z, y0, y1, x0, x1 in self.boxes:
            out[:, z, y0:y1, x0:x1] = self.fill_value
        return convert_to_dst_type(np.moveaxis(out, 1, self.axis), img)[0]
