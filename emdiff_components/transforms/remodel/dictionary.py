"""Dictionary twins of the NeuroDiff remodeling transforms, and the whole remodeling recipe as one transform."""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping, Sequence

import numpy as np
from monai.config import KeysCollection, NdarrayOrTensor
from monai.transforms import MapTransform, RandomizableTransform
from monai.utils import convert_to_numpy, ensure_tuple
from monai.utils.type_conversion import convert_to_dst_type

from .array import ConditionToOneHot, LabelsToMembranes, RandElasticLabelDeform, RandPlaceMitochondria
from .library import MitochondriaLibrary

__all__ = [
    "RandElasticLabelDeformd",
    "LabelsToMembranesd",
    "RandPlaceMitochondriad",
    "ConditionToOneHotd",
    "RemodelMasksd",
    "LabelsToConditiond",
]


def _condition(membranes: NdarrayOrTensor, mito: NdarrayOrTensor | None) -> np.ndarray:
    """uint8 condition: 1 on membranes, 2 on mitochondria (drawn over membrane, as the reference), else 0."""
    condition = (convert_to_numpy(membranes) > 0).astype(np.uint8)
    if mito is not None:
        condition[convert_to_numpy(mito) > 0] = 2
    return condition


def _output_keys(name: str, keys: tuple, output_keys: KeysCollection | None) -> tuple:
    if output_keys is None:
        return keys
    out = ensure_tuple(output_keys)
    if len(out) != len(keys):
        raise ValueError(f"{name}: output_keys needs one key per key, got {list(out)} for {list(keys)}.")
    return out


class RandElasticLabelDeformd(RandomizableTransform, MapTransform):
    """Dictionary twin of :class:`RandElasticLabelDeform`: one draw per call, the same deformation for every key.

    Args:
        keys: label volumes ``(1, Z, Y, X)`` of one shape.
        control_point_spacing, jitter_sigma, padding, pad_mode, spline_order, prob: see :class:`RandElasticLabelDeform`.
        allow_missing_keys: skip missing keys instead of raising ``KeyError``.
    """

    backend = RandElasticLabelDeform.backend

    def __init__(
        self,
        keys: KeysCollection,
        control_point_spacing: Sequence[float] | float = (4, 20, 20),
        jitter_sigma: Sequence[float] | float = (0.0, 4.0, 4.0),
        padding: int = 20,
        pad_mode: str = "reflect",
        spline_order: int = 3,
        prob: float = 1.0,
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)
        self.deform = RandElasticLabelDeform(control_point_spacing, jitter_sigma, padding, pad_mode, spline_order, 1.0)

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None):
        super().set_random_state(seed, state)
        self.deform.set_random_state(seed, state)
        return self

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        self.randomize(None)
        if not self._do_transform:
            return d
        first = True
        for key in self.key_iterator(d):
            d[key] = self.deform(d[key], randomize=first)  # draw once, from the first key's shape
            first = False
        return d


