"""Cell population composition: synthetic single cells placed without overlap, clustered, on a noisy background.

Yilmaz et al. "Cascaded Diffusion Models for 2D and 3D Microscopy Image Synthesis to Enhance Cell Segmentation",
https://arxiv.org/abs/2411.11515, stage 4, after Svoboda and Ulman "Towards a Realistic Distribution of Cells in
Synthetically Generated 3D Cell Populations", ICIAP 2013, https://doi.org/10.1007/978-3-642-41184-7_44, as the public
``utils/cell_placement.py`` and ``utils/combine_images.py`` do it (numbers from there):

1. Draw the number of cells in 40..49 and that many cells without replacement.
2. The first cell goes to a uniform position at least (200, 300) px from the edges of the position grid.
3. Every further cell: the positions where its mask overlaps no placed cell come from the cross-correlation of the
   mask with the occupancy map (FFT). With probability 1.0 it joins a cluster: ``depth`` = distance of each
   forbidden position to the nearest free one; positions whose 50 x 50 neighbourhood holds depths ``1 < max < mu``
   (mu = 10) form a band at a small gap from the placed cells. Otherwise the free positions eroded by 2 x 2 count.
   The candidates are kept inside a central ellipse (radii 100 px in Y, 150 px in X) and one is drawn uniformly. A
   cell without candidate is skipped (logged), as in the public code.
4. Background: level 23, 2000 random pixels set to values in [20, 500), plus 15000 random pixels in [20, 500) added
   inside the ellipse dilated by 50 px; cell textures (clipped to [0, 255]) replace the background under their masks;
   finally a vertical blur with weights (1, 2, 3, 4, 4, 3, 2, 1) / 20.

Differences from the public code, on purpose: positions are computed in one frame (the public code finds them for a
cell's bounding-box centre on a canvas 64 px smaller but pastes the 64 x 64 crop's corner there, which shifts every
cell by about 32 px consistently); overlap is zero (the public code accepts cross-correlation below 0.2 of its
maximum, with the mask mirrored by the missing conjugate, and lets cluster candidates fall on forbidden positions);
the noise counts scale with the image area (equal at the public 512 x 708); the image stays float32 (the public
``astype(np.uint8)`` wraps values above 255).

3D: the public code composes 2D images only. Here cells given as (Z, Y, X) stacks keep all their slices, centred in
the stack's depth, and are placed in-plane: the overlap test uses every slice, the ellipse and cluster rules the
in-plane position grid; background noise and blur are drawn per slice with the 2D numbers.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np
from scipy import ndimage
from scipy.signal import fftconvolve

__all__ = ["compose_population"]

logger = logging.getLogger(__name__)

DEFAULT_CLUSTER = {"probability": 1.0, "window": 50, "mu": 10.0, "first_margin": (200, 300), "erode": 2}
DEFAULT_BACKGROUND = {
    "level": 23.0,
    "noise_pixels": 2000,
    "ellipse_noise_pixels": 15000,
    "noise_range": (20, 500),
    "ellipse_dilation": 50,
    "texture_clip": (0.0, 255.0),
    "blur": (1, 2, 3, 4, 4, 3, 2, 1),
    "reference_area": 512 * 708,
}


def _options(given: Mapping | None, defaults: dict, name: str) -> dict:
    given = dict(given or {})
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ValueError(f"compose_population: unknown {name} keys {unknown}; known: {sorted(defaults)}.")
    return {**defaults, **given}


def _ellipse(shape: tuple[int, int], radii: tuple[float, float] | None) -> np.ndarray:
    """Boolean (Y, X) ellipse centred at ``(Y // 2, X // 2)`` (``create_center_ellipsoid``: ``<= 1``)."""
    if radii is None:
        return np.ones(shape, dtype=bool)
    y, x = np.ogrid[: shape[0], : shape[1]]
    return ((y - shape[0] // 2) / radii[0]) ** 2 + ((x - shape[1] // 2) / radii[1]) ** 2 <= 1


def _hits(field: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Boolean (positions Y, positions X): where ``kernel`` placed with its corner there meets ``field`` (FFT)."""
    if not field.any():
        return np.zeros(tuple(f - k + 1 for f, k in zip(field.shape, kernel.shape))[-2:], dtype=bool)
    flipped = kernel[(slice(None, None, -1),) * kernel.ndim].astype(np.float64)
    corr = fftconvolve(field.astype(np.float64), flipped, mode="valid")  # overlap counts, exact up to round-off
    return corr.reshape(corr.shape[-2:]) > 0.5


def _check(cells, masks, shape, num_cells, ellipse, inside, rng):
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"compose_population: rng must be a numpy.random.Generator, got {type(rng).__name__}.")
    shape = tuple(int(s) for s in shape)
    if len(shape) not in (2, 3) or min(shape) < 1:
        raise ValueError(f"compose_population: shape must be (Y, X) or (Z, Y, X) of positive sizes, got {shape}.")
    lo, hi = (int(num_cells), int(num_cells)) if np.isscalar(num_cells) else (int(v) for v in num_cells)
    if not 1 <= lo <= hi:
        raise ValueError(f"compose_population: num_cells must be (min, max) with 1 <= min <= max, got {num_cells}.")
    if ellipse is not None and (len(ellipse) != 2 or min(ellipse) <= 0):
        raise ValueError(f"compose_population: ellipse must be two positive radii (Y, X) or None, got {ellipse}.")
    if inside not in ("center", "cell"):
        raise ValueError(f"compose_population: inside must be 'center' or 'cell', got {inside!r}.")
    if len(cells) != len(masks) or not cells:
        raise ValueError(f"compose_population: got {len(cells)} cells and {len(masks)} masks; need equal, >= 1.")
    out_c, out_m = [], []
    for i, (cell, mask) in enumerate(zip(cells, masks)):
        cell, mask = np.asarray(cell, dtype=np.float32), np.asarray(mask) > 0
        if cell.shape != mask.shape or cell.ndim != len(shape):
            raise ValueError(
                f"compose_population: cell {i} has texture {cell.shape} and mask {mask.shape}; both must be "
                f"{len(shape)}D like shape={shape}."
            )
        if any(c > s for c, s in zip(cell.shape, shape)) or not mask.any():
            raise ValueError(f"compose_population: cell {i} ({cell.shape}) is empty or larger than shape={shape}.")
        out_c.append(cell[None] if cell.ndim == 2 else cell)
        out_m.append(mask[None] if mask.ndim == 2 else mask)
    return out_c, out_m, (shape if len(shape) == 3 else (1, *shape)), lo, hi


def _candidates(free, in_ellipse, first, cluster, rng, window_mask):
    """Positions the next cell may take: the first cell's central window, or the cluster band / eroded free set.

    ``free``: positions without overlap; ``in_ellipse``: positions meeting the ellipse rule (kept apart so that the
    ellipse's edge does not count as a placed cell for the cluster band, as in the public code).
    """
    if first:
        return free & in_ellipse & window_mask
    if rng.random() <= cluster["probability"]:  # join a cluster: a gap to the placed cells set by window and mu
        depth = ndimage.distance_transform_edt(~free)  # forbidden positions: distance to the nearest free one
        reach = ndimage.maximum_filter(depth, size=int(cluster["window"]), mode="constant", cval=0.0)
        return free & in_ellipse & (reach > 1) & (reach < float(cluster["mu"]))
    size = int(cluster["erode"])
    eroded = ndimage.minimum_filter(free, size=size, mode="constant", cval=1) if size > 1 else free
    return eroded & in_ellipse


def _background(shape, ellipse_mask, bg, rng):
    """(Z, Y, X) float32 background: level, sparse noise everywhere, denser noise in the dilated ellipse."""
    depth, height, width = shape
    image = np.full(shape, float(bg["level"]), dtype=np.float32)
    scale = height * width / float(bg["reference_area"])
    low, high = (int(v) for v in bg["noise_range"])
    size = int(bg["ellipse_dilation"])
    region = ndimage.binary_dilation(ellipse_mask, np.ones((size, size), bool)) if size > 1 else ellipse_mask
    for z in range(depth):
        n = round(bg["noise_pixels"] * scale)
        ys, xs = (rng.random(n) * height).astype(int), (rng.random(n) * width).astype(int)
        image[z, ys, xs] = rng.integers(low, high, size=n)
        n = round(bg["ellipse_noise_pixels"] * scale)
        extra = np.zeros((height, width), dtype=np.float32)
        ys, xs = (rng.random(n) * height).astype(int), (rng.random(n) * width).astype(int)
        extra[ys, xs] = rng.integers(low, high, size=n)
        image[z] += np.where(region, extra, 0.0)
    return np.clip(image, 0.0, None)


def compose_population(
    cells: Sequence[np.ndarray],
    masks: Sequence[np.ndarray],
    shape: Sequence[int] = (512, 708),
    num_cells: int | tuple[int, int] = (40, 49),
    ellipse: tuple[float, float] | None = (100.0, 150.0),
    inside: str = "center",
    cluster: Mapping | None = None,
    background: Mapping | None = None,
    strict: bool = False,
    rng: np.random.Generator | None = None,
    return_placements: bool = False,
):
    """Compose one image of a cell population and its instance mask from single cells (textures and masks).

    Yilmaz et al., https://arxiv.org/abs/2411.11515 (stage 4), after Svoboda and Ulman, ICIAP 2013; the rules and
    numbers of the public ``cell_placement.py`` / ``combine_images.py`` (module docstring). Deterministic for a given
    ``rng`` state.

    Args:
        cells: textures, each (y, x) or (z, y, x) like ``shape``, e.g. 64 x 64 outputs of the texture stage.
        masks: their masks (> 0 = cell), same shapes.
        shape: output (Y, X) or (Z, Y, X); default (512, 708), the public code's.
        num_cells: (min, max) number of cells, both included, default (40, 49) (``randrange(40, 50)``); an int fixes
            it. Drawn without replacement while there are enough cells, with replacement otherwise.
        ellipse: (Y, X) radii of the central ellipse, default (100, 150); None = no ellipse.
        inside: ``"center"`` (default, public): the centre of each cell's crop lies in the ellipse; ``"cell"``: every
            mask pixel does.
        cluster: overrides of ``{"probability": 1.0, "window": 50, "mu": 10.0, "first_margin": (200, 300), "erode":
            2}``: the chance to join a cluster, the neighbourhood and depth bound of the band, the first cell's
            margin from the position grid's edges (shrunk on small images), the erosion of the non-cluster branch.
        background: overrides of ``{"level": 23.0, "noise_pixels": 2000, "ellipse_noise_pixels": 15000,
            "noise_range": (20, 500), "ellipse_dilation": 50, "texture_clip": (0.0, 255.0), "blur": (1, 2, 3, 4, 4,
            3, 2, 1), "reference_area": 512 * 708}`` (noise counts are per ``reference_area`` pixels and scale with
            the image area; the blur weights are normalised and run along Y; ``()`` switches it off).
        strict: when fewer than ``min`` cells find a place, raise instead of returning the ones placed (default
            False: a warning, as the public code which skips cells without a free position).
        rng: the random generator, required (``np.random.default_rng(seed)``).
        return_placements: also return ``[{"cell": index into cells, "offset": (z, y, x) corner}]`` per instance id.

    Returns:
        ``(image, instance_mask)`` of ``shape``: float32 intensities and int32 ids 1..n in placement order (plus the
        placements when asked).

    Raises:
        TypeError: ``rng`` is not a ``numpy.random.Generator``.
        ValueError: mismatched or empty cells, cells larger than ``shape``, bad ``num_cells`` / ``ellipse`` /
            ``inside``, unknown ``cluster`` / ``background`` keys.
        RuntimeError: ``strict`` and fewer than ``min`` cells placed.

    Example:
        >>> disk = (np.hypot(*np.mgrid[-6:7, -6:7]) <= 5).astype(np.float32)
        >>> image, labels = compose_population([disk * 200], [disk], (96, 96), num_cells=5, ellipse=None,
        ...                                    rng=np.random.default_rng(0))
        >>> int(labels.max()), image.dtype
        (5, dtype('float32'))
    """
    textures, binary, full_shape, lo, hi = _check(cells, masks, shape, num_cells, ellipse, inside, rng)
    opts = _options(cluster, DEFAULT_CLUSTER, "cluster")
    bg = _options(background, DEFAULT_BACKGROUND, "background")
    depth, height, width = full_shape
    count = int(rng.integers(lo, hi + 1))
    chosen = rng.choice(len(textures), size=count, replace=len(textures) < count)
    if len(textures) < count:
        logger.info("compose_population: %d cells drawn from %d given, with replacement.", count, len(textures))
    ellipse_mask = _ellipse((height, width), ellipse)
    occupancy = np.zeros(full_shape, dtype=bool)
    image = _background(full_shape, ellipse_mask, bg, rng)
    labels = np.zeros(full_shape, dtype=np.int32)
    lo_clip, hi_clip = (float(v) for v in bg["texture_clip"])
    placements: list[dict] = []
    for draw, index in enumerate(chosen):
        texture, mask = textures[index], binary[index]
        d, h, w = mask.shape
        z0 = (depth - d) // 2
        grid = (height - h + 1, width - w + 1)
        free = ~_hits(occupancy[z0 : z0 + d], mask)
        if inside == "center":
            in_ellipse = ellipse_mask[h // 2 : h // 2 + grid[0], w // 2 : w // 2 + grid[1]]
        else:
            in_ellipse = ~_hits(~ellipse_mask, mask.any(axis=0))
        margin = [min(int(m), (g - 1) // 2) for m, g in zip(opts["first_margin"], grid)]
        window_mask = np.zeros(grid, dtype=bool)
        window_mask[margin[0] : grid[0] - margin[0], margin[1] : grid[1] - margin[1]] = True
        coords = np.argwhere(_candidates(free, in_ellipse, not placements, opts, rng, window_mask))
        if len(coords) == 0:
            logger.info("compose_population: no free position for cell %d (draw %d of %d); skipped.", index,
                        draw + 1, count)
            continue
        y0, x0 = (int(v) for v in coords[rng.integers(len(coords))])
        box = (slice(z0, z0 + d), slice(y0, y0 + h), slice(x0, x0 + w))
        occupancy[box] |= mask
        image[box][mask] = np.clip(texture[mask], lo_clip, hi_clip)
        labels[box][mask] = len(placements) + 1
        placements.append({"cell": int(index), "offset": (z0, y0, x0)})
    if len(placements) < lo:
        message = f"compose_population: only {len(placements)} of {count} cells found a place (min {lo})"
        if strict:
            raise RuntimeError(message + "; use a larger shape or ellipse, or fewer / smaller cells.")
        logger.warning(message + "; returning those.")
    weights = np.asarray(bg["blur"], dtype=np.float64)
    if weights.size:
        image = ndimage.convolve1d(image, weights / weights.sum(), axis=-2).astype(np.float32)
    if len(shape) == 2:
        image, labels = image[0], labels[0]
        placements = [{"cell": p["cell"], "offset": p["offset"][1:]} for p in placements]
    return (image, labels, placements) if return_placements else (image, labels)
