"""Write the ControlNet-LDM reference fixture: the key layout of the public training's checkpoint at a tiny size and the
outputs that the public code's own classes give with seeded weights.

Yilmaz et al. "Cascaded Diffusion Models for 2D and 3D Microscopy Image Synthesis to Enhance Cell Segmentation",
https://arxiv.org/abs/2411.11515; public code ``ruveydayilmaz0/cascaded_diffusion``. Its ``train/train_cells.py``
saves a ``ControlLDM`` (``models/cldm_v15.yaml``): ``model.diffusion_model.*`` (``cldm.ControlledUnetModel``),
``control_model.*`` (``cldm.ControlNet``), ``first_stage_model.*`` (``ldm`` ``Encoder`` / ``Decoder`` and the quant
convolutions), ``cond_stage_model.transformer.text_model.*`` (CLIP's text model, with its ``position_ids``). This
script builds those classes from a checkout of the public code at a tiny width (GroupNorm needs 32 channels), lists
the keys and shapes, fills them with :func:`seeded_state_dict` and records the networks' outputs on
:func:`fixture_inputs`. ``tests/diffusion/test_stable_diffusion.py`` rebuilds the same checkpoint from the key list,
loads it through ``load_controlnet_pipeline`` (diffusers' ``from_single_file``) and compares. No weights are stored.

Usage (needs the public code's checkout; pytorch_lightning, omegaconf and torchvision are stubbed, only the network
modules are used)::

    python scripts/make_controlldm_fixture.py /path/to/cascaded_diffusion [--out tests/diffusion/controlldm_tiny.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import types
from pathlib import Path

import torch

logger = logging.getLogger("make_controlldm_fixture")

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "tests" / "diffusion" / "controlldm_tiny.json"
# cldm_v15.yaml's unet_config / control_stage_config at a tiny width (SD 1.5: 320 channels, mult 1 2 4 4, 8 heads, 768)
UNET_ARGS = {"image_size": 32, "in_channels": 4, "model_channels": 32, "attention_resolutions": [1],
             "num_res_blocks": 1, "channel_mult": [1, 2], "num_heads": 2, "use_spatial_transformer": True,
             "transformer_depth": 1, "context_dim": 16, "legacy": False}
# first_stage_config's ddconfig at a tiny width (SD 1.5: ch 128, ch_mult 1 2 4 4, 2 res blocks)
VAE_ARGS = {"double_z": True, "z_channels": 4, "resolution": 64, "in_channels": 3, "out_ch": 3, "ch": 32,
            "ch_mult": [1, 1, 1, 1], "num_res_blocks": 1, "attn_resolutions": [], "dropout": 0.0}
CLIP_ARGS = {"bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 1, "hidden_size": 16, "intermediate_size": 32,
             "num_attention_heads": 2, "num_hidden_layers": 1, "vocab_size": 8, "max_position_embeddings": 77,
             "projection_dim": 16}
TIMESTEP = 981
CLIP_PREFIX = "cond_stage_model.transformer.text_model."


def seeded_state_dict(keys: list, seed: int = 0) -> dict[str, torch.Tensor]:
    """Weights for ``[[key, shape, dtype], ...]`` drawn in order from one generator: matrices and kernels
    ``N(0, 1 / fan_in)``, 1-d weights (the norms) ``1 + N(0, 0.01)``, biases ``N(0, 0.01)``, ``position_ids`` the
    positions."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape, dtype in keys:
        if key.endswith("position_ids"):
            state[key] = torch.arange(shape[-1], dtype=getattr(torch, dtype)).expand(shape).clone()
        elif len(shape) >= 2:
            state[key] = torch.randn(shape, generator=generator) / math.sqrt(math.prod(shape[1:]))
        elif key.endswith("weight"):
            state[key] = 1.0 + 0.1 * torch.randn(shape, generator=generator)
        else:
            state[key] = 0.1 * torch.randn(shape, generator=generator)
    return state


