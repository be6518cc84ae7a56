"""Export a bundle's denoiser as TorchScript and check it against the inputs and outputs its metadata declares.

MONAI's ``python -m monai.bundle ckpt_export`` and ``verify_net_in_out`` feed a network one input, ``image``; the
bundles' denoisers take three, ``forward(x_t, timesteps, condition)`` (two for CellCascade's unconditional mask
network), so both tools stop at the missing time step (``ckpt_export --use_trace`` traces with one tensor;
``verify_net_in_out``'s ``extra_forward_args`` cannot carry a tensor from the command line). These are the
equivalents: the inputs come from ``network_data_format`` in ``metadata.json``, where ``x_t`` (the noisy or degraded
sample), ``timesteps`` (an int64 tensor of shape (B,), ``spatial_shape`` [], ``value_range`` [0, T - 1]) and
``image`` (the condition) are declared. MONAI's own tools still serve single-input networks (NeuroDiff's
``SuperhumanUNet``).

Why tracing: ``torch.jit.script`` compiles none of the six networks, MONAI's ``DiffusionModelUNet`` included (PEP
585 annotations, shapes unpacked into calls, ``type(self).__name__`` in error messages, ``torch.backends`` queries).
``torch.export`` fails on two: ECSD (the frequency filter keys its cached maps on the parameters' ``data_ptr``) and
NeuroDiff (the RGM coordinate grid reads the voxel-size buffer as Python floats, a data-dependent value).
``torch.jit.trace`` records all six exactly (max |traced - eager| 0.0 on new inputs and time steps). mambapy's parallel
scan (NeuroDiff's RGM) is a ``torch.autograd.Function``, which a trace keeps as a Python call that TorchScript cannot
save; while tracing, its forward runs as a plain function (the same arithmetic; an exported program needs no
backward). ONNX was not tried: ``onnx`` is not a dependency, and ``torch.onnx``'s default exporter builds on
``torch.export``, which fails on the same two networks.

A trace holds for the shapes it was recorded at: ECSD's linear attention loops over the batch in Python, and its
frequency maps, like NeuroDiff's coordinates, are resampled per size, so a trace at batch 1 gives wrong numbers at
batch 2. The exported program therefore accepts only the traced shapes and raises otherwise; export at the batch and
patch size inference uses (e.g. ``sw_batch_size`` x ``patch_size``).
"""

from __future__ import annotations

import json
import logging
import os
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from monai.bundle import ConfigParser
from monai.bundle.scripts import _get_fake_spatial_shape
from monai.data import save_net_with_metadata
from monai.utils import get_equivalent_dtype, optional_import
from torch import nn

from ..utils import atomic_write
from .checkpoints import load_network_weights

__all__ = ["DENOISER_INPUTS", "denoiser_example_inputs", "export_network", "verify_denoiser_in_out"]

logger = logging.getLogger(__name__)

# metadata input names in the order of the denoisers' forward arguments (x_t, timesteps, condition)
DENOISER_INPUTS = ("x_t", "timesteps", "image")
_FORMAT = "_meta_#network_data_format"


def _bundle_parser(config_file: str | Sequence[str], meta_file: str | Sequence[str] | None, override: dict):
    """A parser of ``config_file`` + ``meta_file`` with ``override`` applied, as MONAI's bundle scripts build it."""
    if not config_file:
        raise ValueError("config_file is required (e.g. configs/inference.json).")
    bundle_root = override.get("bundle_root", os.getcwd())
    meta_file = os.path.join(bundle_root, "configs", "metadata.json") if meta_file is None else meta_file
    for path in (*([config_file] if isinstance(config_file, str) else config_file),
                 *([meta_file] if isinstance(meta_file, str) else meta_file)):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path} does not exist.")
    parser = ConfigParser()
    parser.read_config(f=config_file)
    parser.read_meta(f=meta_file)
    for key, value in override.items():
        parser[key] = value
    if f"{_FORMAT}#inputs" not in parser or f"{_FORMAT}#outputs#pred" not in parser:
        raise ValueError(f"{meta_file}: network_data_format must declare inputs and the output 'pred'.")
    return parser, meta_file


