"""Superhuman-style 3D residual symmetric U-Net predicting nearest-neighbour affinities (NeuroDiff downstream)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

__all__ = ["SuperhumanUNet", "convert_superhuman_state_dict"]

_UPSAMPLE_MODES = ("transposeS", "bilinear", "nearest")
_INITS = {
    "kaiming_normal": nn.init.kaiming_normal_,
    "kaiming_uniform": nn.init.kaiming_uniform_,
    "xavier_normal": nn.init.xavier_normal_,
    "xavier_uniform": nn.init.xavier_uniform_,
}


def _act(mode: str) -> nn.Module:
    if mode == "elu":
        return nn.ELU(inplace=True)
    if mode == "relu":
        return nn.ReLU(inplace=True)
    if mode.startswith("leaky"):
        return nn.LeakyReLU(negative_slope=float(mode[5:]), inplace=True)  # "leaky0.1"
    raise ValueError(mode)


class _Layers:
    """Factory of the layers of one network, so that every block shares its padding / norm / activation options."""

    def __init__(self, pad_mode: str, bn_mode: str, relu_mode: str, init_mode: str, bn_momentum: float) -> None:
        self.pad_mode, self.bn_mode, self.relu_mode, self.bn_momentum = pad_mode, bn_mode, relu_mode, bn_momentum
        self.init = _INITS.get(init_mode)

    def conv(self, cin: int, cout: int, kernel: tuple[int, int, int], bias: bool) -> list[nn.Module]:
        """A 'same' convolution; with ``pad_mode="replicate"`` a ``ReplicationPad3d`` comes first (its own index)."""
        pad = tuple(k // 2 for k in kernel)
        if self.pad_mode == "zero":
            layers: list[nn.Module] = [nn.Conv3d(cin, cout, kernel, padding=pad, bias=bias)]
        else:
            layers = [nn.ReplicationPad3d(tuple(p for p in reversed(pad) for _ in range(2))),
                      nn.Conv3d(cin, cout, kernel, bias=bias)]
        self.initialise(layers[-1])
        return layers

    def initialise(self, conv: nn.Conv3d) -> None:
        if self.init is not None:
            self.init(conv.weight)
            if conv.bias is not None:
                nn.init.zeros_(conv.bias)

    def norm(self, channels: int) -> nn.Module:
        if self.bn_mode == "sync":
            return nn.SyncBatchNorm(channels, momentum=self.bn_momentum)
        return nn.BatchNorm3d(channels, momentum=self.bn_momentum)

    def act(self) -> nn.Module:
        return _act(self.relu_mode)


class _ResBlock(nn.Module):
    """Lee et al.'s residual block: 1x3x3 conv-BN-act, then (3x3x3 conv-BN-act, 3x3x3 conv) added, BN, act."""

    def __init__(self, cin: int, cout: int, layers: _Layers) -> None:
        super().__init__()
        self.block1 = nn.Sequential(*layers.conv(cin, cout, (1, 3, 3), False), layers.norm(cout), layers.act())
        self.block2 = nn.Sequential(
            *layers.conv(cout, cout, (3, 3, 3), False), layers.norm(cout), layers.act(),
            *layers.conv(cout, cout, (3, 3, 3), False),
        )
        self.block3 = layers.norm(cout)
        self.block4 = layers.act()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = self.block1(x)
        return self.block4(self.block3(residual + self.block2(residual)))


def _upsample(cin: int, cout: int, scale: tuple[int, int, int], mode: str, layers: _Layers) -> nn.Sequential:
    """Upsampling by ``scale`` then a 1x1x1 conv; ``transposeS`` is a depthwise transposed conv (kernel = stride)."""
    if mode == "transposeS":
        first: nn.Module = nn.ConvTranspose3d(cin, cin, scale, stride=scale, groups=cin)  # default init, as public
    elif mode == "bilinear":
        first = nn.Upsample(scale_factor=scale, mode="trilinear", align_corners=True)
    else:
        first = nn.Upsample(scale_factor=scale, mode="nearest")
    conv = nn.Conv3d(cin, cout, 1)
    layers.initialise(conv)
    return nn.Sequential(first, conv)