def fixture_inputs(seed: int = 1) -> dict[str, torch.Tensor]:
    """Latent ``x`` (1, 4, 8, 8), text context (1, 77, 16), a disc hint (1, 3, 64, 64), VAE latent ``z`` (1, 4, 2, 2)
    and the empty prompt's token ids (bos, then eos as padding)."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn((1, 4, 8, 8), generator=generator)
    context = torch.randn((1, 77, 16), generator=generator)
    z = torch.randn((1, 4, 2, 2), generator=generator)
    yy, xx = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    hint = (((yy - 30) ** 2 + (xx - 36) ** 2) < 20**2).float().expand(1, 3, 64, 64).contiguous()
    tokens = torch.tensor([[0] + [1] * 76])
    return {"x": x, "context": context, "z": z, "hint": hint, "tokens": tokens, "t": torch.tensor([TIMESTEP])}


def _public_modules(public_code: Path):
    """The public code's network classes, with the training-only imports stubbed."""
    import transformers  # noqa: F401  (imported before torchvision is stubbed)

    stubs = {"ldm.models.diffusion.ddpm": {"LatentDiffusion": object}, "ldm.models.diffusion.ddim": {"DDIMSampler": object},
             "torchvision": {}, "torchvision.utils": {"make_grid": None}, "omegaconf": {},
             "omegaconf.listconfig": {"ListConfig": type("ListConfig", (list,), {})}}
    for name, attributes in stubs.items():
        module = types.ModuleType(name)
        module.__dict__.update(attributes)
        sys.modules.setdefault(name, module)
    sys.path.insert(0, str(public_code))
    from cldm.cldm import ControlledUnetModel, ControlNet
    from ldm.modules.diffusionmodules.model import Decoder, Encoder

    return ControlledUnetModel, ControlNet, Encoder, Decoder


def make_fixture(public_code: Path) -> dict:
    from transformers import CLIPTextConfig, CLIPTextModel

    ControlledUnetModel, ControlNet, Encoder, Decoder = _public_modules(public_code)
    parts = {
        "model.diffusion_model.": ControlledUnetModel(out_channels=4, **UNET_ARGS),
        "control_model.": ControlNet(hint_channels=3, **UNET_ARGS),
        "first_stage_model.encoder.": Encoder(**VAE_ARGS),
        "first_stage_model.decoder.": Decoder(**VAE_ARGS),
        "first_stage_model.quant_conv.": torch.nn.Conv2d(8, 8, 1),
        "first_stage_model.post_quant_conv.": torch.nn.Conv2d(4, 4, 1),
        CLIP_PREFIX: CLIPTextModel(CLIPTextConfig(**CLIP_ARGS)),
    }
    keys = []
    for prefix, module in parts.items():
        module.eval()
        keys += [[prefix + k.removeprefix("text_model."), list(v.shape), str(v.dtype).removeprefix("torch.")]
                 for k, v in module.state_dict().items()]
    keys.append([CLIP_PREFIX + "embeddings.position_ids", [1, 77], "int64"])  # SD 1.5's checkpoint holds it
    state = seeded_state_dict(keys)
    for prefix, module in parts.items():
        own = {k.removeprefix("text_model."): k for k in module.state_dict()}
        module.load_state_dict({own[k[len(prefix):]]: v for k, v in state.items()
                                if k.startswith(prefix) and k[len(prefix):] in own}, strict=True)
    inputs = fixture_inputs()
    unet, control = parts["model.diffusion_model."], parts["control_model."]
    with torch.no_grad():
        residuals = control(inputs["x"], inputs["hint"], inputs["t"], inputs["context"])
        outputs = {
            "unet": unet(inputs["x"], inputs["t"], inputs["context"], control=None),
            "controlnet_norms": torch.stack([r.norm() for r in residuals]),
            "guided_unet": unet(inputs["x"], inputs["t"], inputs["context"], control=list(residuals)),
            "vae_decode": parts["first_stage_model.decoder."](parts["first_stage_model.post_quant_conv."](inputs["z"])),
            "text": parts[CLIP_PREFIX](inputs["tokens"])[0][:, :4],
        }
    return {
        "about": __doc__.split("\n\n")[0],
        "unet_args": UNET_ARGS, "vae_args": VAE_ARGS, "clip_args": CLIP_ARGS,
        "keys": keys,
        "outputs": {name: {"shape": list(v.shape), "values": [round(float(f), 7) for f in v.flatten()]}
                    for name, v in outputs.items()},
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("public_code", type=Path, help="checkout of ruveydayilmaz0/cascaded_diffusion")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    if not (args.public_code / "cldm" / "cldm.py").is_file():
        parser.error(f"{args.public_code} has no cldm/cldm.py: not a checkout of the public cascaded_diffusion code")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(1)
    fixture = make_fixture(args.public_code)
    args.out.write_text(json.dumps(fixture, separators=(",", ":")) + "\n")
    logger.info("%s: %d keys, %d bytes", args.out, len(fixture["keys"]), args.out.stat().st_size)


if __name__ == "__main__":
    main()