def _declared(parser: ConfigParser, name: str, meta_file: Any) -> dict:
    declared = parser.get(f"{_FORMAT}#inputs")
    if name not in declared:
        raise ValueError(f"{meta_file}: network_data_format#inputs has no {name!r} (declared: {sorted(declared)}).")
    if not isinstance(declared[name], dict):
        raise TypeError(f"{meta_file}: network_data_format#inputs#{name} is not a tensor description.")
    return declared[name]


def denoiser_example_inputs(
    parser: ConfigParser,
    input_names: Sequence[str] = DENOISER_INPUTS,
    batch_size: int = 1,
    spatial_shape: Sequence[int] | None = None,
    p: int = 1,
    n: int = 1,
    any: int = 1,
    generator: torch.Generator | None = None,
    meta_file: Any = "metadata.json",
) -> tuple[torch.Tensor, ...]:
    """Random inputs as the metadata declares them, in the order of ``input_names``.

    An input with ``spatial_shape`` [] is a time step: int64 of shape ``(batch_size,)`` drawn from ``value_range``
    (both ends included). The others are ``(batch_size, num_channels, *spatial)`` tensors uniform in ``value_range``;
    ``spatial`` is ``spatial_shape`` or, when None, the first tensor's declared pattern evaluated with ``p``, ``n``,
    ``any`` as MONAI's ``verify_net_in_out`` does ("8*n" -> 8 n).
    """
    entries = [_declared(parser, name, meta_file) for name in input_names]
    if spatial_shape is None:
        first = next((e for e in entries if e.get("spatial_shape")), None)
        if first is None:
            raise ValueError(f"{meta_file}: none of {list(input_names)} declares a spatial_shape.")
        spatial_shape = _get_fake_spatial_shape(first["spatial_shape"], p=p, n=n, any=any)
    out = []
    for name, entry in zip(input_names, entries):
        low, high = entry.get("value_range", (0, 1))
        dtype = get_equivalent_dtype(entry.get("dtype", "float32"), torch.Tensor)
        if not entry.get("spatial_shape"):
            out.append(torch.randint(int(low), int(high) + 1, (batch_size,), generator=generator, dtype=dtype))
            continue
        shape = (batch_size, int(entry["num_channels"]), *spatial_shape)
        out.append((low + (high - low) * torch.rand(shape, generator=generator)).to(dtype))
    return tuple(out)


def _first(output: Any) -> torch.Tensor:
    return output[0] if isinstance(output, (list, tuple)) else output


def verify_denoiser_in_out(
    net_id: str = "network_def",
    meta_file: str | Sequence[str] | None = None,
    config_file: str | Sequence[str] | None = None,
    input_names: Sequence[str] = DENOISER_INPUTS,
    batch_size: int = 1,
    p: int = 1,
    n: int = 1,
    any: int = 1,
    seed: int = 0,
    **override: Any,
) -> None:
    """MONAI's ``verify_net_in_out`` for networks that take a time step: run ``net_id`` on the declared inputs.

    Raises a ValueError naming the metadata file when the network rejects the declared inputs, or when its output
    differs from ``outputs#pred`` in channels or dtype, or from the inputs in batch or spatial size.

    Args:
        net_id: id of the network in the config; default ``network_def``.
        meta_file: metadata file(s); default ``<bundle_root>/configs/metadata.json``.
        config_file: config file(s) defining ``net_id``.
        input_names: metadata inputs passed positionally; default ``("x_t", "timesteps", "image")``, e.g.
            ``["x_t", "timesteps"]`` for an unconditional network.
        batch_size, p, n, any: the fake input's batch and the values of the shape pattern's variables.
        seed: seed of the random inputs.
        override: config or metadata ids to set, e.g. ``channels=[8, 16, 32, 64]`` or
            ``_meta_#network_data_format#outputs#pred#num_channels=3``.
    """
    parser, meta_file = _bundle_parser(config_file, meta_file, override)
    network = parser.get_parsed_content(net_id).eval()
    generator = torch.Generator().manual_seed(seed)
    args = denoiser_example_inputs(parser, input_names, batch_size, None, p, n, any, generator, meta_file)
    name = type(network).__name__
    try:
        with torch.no_grad():
            output = _first(network(*args))
    except Exception as err:
        shapes = {k: tuple(a.shape) for k, a in zip(input_names, args)}
        raise ValueError(f"{meta_file}: {name} ({net_id}) rejects the declared inputs {shapes}: {err}") from err
    pred = parser.get(f"{_FORMAT}#outputs#pred")
    tensors = [a for a in args if a.ndim > 1]
    expected = (batch_size, pred["num_channels"], *tensors[0].shape[2:])
    if output.shape[1] != pred["num_channels"]:
        raise ValueError(
            f"{meta_file}: outputs#pred declares {pred['num_channels']} channels, {name} gives {output.shape[1]}."
        )
    if tuple(output.shape) != expected:
        raise ValueError(f"{meta_file}: {name} output {tuple(output.shape)} is not the inputs' size {expected}.")
    dtype = get_equivalent_dtype(pred["dtype"], torch.Tensor)
    if output.dtype != dtype:
        raise ValueError(f"{meta_file}: outputs#pred declares {dtype}, {name} gives {output.dtype}.")
    logger.info("%s (%s): inputs %s -> output %s verified", name, net_id, [tuple(a.shape) for a in args],
                tuple(output.shape))