class LabelsToMembranesd(MapTransform):
    """Dictionary twin of :class:`LabelsToMembranes`.

    Args:
        keys: label volumes ``(1, Z, Y, X)``.
        dilation_iterations, kernel_size, background_is_membrane, affinity_extension: see :class:`LabelsToMembranes`.
        output_keys: where the membranes go, one per key; default None (replace the labels).
        allow_missing_keys: skip missing keys instead of raising ``KeyError``.
    """

    backend = LabelsToMembranes.backend

    def __init__(
        self,
        keys: KeysCollection,
        dilation_iterations: int = 1,
        kernel_size: int = 3,
        background_is_membrane: bool = True,
        affinity_extension: bool = True,
        output_keys: KeysCollection | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.converter = LabelsToMembranes(dilation_iterations, kernel_size, background_is_membrane, affinity_extension)
        self.output_keys = _output_keys(type(self).__name__, self.keys, output_keys)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key, out_key in self.key_iterator(d, self.output_keys):
            d[out_key] = self.converter(d[key])
        return d


class RandPlaceMitochondriad(RandomizableTransform, MapTransform):
    """Dictionary twin of :class:`RandPlaceMitochondria`: ``d[output_key]`` = mitochondria placed in ``d[key]``.

    Args:
        keys: the instance-label key (one key).
        library ... prob: see :class:`RandPlaceMitochondria` (``library`` also accepts a path to ``.npz``).
        output_key: where the ``(1, Z, Y, X)`` mitochondria mask goes; default ``"mito"``.
        allow_missing_keys: skip a missing key instead of raising ``KeyError``.
    """

    backend = RandPlaceMitochondria.backend

    def __init__(
        self,
        keys: KeysCollection,
        library: MitochondriaLibrary | str | os.PathLike | None = None,
        num_largest: int = 20,
        num_sampled: int = 15,
        selection: str = "largest",
        top_fraction: float = 0.10,
        min_region_area: int = 5000,
        size_ratio_range: Sequence[float] = (0.30, 0.40),
        angle_jitter: float = 5.0,
        opening_radius: int = 3,
        closing_radius: int = 3,
        max_outside_fraction: float = 0.20,
        reorient_per_slice: bool = False,
        prob: float = 1.0,
        output_key: str = "mito",
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)
        if len(self.keys) != 1:
            raise ValueError(f"RandPlaceMitochondriad: one key holds the labels, got keys {list(self.keys)}.")
        self.placer = RandPlaceMitochondria(
            library,
            num_largest,
            num_sampled,
            selection,
            top_fraction,
            min_region_area,
            size_ratio_range,
            angle_jitter,
            opening_radius,
            closing_radius,
            max_outside_fraction,
            reorient_per_slice,
            1.0,
        )
        self.output_key = output_key

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None):
        super().set_random_state(seed, state)
        self.placer.set_random_state(seed, state)
        return self

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        self.randomize(None)
        for key in self.key_iterator(d):
            if self._do_transform:
                d[self.output_key] = self.placer(d[key])
            else:
                d[self.output_key] = convert_to_dst_type(np.zeros_like(convert_to_numpy(d[key]), np.uint8), d[key])[0]
        return d