class SuperhumanUNet(nn.Module):
    """Residual symmetric U-Net of Lee et al., as configured in the NeuroDiff segmentation experiments.

    Lee et al. "Superhuman Accuracy on the SNEMI3D Connectomics Challenge", https://arxiv.org/abs/1706.00120;
    used downstream by NeuroDiff (Jiang et al., ISBI 2026, https://arxiv.org/abs/2601.15779) to predict the 3
    nearest-neighbour affinities (z, y, x) of a 16 x 160 x 160 EM crop. The structure is that of the public
    ``UNet_PNI`` (``segmentation_scripts/model/model_superhuman.py``) with the configuration of
    ``config/example_ac4_4%.yaml``, and its modules carry the same names, so a public checkpoint loads directly
    (:func:`convert_superhuman_state_dict` only unwraps ``"model_weights"`` and a DataParallel ``module.`` prefix).
    Matches the public model's output to 0.0 (max abs, probabilities and logits) with its weights: eval mode, a
    1 x 1 x 16 x 160 x 160 input, random BatchNorm statistics, one state_dict loaded into both networks (scratch
    comparison outside the repository; also 0.0 with ``pad_mode="replicate"``, ``merge_mode="add"``, bilinear).

    Layout (``d = len(filters) - 1`` levels): a 1x5x5 conv-act embedding to ``filters[0]``; encoder residual blocks
    ``conv0 .. conv{d-1}`` each followed by a 1x2x2 max-pool (2x2x2 where ``pool_z`` says so); a ``center`` block;
    decoder levels ``up{i}`` (upsample + 1x1x1 conv), ``cat{i}`` (concatenation or sum with the skip, then BN-act)
    and residual block ``conv{d+i}``; a 1x5x5 conv-act, a 1x1x1 output conv and a sigmoid. Each residual block is
    1x3x3 conv-BN-act followed by a residual pair of 3x3x3 convs, so every level convolves in z (4 voxels of z
    context per block) while only in-plane resolution is reduced by default, as suits anisotropic serial-section EM.

    Valid input sizes: Y and X divisible by ``2 ** d`` (16 by default); Z divisible by ``2 ** sum(pool_z)`` (any Z by
    default). Any other size raises a ValueError.

    Public options not carried over: ``decode_ratio`` and ``do_embed`` (unused there), ``show_feature``, and the
    ``"transpose"`` upsampling (a 1x1x1-kernel stride-2 transposed conv whose output is one voxel short, unusable).
    ``bn_mode="sync"`` is ``torch.nn.SyncBatchNorm`` (the public file names a class it never imports).

    Args:
        in_channels: input channels; default 1.
        out_channels: output channels; default 3 (z, y, x affinities).
        filters: widths of the levels, coarsest last, at least 2; default (28, 36, 48, 64, 80).
        pool_z: per pooling level (``len(filters) - 1`` booleans), whether that level also pools in z; default all
            False (the public model pools 1x2x2 only).
        upsample_mode: ``"transposeS"`` (default, depthwise transposed conv), ``"bilinear"`` or ``"nearest"``.
        merge_mode: ``"cat"`` (default) or ``"add"`` for the skip connections.
        pad_mode: ``"zero"`` (default) or ``"replicate"``.
        bn_mode: ``"async"`` (default, ``BatchNorm3d``) or ``"sync"`` (``SyncBatchNorm``).
        relu_mode: ``"elu"`` (default), ``"relu"`` or ``"leaky<slope>"`` such as ``"leaky0.1"``.
        init_mode: conv weight init ``"kaiming_normal"`` (default), ``"kaiming_uniform"``, ``"xavier_normal"``,
            ``"xavier_uniform"`` or ``""`` (PyTorch's default); biases start at 0. Transposed convs keep PyTorch's
            default, as in the public code.
        bn_momentum: BatchNorm momentum; default 0.001 (the public ``UNet_PNI`` default, which its ``build_model``
            keeps).
        sigmoid: end with a sigmoid (probabilities); default True.

    Returns:
        ``(B, out_channels, Z, Y, X)``, in (0, 1) when ``sigmoid``.

    Example::

        net = SuperhumanUNet()
        affinities = net(image)  # image (2, 1, 16, 160, 160) -> (2, 3, 16, 160, 160)
        net.load_state_dict(convert_superhuman_state_dict(torch.load("model-200000.ckpt")))
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 3,
        filters: Sequence[int] = (28, 36, 48, 64, 80),
        pool_z: Sequence[bool] | None = None,
        upsample_mode: str = "transposeS",
        merge_mode: str = "cat",
        pad_mode: str = "zero",
        bn_mode: str = "async",
        relu_mode: str = "elu",
        init_mode: str = "kaiming_normal",
        bn_momentum: float = 0.001,
        sigmoid: bool = True,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        for arg, value in (("in_channels", in_channels), ("out_channels", out_channels)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: {arg} must be an int >= 1, got {value!r}.")
        filters = tuple(filters)
        if len(filters) < 2 or any(isinstance(f, bool) or not isinstance(f, int) or f < 1 for f in filters):
            raise ValueError(f"{name}: filters must be at least 2 ints >= 1, got {filters!r}.")
        depth = len(filters) - 1
        pool_z = (False,) * depth if pool_z is None else tuple(bool(p) for p in pool_z)
        if len(pool_z) != depth:
            raise ValueError(f"{name}: pool_z must have len(filters) - 1 = {depth} entries, got {len(pool_z)}.")
        choices = {"upsample_mode": (upsample_mode, _UPSAMPLE_MODES), "merge_mode": (merge_mode, ("cat", "add")),
                   "pad_mode": (pad_mode, ("zero", "replicate")), "bn_mode": (bn_mode, ("async", "sync")),
                   "init_mode": (init_mode, (*_INITS, ""))}
        for arg, (value, allowed) in choices.items():
            if value not in allowed:
                raise ValueError(f"{name}: {arg} must be one of {allowed}, got {value!r}.")
        try:
            _act(str(relu_mode))
        except ValueError:
            raise ValueError(f"{name}: relu_mode must be 'elu', 'relu' or 'leaky<slope>', got {relu_mode!r}.") from None
        self.depth, self.merge_mode, self.sigmoid = depth, merge_mode, sigmoid
        self.scales = tuple((2 if z else 1, 2, 2) for z in pool_z)
        layers = _Layers(pad_mode, bn_mode, relu_mode, init_mode, bn_momentum)
        widths = (filters[0], *filters)  # the embedding keeps filters[0]

        self.embed_in = nn.Sequential(*layers.conv(in_channels, widths[0], (1, 5, 5), True), layers.act())
        for i in range(depth):
            self.add_module(f"conv{i}", _ResBlock(widths[i], widths[i + 1], layers))
            self.add_module(f"pool{i}", nn.MaxPool3d(self.scales[i], self.scales[i]))
        self.center = _ResBlock(widths[depth], widths[depth + 1], layers)
        for i in range(depth):
            level = depth - i  # the skip comes from conv{level - 1}, width widths[level]
            merged = widths[level] * (2 if merge_mode == "cat" else 1)
            self.add_module(f"up{i}", _upsample(widths[level + 1], widths[level], self.scales[level - 1],
                                                upsample_mode, layers))
            self.add_module(f"cat{i}", nn.Sequential(layers.norm(merged), layers.act()))
            self.add_module(f"conv{depth + i}", _ResBlock(merged, widths[level], layers))
        self.embed_out = nn.Sequential(*layers.conv(widths[0], widths[0], (1, 5, 5), True), layers.act())
        self.out_put = nn.Sequential(nn.Conv3d(widths[0], out_channels, 1))
        layers.initialise(self.out_put[0])

    def check_input_size(self, spatial_size: Sequence[int]) -> None:
        """Raise a ValueError unless ``(Z, Y, X)`` is divisible by the network's total pooling factor."""
        total = [1, 1, 1]
        for scale in self.scales:
            total = [t * s for t, s in zip(total, scale)]
        if len(spatial_size) != 3 or any(s < 1 or s % t for s, t in zip(spatial_size, total)):
            raise ValueError(
                f"{type(self).__name__}: the input's spatial size (Z, Y, X) must be divisible by {tuple(total)}, "
                f"got {tuple(spatial_size)}."
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 5:
            raise ValueError(f"{type(self).__name__}: expected a (B, C, Z, Y, X) input, got shape {tuple(x.shape)}.")
        self.check_input_size(x.shape[2:])
        # 1. embedding and encoder; every level's output is kept for its skip connection
        h = self.embed_in(x)
        skips = []
        for i in range(self.depth):
            h = getattr(self, f"conv{i}")(h)
            skips.append(h)
            h = getattr(self, f"pool{i}")(h)
        h = self.center(h)
        # 2. decoder: upsample, merge with the skip, normalise, residual block
        for i in range(self.depth):
            up, skip = getattr(self, f"up{i}")(h), skips[self.depth - 1 - i]
            merged = torch.cat([up, skip], dim=1) if self.merge_mode == "cat" else up + skip
            h = getattr(self, f"conv{self.depth + i}")(getattr(self, f"cat{i}")(merged))
        # 3. output
        out = self.out_put(self.embed_out(h))
        return torch.sigmoid(out) if self.sigmoid else out


def convert_superhuman_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Public ``UNet_PNI`` weights -> :class:`SuperhumanUNet` weights.

    The module names are the same, so the key map is the identity (``embed_in.0.weight`` -> ``embed_in.0.weight``,
    ``conv0.block2.3.weight`` -> ``conv0.block2.3.weight``, ...). What this does: take ``state_dict["model_weights"]``
    when given a whole public checkpoint (``{"current_iter", "valid_result", "model_weights"}``, ``main.py``), and
    strip the ``module.`` prefix that ``nn.DataParallel`` adds when the public trainer ran on several GPUs.

    Args:
        state_dict: a public state_dict or checkpoint dict.

    Returns:
        a new dict to pass to ``SuperhumanUNet.load_state_dict``.
    """
    if not isinstance(state_dict, Mapping):
        raise TypeError(f"convert_superhuman_state_dict: expected a mapping, got {type(state_dict).__name__}.")
    if "model_weights" in state_dict:
        state_dict = state_dict["model_weights"]
    prefixed = all(key.startswith("module.") for key in state_dict) and len(state_dict) > 0
    return {(key[len("module."):] if prefixed else key): value for key, value in state_dict.items()}