class _NoAutogradContext:
    """Stands in for ``ctx`` when an autograd Function's forward is called as a plain function."""

    def save_for_backward(self, *tensors: torch.Tensor) -> None:
        pass


@contextmanager
def _traceable_mambapy_scan() -> Iterator[None]:
    """Within the block, mambapy's ``pscan`` (``PScan.apply``) is ``PScan.forward`` called directly, which a trace
    records as tensor operations; restored afterwards."""
    mamba, has_mambapy = optional_import("mambapy.mamba")
    if not has_mambapy:
        yield
        return
    original = mamba.pscan
    scan = optional_import("mambapy.pscan", name="PScan")[0]
    mamba.pscan = lambda a, x: scan.forward(_NoAutogradContext(), a, x)
    try:
        yield
    finally:
        mamba.pscan = original


class _FixedShapeDenoiser(nn.Module):
    """A traced ``(x, timesteps, condition)`` network that refuses inputs of other shapes than those traced."""

    def __init__(self, traced: torch.jit.ScriptModule, shapes: list) -> None:
        super().__init__()
        self.traced = traced
        self.shapes = shapes

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        got = [x.shape, timesteps.shape, condition.shape]
        for i in range(len(got)):
            if got[i] != self.shapes[i]:
                raise ValueError("exported for inputs of shapes " + str(self.shapes) + ", got " + str(got))
        with torch.no_grad():
            return self.traced(x, timesteps, condition)


class _FixedShapeUnconditionalDenoiser(nn.Module):
    """A traced ``(x, timesteps)`` network that refuses inputs of other shapes than those traced."""

    def __init__(self, traced: torch.jit.ScriptModule, shapes: list) -> None:
        super().__init__()
        self.traced = traced
        self.shapes = shapes

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        got = [x.shape, timesteps.shape]
        for i in range(len(got)):
            if got[i] != self.shapes[i]:
                raise ValueError("exported for inputs of shapes " + str(self.shapes) + ", got " + str(got))
        with torch.no_grad():
            return self.traced(x, timesteps)


def _config_files_as_json(config_file: str | Sequence[str]) -> dict[str, bytes]:
    """The configs as extra files ``<name>.json`` of the TorchScript file, as ``ckpt_export`` stores them."""
    files = {}
    for path in [config_file] if isinstance(config_file, str) else config_file:
        stem = os.path.splitext(os.path.basename(path))[0]
        if f"{stem}.json" in files:
            raise ValueError(f"config name {stem!r} is given twice.")
        files[f"{stem}.json"] = json.dumps(ConfigParser.load_config_file(path)).encode()
    return files