class ConditionToOneHotd(MapTransform):
    """Dictionary twin of :class:`ConditionToOneHot`; an error names ``d[f"{key}_path"]`` when the dict has it.

    Args:
        keys: condition volumes ``(1, *spatial)``.
        class_values: see :class:`ConditionToOneHot`; default (1, 2).
        allow_missing_keys: skip missing keys instead of raising ``KeyError``.
    """

    backend = ConditionToOneHot.backend

    def __init__(self, keys: KeysCollection, class_values: Sequence[int] = (1, 2), allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        self.converter = ConditionToOneHot(class_values)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.converter(d[key], source=d.get(f"{key}_path"))
        return d


class RemodelMasksd(RandomizableTransform, MapTransform):
    """NeuroDiff biology-guided mask remodeling in one transform: deform, re-derive membranes, place mitochondria.

    Liu et al. "Diffusion-based data augmentation for neuron segmentation" (NeuroDiff, section 2.2; reference
    ``tools/mask_remodeling.py``). From ``d[label_key]`` (instance labels ``(1, Z, Y, X)``) it writes
    ``d[label_key]`` = the deformed labels and ``d[condition_key]`` = uint8 condition, 0 background, 1 membrane,
    2 mitochondria (drawn over membrane, as in the reference). The paper's Table 5 ablation is ``deform`` /
    ``place`` switched off. Each step is a transform of its own, so every number is that transform's argument.

    Args:
        label_key: instance labels; default ``"label"``.
        condition_key: output condition; default ``"condition"``.
        mito_key: real mitochondria masks ``(1, Z, Y, X)``, used only to build a library when the placer has none
            (built per call, with ``library_min_area`` / ``library_tolerance``); default ``"mito"``.
        library: a :class:`MitochondriaLibrary` or a ``.npz`` path for the default placer; default None.
        deform: True (:class:`RandElasticLabelDeform` with reference values), False (skip) or an instance.
        membranes: a :class:`LabelsToMembranes`; default None (reference values).
        place: True (:class:`RandPlaceMitochondria` with reference values and ``library``), False (no
            mitochondria) or an instance.
        library_min_area: ``min_area`` of a library built from ``d[mito_key]``; default 100.
        library_tolerance: ``tolerance`` of that library; default 2.0.

    Example::

        remodel = RemodelMasksd(library="mito_library.npz")
        remodel.set_random_state(42)
        out = remodel({"label": labels})  # out["label"] deformed, out["condition"] in {0, 1, 2}
    """

    backend = RandElasticLabelDeform.backend

    def __init__(
        self,
        label_key: str = "label",
        condition_key: str = "condition",
        mito_key: str = "mito",
        library: MitochondriaLibrary | str | os.PathLike | None = None,
        deform: RandElasticLabelDeform | bool = True,
        membranes: LabelsToMembranes | None = None,
        place: RandPlaceMitochondria | bool = True,
        library_min_area: int = 100,
        library_tolerance: float = 2.0,
    ) -> None:
        MapTransform.__init__(self, [label_key], allow_missing_keys=False)
        RandomizableTransform.__init__(self, 1.0)
        name = type(self).__name__
        if not isinstance(deform, (bool, RandElasticLabelDeform)):
            raise TypeError(f"{name}: deform must be a bool or a RandElasticLabelDeform, got {type(deform)}.")
        if not isinstance(place, (bool, RandPlaceMitochondria)):
            raise TypeError(f"{name}: place must be a bool or a RandPlaceMitochondria, got {type(place)}.")
        self.label_key, self.condition_key, self.mito_key = label_key, condition_key, mito_key
        self.deform = RandElasticLabelDeform() if deform is True else (deform or None)
        self.membranes = membranes if membranes is not None else LabelsToMembranes()
        self.place = RandPlaceMitochondria(library) if place is True else (place or None)
        self.library_min_area, self.library_tolerance = library_min_area, library_tolerance
        self.set_random_state(state=self.R)

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None):
        super().set_random_state(seed, state)
        # The steps share one stream: deform draws first, then the placement, so one seed fixes the whole output.
        for step in (self.deform, self.place):
            if step is not None:
                step.set_random_state(state=self.R)
        return self

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        if self.label_key not in d:
            raise KeyError(f"{type(self).__name__}: key {self.label_key!r} not in the data (keys {list(d)}).")
        label = d[self.label_key]
        library = None
        if self.place is not None and self.place.library is None:
            if self.mito_key not in d:
                raise ValueError(
                    f"{type(self).__name__}: no mitochondria library given and no {self.mito_key!r} in the data."
                )
            library = MitochondriaLibrary.from_volumes(
                [convert_to_numpy(d[self.mito_key])], self.library_min_area, self.library_tolerance
            )
        if self.deform is not None:
            label = self.deform(label)
        condition = _condition(self.membranes(label), self.place(label, library=library) if self.place else None)
        d[self.label_key] = label
        d[self.condition_key] = convert_to_dst_type(condition, label, dtype=np.uint8)[0]
        return d


class LabelsToConditiond(MapTransform):
    """The synthesis condition of a real volume: membranes from its instance labels, its own mitochondria on top.

    NeuroDiff trains the generator on (condition, EM) pairs of real data; the condition is what remodeling produces for
    new masks: uint8, 0 background, 1 membrane (:class:`LabelsToMembranes` of the labels), 2 mitochondria.

    Args:
        label_key: instance labels ``(1, Z, Y, X)``; default ``"label"``.
        mito_key: optional mitochondria mask of the same shape (absent: no mitochondria); default ``"mito"``.
        condition_key: output key; default ``"condition"``.
        membranes: a :class:`LabelsToMembranes`; default None (reference values).
    """

    backend = LabelsToMembranes.backend

    def __init__(
        self,
        label_key: str = "label",
        mito_key: str = "mito",
        condition_key: str = "condition",
        membranes: LabelsToMembranes | None = None,
    ) -> None:
        super().__init__([label_key], allow_missing_keys=False)
        self.label_key, self.mito_key, self.condition_key = label_key, mito_key, condition_key
        self.membranes = membranes if membranes is not None else LabelsToMembranes()

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        label = d[self.label_key]
        mito = d.get(self.mito_key)
        if mito is not None and tuple(np.shape(mito)) != tuple(np.shape(label)):
            raise ValueError(
                f"{type(self).__name__}: {self.mito_key!r} has shape {tuple(np.shape(mito))} but {self.label_key!r} "
                f"has {tuple(np.shape(label))} ({d.get(f'{self.label_key}_path', 'in memory')})."
            )
        d[self.condition_key] = convert_to_dst_type(_condition(self.membranes(label), mito), label, dtype=np.uint8)[0]
        return d
