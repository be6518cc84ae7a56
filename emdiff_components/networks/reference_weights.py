"""Key maps from the public reference networks to ours: Cold SegDiffusion -> ECSDUNet, NeuroDiff -> NeuroDiffUNet.

A checkpoint trained with the public code loads into our network after :func:`convert_cold_segdiff_state_dict` or
:func:`convert_neurodiff_state_dict` (``scripts/convert_reference_weights.py`` does it for a file). The maps were
proven numerically: the weights of the reference networks in ``../shared/data/reference_fixtures`` reproduce the
reference outputs through them (``tests/networks/test_ecsd_reference.py``, ``test_neurodiff_reference.py``).

Cold SegDiffusion (Yan et al. "Cold SegDiffusion: A Novel Diffusion Model for Medical Image Segmentation", KBS 2024;
``TimesXY/Cold-SegDiffusion``, ``SegDiffusion.py``, class ``Unet``) -> :class:`~emdiff_components.networks.ECSDUNet`,
built with ``channels = dim * dim_mult`` (and ``filter_size = image_size`` for the same FF-Parser maps). Prefixes
(i a level, j a decoder level, deepest first as in the reference, d a transformer layer)::

    init_conv / cond_init_conv          encoder.stem.conv / cond_encoder.stem.conv
    time_mlp.1 / time_mlp.3             time_embedding.mlp.0 / time_embedding.mlp.2
    [cond_]downs.i.0 / .1               [cond_]encoder.levels.i.block1 / block2          (ResnetBlock)
    [cond_]downs.i.2.fn                 [cond_]encoder.levels.i.attention                (attention)
    [cond_]downs.i.3.1 / [cond_]downs.i.3  [cond_]encoder.levels.i.resample.conv         (see "unshuffle")
    conditioners.i                      cems.i  (ff_theta -> fourier_filter.theta, ff_parser_attn_map_r / _i ->
                                        fourier_filter.map_real / map_imag, norm_input -> norm,
                                        attention_f -> attention, block -> block)
    mid_block1 / cond_mid_block1 / mid_block2   bottleneck.mid1 / cond_mid1 / mid2
    mid_transformer.layers.d.0 / .3 .fn bottleneck.layers.d.attention1 / attention2    (MID attention)
    mid_transformer.layers.d.1 / .2 .fn bottleneck.layers.d.ff1 / ff2
    ups.j.0 / .1 / .2.fn                decoder.j.block1 / block2 / attention
    ups.j.3.1 / ups.j.3                 decoder.j.resample.conv.conv / decoder.j.resample.conv
    final_res_block / final_conv        final_block / final_conv.conv

Inside them: ResnetBlock ``block1.proj / block1.norm / block2.proj / block2.norm / mlp.1 / res_conv`` ->
``conv1.conv / norm1 / conv2.conv / norm2 / time_proj / skip.conv``; attention ``pre_norm.g / to_qkv / to_out.0 /
to_out.1.g`` (linear) or ``to_out`` (softmax) -> ``norm.weight / to_qkv / to_out / out_norm.weight``, CBAM
``channel_attention.shared_MLP`` -> ``channel_attention.mlp``, ``spatial_attention.conv2d`` ->
``spatial_attention.conv.conv``; MID attention ``pre_norm_c.g / pre_norm_x.g`` -> ``norm_q.weight / norm_kv.weight``.
Tensor transforms (``COLD_SEGDIFF_TRANSFORMS``): ``flatten`` LayerNorm gains / biases (1, C, 1, 1) -> (C,);
``unshuffle`` the downsampling 1x1 weight (O, 4C, 1, 1) -> the 2x2 stride-2 weight (O, C, 2, 2) (the reference's
pixel-unshuffle puts input channel c, row offset p, column offset q at 4c + 2p + q); ``q_rows`` / ``kv_rows`` the
MID attention keeps the query rows (first third) of ``to_qkv_c`` and the key / value rows (last two thirds) of
``to_qkv_x``: the reference computes but never uses the other rows, which therefore have no effect on its output
(and would get no gradient here).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping

import torch

__all__ = [
    "COLD_SEGDIFF_TRANSFORMS",
    "cold_segdiff_key_map",
    "convert_cold_segdiff_state_dict",
    "neurodiff_key_map",
    "convert_neurodiff_state_dict",
]


def _unshuffle(w: torch.Tensor) -> torch.Tensor:
    out, packed = w.shape[:2]
    if packed % 4 or w.shape[2:] != (1, 1):
        raise ValueError(f"expected a (O, 4C, 1, 1) pixel-unshuffle convolution weight, got {tuple(w.shape)}")
    return w.reshape(out, packed // 4, 2, 2)


def _thirds(w: torch.Tensor) -> int:
    if w.shape[0] % 3:
        raise ValueError(f"expected a q, k, v projection with 3 * hidden rows, got {tuple(w.shape)}")
    return w.shape[0] // 3


COLD_SEGDIFF_TRANSFORMS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "rename": lambda w: w,
    "flatten": lambda w: w.reshape(-1),
    "unshuffle": _unshuffle,
    "q_rows": lambda w: w[: _thirds(w)],
    "kv_rows": lambda w: w[_thirds(w) :],
}

_RESNET = (
    ("block1.proj.", "conv1.conv."),
    ("block1.norm.", "norm1."),
    ("block2.proj.", "conv2.conv."),
    ("block2.norm.", "norm2."),
    ("mlp.1.", "time_proj."),
    ("res_conv.", "skip.conv."),
)
_ATTENTION = (
    ("pre_norm.g", "norm.weight", "flatten"),
    ("to_qkv.weight", "to_qkv.weight", "rename"),
    ("to_out.0.", "to_out.", "rename"),
    ("to_out.1.g", "out_norm.weight", "flatten"),
    ("to_out.", "to_out.", "rename"),
    ("channel_attention.shared_MLP.", "channel_attention.mlp.", "rename"),
    ("spatial_attention.conv2d.", "spatial_attention.conv.conv.", "rename"),
)
_MID_ATTENTION = (
    ("pre_norm_c.g", "norm_q.weight", "flatten"),
    ("pre_norm_x.g", "norm_kv.weight", "flatten"),
    ("to_qkv_c.weight", "to_q.weight", "q_rows"),
    ("to_qkv_x.weight", "to_kv.weight", "kv_rows"),
    ("to_out.", "to_out.", "rename"),
)
_FEED_FORWARD = (("0.g", "0.weight", "flatten"), ("1.", "1.", "rename"), ("3.", "3.", "rename"))
_CEM = (
    ("ff_theta", "fourier_filter.theta", "rename"),
    ("ff_parser_attn_map_r", "fourier_filter.map_real", "rename"),
    ("ff_parser_attn_map_i", "fourier_filter.map_imag", "rename"),
    ("norm_input.g", "norm.weight", "flatten"),
    ("norm_input.b", "norm.bias", "flatten"),
)


def _inner(table: tuple[tuple[str, ...], ...], rest: str, resnet: bool = False) -> tuple[str, str] | None:
    """Map the part of a key below its block with ``table`` (``(prefix, ours[, transform])``, first match wins)."""
    for entry in table:
        old, new, transform = (*entry, "rename") if resnet else entry
        if rest == old or (old.endswith(".") and rest.startswith(old)):
            return new + rest[len(old) :], transform
    return None


def _resnet(rest: str) -> tuple[str, str] | None:
    return _inner(_RESNET, rest, resnet=True)


def _attention(rest: str) -> tuple[str, str] | None:
    return _inner(_ATTENTION, rest)


def _cem(rest: str) -> tuple[str, str] | None:
    if rest.startswith("block."):
        mapped = _resnet(rest[len("block.") :])
        return None if mapped is None else ("block." + mapped[0], mapped[1])
    if rest.startswith("attention_f."):
        mapped = _attention(rest[len("attention_f.") :])
        return None if mapped is None else ("attention." + mapped[0], mapped[1])
    return _inner(_CEM, rest)


def _plain(rest: str) -> tuple[str, str] | None:
    return (rest, "rename") if rest in ("weight", "bias") else None


def _downsample(rest: str) -> tuple[str, str] | None:
    return {"weight": ("weight", "unshuffle"), "bias": ("bias", "rename")}.get(rest)


_ENCODER = {None: "encoder", "cond_": "cond_encoder"}


def _level(match: re.Match[str]) -> str:
    """``[cond_]downs.i`` -> ``[cond_]encoder.levels.i``."""
    return f"{_ENCODER[match[1]]}.levels.{match[2]}"


_FF = {"1": "ff1", "2": "ff2"}
_MID_ATTN = {"0": "attention1", "3": "attention2"}
_BLOCK = {"0": "block1", "1": "block2"}
# (pattern of the block prefix, our prefix as a function of the match, mapper of the rest); first match wins
_RULES: tuple[tuple[re.Pattern[str], Callable[[re.Match[str]], str], Callable[[str], tuple[str, str] | None]], ...] = (
    (re.compile(r"init_conv\."), lambda m: "encoder.stem.conv.", _plain),
    (re.compile(r"cond_init_conv\."), lambda m: "cond_encoder.stem.conv.", _plain),
    (re.compile(r"time_mlp\.([13])\."), lambda m: f"time_embedding.mlp.{int(m[1]) - 1}.", _plain),
    (re.compile(r"(cond_)?downs\.(\d+)\.([01])\."), lambda m: f"{_level(m)}.{_BLOCK[m[3]]}.", _resnet),
    (re.compile(r"(cond_)?downs\.(\d+)\.2\.fn\."), lambda m: f"{_level(m)}.attention.", _attention),
    (re.compile(r"(cond_)?downs\.(\d+)\.3\.1\."), lambda m: f"{_level(m)}.resample.conv.", _downsample),
    (re.compile(r"(cond_)?downs\.(\d+)\.3\."), lambda m: f"{_level(m)}.resample.conv.", _plain),
    (re.compile(r"conditioners\.(\d+)\."), lambda m: f"cems.{m[1]}.", _cem),
    (re.compile(r"mid_block1\."), lambda m: "bottleneck.mid1.", _resnet),
    (re.compile(r"cond_mid_block1\."), lambda m: "bottleneck.cond_mid1.", _resnet),
    (re.compile(r"mid_block2\."), lambda m: "bottleneck.mid2.", _resnet),
    (
        re.compile(r"mid_transformer\.layers\.(\d+)\.([03])\.fn\."),
        lambda m: f"bottleneck.layers.{m[1]}.{_MID_ATTN[m[2]]}.",
        lambda rest: _inner(_MID_ATTENTION, rest),
    ),
    (
        re.compile(r"mid_transformer\.layers\.(\d+)\.([12])\.fn\."),
        lambda m: f"bottleneck.layers.{m[1]}.{_FF[m[2]]}.",
        lambda rest: _inner(_FEED_FORWARD, rest),
    ),
    (re.compile(r"ups\.(\d+)\.([01])\."), lambda m: f"decoder.{m[1]}.{_BLOCK[m[2]]}.", _resnet),
    (re.compile(r"ups\.(\d+)\.2\.fn\."), lambda m: f"decoder.{m[1]}.attention.", _attention),
    (re.compile(r"ups\.(\d+)\.3\.1\."), lambda m: f"decoder.{m[1]}.resample.conv.conv.", _plain),
    (re.compile(r"ups\.(\d+)\.3\."), lambda m: f"decoder.{m[1]}.resample.conv.", _plain),
    (re.compile(r"final_res_block\."), lambda m: "final_block.", _resnet),
    (re.compile(r"final_conv\."), lambda m: "final_conv.conv.", _plain),
)


def _map_cold_segdiff_key(key: str) -> tuple[str, str] | None:
    for pattern, prefix, mapper in _RULES:
        match = pattern.match(key)
        if match is None:
            continue
        mapped = mapper(key[match.end() :])
        return None if mapped is None else (prefix(match) + mapped[0], mapped[1])
    return None


def _unknown_error(source: str, what: str, unknown: list[str]) -> ValueError:
    shown = ", ".join(unknown[:8]) + (f", ... ({len(unknown)} in all)" if len(unknown) > 8 else "")
    return ValueError(f"{source}: {len(unknown)} key(s) are not {what} state_dict keys: {shown}.")


def cold_segdiff_key_map(keys: Iterable[str], source: str = "state_dict") -> dict[str, tuple[str, str]]:
    """Map Cold SegDiffusion ``Unet`` state_dict keys to ECSDUNet keys (see the module docstring for the layout).

    Args:
        keys: the reference's keys (``Unet().state_dict().keys()``).
        source: named in the error message (e.g. the checkpoint file).

    Returns:
        ``{reference key: (ECSDUNet key, transform name)}``; the transforms are ``COLD_SEGDIFF_TRANSFORMS``.

    Raises:
        ValueError: naming ``source`` and the keys that are not Cold SegDiffusion ``Unet`` keys.
    """
    mapped, unknown = {}, []
    for key in keys:
        target = _map_cold_segdiff_key(key)
        if target is None:
            unknown.append(key)
        else:
            mapped[key] = target
    if unknown:
        raise _unknown_error(source, "Cold SegDiffusion Unet", unknown)
    return mapped


def convert_cold_segdiff_state_dict(
    state_dict: Mapping[str, torch.Tensor], source: str = "state_dict"
) -> dict[str, torch.Tensor]:
    """Rename and reshape a Cold SegDiffusion ``Unet`` state_dict into ECSDUNet's layout.

    Example:
        >>> from emdiff_components.networks import ECSDUNet
        >>> net = ECSDUNet(channels=(16, 32, 64, 128), filter_size=64)  # Unet(dim=16, image_size=64, ...)
        >>> net.load_state_dict(convert_cold_segdiff_state_dict(reference_state_dict))  # doctest: +SKIP

    Raises:
        ValueError: naming ``source`` for keys that are not Cold SegDiffusion ``Unet`` keys or tensors of the wrong
            form for their transform.
    """
    converted = {}
    for key, (ours, transform) in cold_segdiff_key_map(state_dict.keys(), source).items():
        try:
            converted[ours] = COLD_SEGDIFF_TRANSFORMS[transform](state_dict[key]).contiguous()
        except ValueError as err:
            raise ValueError(f"{source}: {key}: {err}.") from None
    return converted


# NeuroDiff (Liu et al., HeadLiuYun/NeuroDiff, diffusion_model/neurodiff.py, class NeuroDiff) -> NeuroDiffUNet
_ND_RESNET = (
    ("in_layers.0.", "norm1."),
    ("in_layers.2.", "conv1.conv."),
    ("emb_layers.1.", "time_emb_proj."),
    ("out_layers.0.", "norm2."),
    ("out_layers.3.", "conv2.conv."),
    ("skip_connection.", "skip_connection.conv."),
)
_ND_MAMBA = (("block1.norm.", "norm."), ("block1.mamba.", "mamba."), ("pos_mlp.mlp.", "rpge.mlp."))
_ND_BLOCK = re.compile(r"(input_blocks|output_blocks)\.(\d+)\.(\d+)\.(.*)")
_ND_MIDDLE = re.compile(r"middle_block\.(\d+)\.(.*)")


def _nd_layer(rest: str) -> tuple[str, str] | None:
    """The part of a key inside a ResBlock or a CrossMamba -> (our part, kind) with kind "res" or "rgm"."""
    for table, kind in ((_ND_RESNET, "res"), (_ND_MAMBA, "rgm")):
        for old, new in table:
            if rest.startswith(old):
                return new + rest[len(old) :], kind
    return None


def neurodiff_key_map(keys: Iterable[str], source: str = "state_dict") -> dict[str, str]:
    """Map NeuroDiff state_dict keys to NeuroDiffUNet keys (the table of ``reference_fixtures/SOURCES.md``).

    Liu et al. NeuroDiff (``HeadLiuYun/NeuroDiff``, ``diffusion_model/neurodiff.py``, class ``NeuroDiff``):
    ``time_embed`` and ``out`` keep their names; ``input_blocks.0.0`` -> ``input_conv``; the n-th input block holding
    a ResBlock -> ``encoder.n`` (``.0`` the ResBlock, ``.1`` its CrossMamba); the d-th input block holding a
    ``Downsample`` (``.0.op``) -> ``downsample.d``; ``middle_block.k`` -> ``middle.k``; ``output_blocks.j.k`` ->
    ``decoder.j.0`` (ResBlock), ``decoder.j.1`` (CrossMamba), ``decoder.j.2.conv`` (``Upsample.conv``);
    ``cond_pre`` -> ``msc.encoder``; ``dense_hint_blocks.i.<last>`` -> ``msc.hints.i.conv``. Inside a ResBlock
    ``in_layers.0 / in_layers.2 / emb_layers.1 / out_layers.0 / out_layers.3 / skip_connection`` -> ``norm1 /
    conv1.conv / time_emb_proj / norm2 / conv2.conv / skip_connection.conv``; inside a CrossMamba ``block1.norm /
    block1.mamba / pos_mlp.mlp`` -> ``norm / mamba / rpge.mlp``. Every tensor keeps its shape. NeuroDiffUNet's RGM
    buffers ``rpge.resolution`` (the voxel size) have no reference counterpart.

    Returns:
        ``{reference key: NeuroDiffUNet key}``.

    Raises:
        ValueError: naming ``source`` and the keys that are not NeuroDiff keys.
    """
    keys = list(keys)
    # number the input blocks by kind: the reference interleaves ResBlock levels and Downsamples in one list
    kinds: dict[int, str] = {}
    for key in keys:
        match = re.match(r"input_blocks\.(\d+)\.0\.(op\.)?", key)
        if match:
            kinds[int(match[1])] = "down" if match[2] else kinds.get(int(match[1]), "res")
    index, counters = {}, {"res": 0, "down": 0}
    for j in sorted(kinds):
        if j == 0:
            continue
        index[j] = counters[kinds[j]]
        counters[kinds[j]] += 1
    mapped, unknown = {}, []
    for key in keys:
        target = None
        match = _ND_BLOCK.fullmatch(key)
        if key.startswith(("time_embed.", "out.")):
            target = key
        elif key.startswith("input_blocks.0.0."):
            target = "input_conv." + key[len("input_blocks.0.0.") :]
        elif key.startswith("cond_pre."):
            target = "msc.encoder." + key[len("cond_pre.") :]
        elif re.match(r"dense_hint_blocks\.\d+\.\d+\.", key):
            target = re.sub(r"dense_hint_blocks\.(\d+)\.\d+\.", r"msc.hints.\1.conv.", key)
        elif _ND_MIDDLE.fullmatch(key) and _nd_layer(_ND_MIDDLE.fullmatch(key)[2]) is not None:
            middle = _ND_MIDDLE.fullmatch(key)
            target = f"middle.{middle[1]}.{_nd_layer(middle[2])[0]}"
        elif match:
            group, j, k, rest = match[1], int(match[2]), int(match[3]), match[4]
            if group == "input_blocks" and kinds.get(j) == "down" and k == 0 and rest.startswith("op."):
                target = f"downsample.{index[j]}.{rest[len('op.'):]}"
            elif group == "output_blocks" and rest.startswith("conv.") and _nd_layer(rest) is None:
                target = f"decoder.{j}.2.{rest}"
            else:
                layer = _nd_layer(rest)
                if layer is not None and group == "input_blocks" and kinds.get(j) == "res":
                    target = f"encoder.{index[j]}.{k}.{layer[0]}"
                elif layer is not None and group == "output_blocks":
                    target = f"decoder.{j}.{0 if layer[1] == 'res' else 1}.{layer[0]}"
        if target is None:
            unknown.append(key)
        else:
            mapped[key] = target
    if unknown:
        raise _unknown_error(source, "NeuroDiff", unknown)
    return mapped


def convert_neurodiff_state_dict(
    state_dict: Mapping[str, torch.Tensor], source: str = "state_dict"
) -> dict[str, torch.Tensor]:
    """Rename a NeuroDiff state_dict into NeuroDiffUNet's layout (:func:`neurodiff_key_map`; shapes unchanged).

    The result lacks only the RGM ``rpge.resolution`` buffers; load it with ``strict=False`` and check that those
    are the only missing keys, or add them from the network's own state_dict (as the test does).
    """
    return {ours: state_dict[key] for key, ours in neurodiff_key_map(state_dict.keys(), source).items()}