def export_network(
    net_id: str = "network_def",
    filepath: str | None = None,
    ckpt_file: str | None = None,
    meta_file: str | Sequence[str] | None = None,
    config_file: str | Sequence[str] | None = None,
    key_in_ckpt: str | None = None,
    input_names: Sequence[str] = DENOISER_INPUTS,
    batch_size: int = 1,
    spatial_shape: Sequence[int] | None = None,
    seed: int = 0,
    atol: float = 1e-5,
    **override: Any,
) -> None:
    """``ckpt_export`` for denoisers: trace ``net_id`` with its weights and save TorchScript with metadata and configs.

    The file is MONAI's (``monai.data.load_net_with_metadata`` reads it: network, metadata, and the configs as
    ``<name>.json`` extra files). Before saving, the program runs on new random inputs and time steps (seed
    ``seed + 1``) and must match the eager network within ``atol``, else a RuntimeError.

    Args:
        net_id: id of the network in the config; default ``network_def``.
        filepath: output file; default ``<bundle_root>/models/model.ts``.
        ckpt_file: weights, loaded strictly (a clear error names the file otherwise); default
            ``<bundle_root>/models/model.pt``.
        meta_file: metadata file(s); default ``<bundle_root>/configs/metadata.json``.
        config_file: config file(s) defining ``net_id``.
        key_in_ckpt: key of the weights in a nested checkpoint; default None (a bare state dict or the usual keys).
        input_names: metadata inputs in the order of the forward arguments; default ``("x_t", "timesteps",
            "image")``; ``["x_t", "timesteps"]`` for an unconditional network.
        batch_size: the batch the program accepts (the trace holds for this batch only); default 1.
        spatial_shape: the spatial size the program accepts, e.g. the patch size; default the metadata's pattern
            with n = 1.
        seed: seed of the tracing inputs.
        atol: largest accepted |exported - eager| on the check inputs.
        override: config ids to set, e.g. ``channels=[8, 16, 32, 64]`` or ``bundle_root=...``.
    """
    start = time.perf_counter()
    parser, meta_file = _bundle_parser(config_file, meta_file, override)
    bundle_root = override.get("bundle_root", os.getcwd())
    filepath = filepath or os.path.join(bundle_root, "models", "model.ts")
    ckpt_file = ckpt_file or os.path.join(bundle_root, "models", "model.pt")
    if len(input_names) not in (2, 3):
        raise ValueError(f"export_network: input_names must name 2 or 3 inputs, got {list(input_names)}.")
    network = load_network_weights(parser.get_parsed_content(net_id), ckpt_file, key=key_in_ckpt).eval()
    generator = torch.Generator().manual_seed(seed)
    example = denoiser_example_inputs(parser, input_names, batch_size, spatial_shape, generator=generator,
                                      meta_file=meta_file)
    with torch.no_grad(), warnings.catch_warnings(), _traceable_mambapy_scan():
        # the networks' input checks read shapes as Python values; at fixed shapes that is what the trace should do
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        traced = torch.jit.trace(network, example, check_trace=False)
    wrapper = _FixedShapeDenoiser if len(input_names) == 3 else _FixedShapeUnconditionalDenoiser
    program = torch.jit.script(wrapper(traced, [list(a.shape) for a in example]))
    check = denoiser_example_inputs(parser, input_names, batch_size, [*example[0].shape[2:]],
                                    generator=torch.Generator().manual_seed(seed + 1), meta_file=meta_file)
    with torch.no_grad():
        difference = (program(*check) - _first(network(*check))).abs().max().item()
    if not difference <= atol:
        raise RuntimeError(f"export_network: the traced {type(network).__name__} differs from the eager network "
                           f"by {difference:.3g} > atol {atol}; not saved.")
    with atomic_write(filepath) as tmp, open(tmp, "wb") as stream:
        save_net_with_metadata(program, stream, include_config_vals=False, append_timestamp=False,
                               meta_values=parser.get().get("_meta_"), more_extra_files=_config_files_as_json(config_file))
    logger.info("exported %s (%s) to %s for inputs %s in %.1f s; max |exported - eager| = %.3g",
                type(network).__name__, net_id, filepath, [tuple(a.shape) for a in example],
                time.perf_counter() - start, difference)
