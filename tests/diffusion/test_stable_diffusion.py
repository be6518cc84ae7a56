"""The diffusers Stable Diffusion texture path on a tiny random SD 1.5-shaped pipeline built here (no weights, no
downloads): shapes, range, seeds, the public sampling settings, the 3D latent noise, texture_cells, the errors."""

from __future__ import annotations

import importlib.util
import itertools
import json
import os
import shutil
import tempfile
import unittest
from pathlib import Path
from unittest import mock

import numpy as np
import torch
import torch.nn.functional as F
from bundle_testing import load_script
from parameterized import parameterized

from emdiff_components.diffusion import (
    SliceConsistentNoise,
    StableDiffusionTextureInferer,
    load_controlnet_pipeline,
    slice_consistent_noise,
)
from emdiff_components.diffusion import stable_diffusion as sd_module
from emdiff_components.engines import texture_cells

HAS_SD = all(importlib.util.find_spec(name) is not None for name in ("diffusers", "transformers"))
SKIP_REASON = "diffusers / transformers not installed (pip install 'emdiff-components[sd]')"
STEPS = 3
FIXTURE = Path(__file__).resolve().parent / "controlldm_tiny.json"


def build_tiny_pipeline(
    folder: str | os.PathLike, seed: int = 0, unet_channels: tuple[int, int] = (8, 16), vae_channels: int = 8,
    norm_num_groups: int = 4, conditioning_channels: tuple[int, ...] = (4, 8, 8, 8),
) -> Path:
    """A random StableDiffusionControlNetPipeline with SD 1.5's layout and scheduler, saved in the diffusers layout.

    U-Net with cross-attention (4 latent channels, 2 levels of ``unet_channels``), ControlNet copied from it with its
    zero-initialised layers made random and its hint encoder variance-preserving (so the mask matters), a 4-level VAE
    (scale factor 8, as SD), a 1-layer CLIP text encoder, a CLIP tokenizer from a 2-token vocab.json + merges.txt,
    SD 1.5's PNDM scheduler config.
    """
    from diffusers import (
        AutoencoderKL,
        ControlNetModel,
        PNDMScheduler,
        StableDiffusionControlNetPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=unet_channels, layers_per_block=1, sample_size=16, in_channels=4, out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=16, norm_num_groups=norm_num_groups, attention_head_dim=2,
    )
    controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=conditioning_channels)
    for name, parameter in controlnet.named_parameters():
        if name.startswith("controlnet_cond_embedding") and parameter.ndim == 4:
            torch.nn.init.kaiming_normal_(parameter)  # keeps the mask's signal through the 8 convolutions
        elif not parameter.any():
            torch.nn.init.normal_(parameter, std=0.3)
    vae = AutoencoderKL(
        block_out_channels=(vae_channels,) * 4, in_channels=3, out_channels=3, latent_channels=4,
        norm_num_groups=norm_num_groups,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4, layers_per_block=1,
    )
    text_encoder = CLIPTextModel(CLIPTextConfig(
        bos_token_id=0, eos_token_id=1, pad_token_id=1, hidden_size=16, intermediate_size=32, num_attention_heads=2,
        num_hidden_layers=1, vocab_size=8, max_position_embeddings=77, projection_dim=16,
    ))
    with tempfile.TemporaryDirectory() as vocab_dir:
        Path(vocab_dir, "vocab.json").write_text(json.dumps({"<|startoftext|>": 0, "<|endoftext|>": 1}))
        Path(vocab_dir, "merges.txt").write_text("#version: 0.2\n")
        tokenizer = CLIPTokenizer.from_pretrained(vocab_dir, model_max_length=77)
    scheduler = PNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", skip_prk_steps=True,
                              set_alpha_to_one=False, steps_offset=1)
    pipeline = StableDiffusionControlNetPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, controlnet=controlnet, scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipeline.save_pretrained(folder)
    return Path(folder)


def disc_masks(size: int = 16) -> torch.Tensor:
    """Two masks (2, 1, S, S): a disc and a smaller off-centre square."""
    yy, xx = np.mgrid[:size, :size]
    disc = ((yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size / 3) ** 2).astype(np.float32)
    square = np.zeros((size, size), np.float32)
    square[2 : size // 2, 3 : size // 2 + 2] = 1.0
    return torch.tensor(np.stack([disc, square])[:, None])


def neighbour_correlation(stack: torch.Tensor) -> float:
    """Mean Pearson correlation of slices z and z + 1 of (B, 1, Z, Y, X) stacks."""
    values = []
    for sample in stack[:, 0]:
        for a, b in itertools.pairwise(sample):
            values.append(float(np.corrcoef(a.flatten().numpy(), b.flatten().numpy())[0, 1]))
    return float(np.mean(values))


@unittest.skipUnless(HAS_SD, SKIP_REASON)
class TestStableDiffusionTextureInferer(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.threads = torch.get_num_threads()
        torch.set_num_threads(1)
        cls.tmp = tempfile.TemporaryDirectory()
        cls.folder = build_tiny_pipeline(Path(cls.tmp.name) / "sd")
        cls.inferer = StableDiffusionTextureInferer(str(cls.folder), num_inference_steps=STEPS, device="cpu")

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()
        torch.set_num_threads(cls.threads)

    def sample(self, masks, seed=0, inferer=None, **kwargs):
        return (inferer or self.inferer).sample(masks, generator=torch.Generator().manual_seed(seed), **kwargs)

    def test_matches_a_direct_pipeline_call(self):
        masks = disc_masks()
        out = self.sample(masks, seed=3)
        self.assertEqual((out.shape, out.dtype), ((2, 1, 16, 16), torch.float32))
        self.assertTrue(-1.0 <= float(out.min()) and float(out.max()) <= 1.0)
        # the same sampling written out: x_T from the seed, the mask repeated 8 x 8 on 3 channels, first latent channel
        pipe = self.inferer.pipeline
        x_t = torch.randn((2, 4, 16, 16), generator=torch.Generator().manual_seed(3))
        control = masks.repeat_interleave(8, dim=2).repeat_interleave(8, dim=3).repeat(1, 3, 1, 1)
        latents = pipe(prompt=["", ""], image=control, height=128, width=128, num_inference_steps=STEPS,
                       guidance_scale=5.0, latents=x_t, output_type="latent", controlnet_conditioning_scale=2.0,
                       guess_mode=True, return_dict=False)[0]
        torch.testing.assert_close(out, latents[:, :1].clamp(-1, 1), rtol=0, atol=0)
        self.assertGreater(float((latents[:, :1].abs() > 1).float().mean()), 0.0)  # the clip did something

    def test_seed_and_mask_decide_the_output(self):
        masks = disc_masks()
        first, again, other_seed = self.sample(masks, 0), self.sample(masks, 0), self.sample(masks, 1)
        torch.testing.assert_close(first, again, rtol=0, atol=0)
        self.assertGreater(float((first - other_seed).abs().mean()), 0.05)
        swapped = self.sample(masks.flip(0), 0)  # same x_T per row, the other mask
        self.assertGreater(float((first - swapped).abs().mean()), 1e-3)
        # MONAI's evaluator call samples with the seed
        torch.testing.assert_close(self.inferer(masks, None), first, rtol=0, atol=0)

    def test_public_sampling_settings(self):
        pipe, seen = self.inferer.pipeline, {"controlnet": [], "unet": []}

        def remember(name):
            def hook(module, args, kwargs):
                seen[name].append((args, kwargs))
            return hook

        handles = [pipe.controlnet.register_forward_pre_hook(remember("controlnet"), with_kwargs=True),
                   pipe.unet.register_forward_pre_hook(remember("unet"), with_kwargs=True)]
        try:
            self.sample(disc_masks())
        finally:
            for handle in handles:
                handle.remove()
        self.assertEqual((len(seen["controlnet"]), len(seen["unet"])), (STEPS, STEPS))
        args, kwargs = seen["controlnet"][0]
        # guess mode: the ControlNet sees only the conditional half, scaled by the strength 2
        self.assertEqual(args[0].shape[0], 2)
        self.assertEqual((kwargs["conditioning_scale"], kwargs["guess_mode"]), (2.0, True))
        expected = disc_masks().repeat_interleave(8, dim=2).repeat_interleave(8, dim=3).repeat(1, 3, 1, 1)
        torch.testing.assert_close(kwargs["controlnet_cond"], expected, rtol=0, atol=0)
        # classifier-free guidance: the U-Net sees 2 x the batch, empty negative prompt == empty prompt
        args, kwargs = seen["unet"][0]
        self.assertEqual(args[0].shape[0], 4)
        text = kwargs["encoder_hidden_states"]
        tokens = pipe.tokenizer([""], padding="max_length", max_length=77, return_tensors="pt").input_ids
        empty = pipe.text_encoder(tokens)[0]
        for row in text:
            torch.testing.assert_close(row, empty[0])
        # DDIM as ddim_hacked.py: range(0, 1000, 20) + 1, the last step to alphas_cumprod[0]
        scheduler = pipe.scheduler
        self.assertEqual(type(scheduler).__name__, "DDIMScheduler")
        scheduler.set_timesteps(50)
        np.testing.assert_array_equal(scheduler.timesteps.numpy(), np.arange(0, 1000, 20)[::-1] + 1)
        self.assertEqual(float(scheduler.final_alpha_cumprod), float(scheduler.alphas_cumprod[0]))
        betas = np.linspace(0.00085**0.5, 0.012**0.5, 1000) ** 2  # models/cldm_v15.yaml
        np.testing.assert_allclose(scheduler.betas.numpy(), betas, rtol=1e-5)

    def test_vae_output_and_latent_size(self):
        masks = disc_masks()
        vae_inferer = StableDiffusionTextureInferer(pipeline=self.inferer.pipeline, num_inference_steps=STEPS,
                                                    output="vae")
        out = self.sample(masks, 0, vae_inferer)
        self.assertEqual(out.shape, (2, 1, 16, 16))
        self.assertTrue(-1.0 <= float(out.min()) and float(out.max()) <= 1.0)
        # decoded 128 x 128 RGB -> mean of the channels -> 16 x 16
        pipe = self.inferer.pipeline
        x_t = torch.randn((2, 4, 16, 16), generator=torch.Generator().manual_seed(0))
        control = F.interpolate(masks, scale_factor=8, mode="nearest").repeat(1, 3, 1, 1)
        latents = pipe(prompt=["", ""], image=control, num_inference_steps=STEPS, guidance_scale=5.0, latents=x_t,
                       output_type="latent", controlnet_conditioning_scale=2.0, guess_mode=True, return_dict=False)[0]
        rgb = pipe.vae.decode(latents / pipe.vae.config.scaling_factor).sample
        self.assertEqual(rgb.shape, (2, 3, 128, 128))
        expected = F.interpolate(rgb.mean(1, keepdim=True), size=(16, 16), mode="bilinear", antialias=True)
        torch.testing.assert_close(out, expected.clamp(-1, 1), rtol=1e-5, atol=1e-6)
        # a latent of 8 x 8 for 16 x 16 masks: 64 x 64 control image, the first latent channel resized to 16 x 16
        small = StableDiffusionTextureInferer(pipeline=pipe, num_inference_steps=STEPS, latent_size=8)
        out = self.sample(masks, 0, small)
        self.assertEqual(out.shape, (2, 1, 16, 16))
        x_t = torch.randn((2, 4, 8, 8), generator=torch.Generator().manual_seed(0))
        latents = pipe(prompt=["", ""], image=F.interpolate(masks, size=(64, 64), mode="nearest").repeat(1, 3, 1, 1),
                       num_inference_steps=STEPS, guidance_scale=5.0, latents=x_t, output_type="latent",
                       controlnet_conditioning_scale=2.0, guess_mode=True, return_dict=False)[0]
        expected = F.interpolate(latents[:, :1], size=(16, 16), mode="bilinear", antialias=True).clamp(-1, 1)
        torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)

    def test_stack_with_slice_consistent_latent_noise(self):
        disc = disc_masks()[:1]
        stack = disc[:, :, None].expand(2, 1, 8, 16, 16).contiguous()  # 2 stacks of 8 identical slices
        consistent = StableDiffusionTextureInferer(pipeline=self.inferer.pipeline, num_inference_steps=STEPS,
                                                   noise=SliceConsistentNoise(rho=3.0))
        out = self.sample(stack, 5, consistent)
        self.assertEqual(out.shape, (2, 1, 8, 16, 16))
        # the provider draws x_T in latent space (B, 4, Z, h, w); slice z of stack b is the 2D sample of its x_T
        x_t = slice_consistent_noise((2, 4, 8, 16, 16), rho=3.0, generator=torch.Generator().manual_seed(5))
        torch.testing.assert_close(out, self.inferer.sample(stack, noise=x_t), rtol=0, atol=0)
        flat = self.inferer.sample(stack.movedim(2, 1).flatten(0, 1), noise=x_t.movedim(2, 1).flatten(0, 1))
        torch.testing.assert_close(out, flat.unflatten(0, (2, 8)).movedim(1, 2), rtol=0, atol=0)
        # x_T slices correlate rho^2 / (1 + rho^2): 0.9 at rho = 3, 0.33 at the paper's 0.7, 0 for independent noise;
        # the neighbouring output slices follow (measured: 0.77-0.79, 0.20-0.22, -0.01-0.03 over seeds 5-7)
        paper = StableDiffusionTextureInferer(pipeline=self.inferer.pipeline, num_inference_steps=STEPS,
                                              noise=SliceConsistentNoise(rho=0.7))
        independent = neighbour_correlation(self.sample(stack, 5))
        correlated = neighbour_correlation(out)
        self.assertGreater(correlated, 0.6)
        self.assertTrue(0.1 < neighbour_correlation(self.sample(stack, 5, paper)) < correlated)
        self.assertLess(abs(independent), 0.1)

    def test_texture_cells(self):
        masks = (disc_masks()[:, 0].numpy() > 0).astype(np.uint8)
        textures = texture_cells(self.inferer, self.inferer.pipeline.controlnet, masks, batch_size=1, seed=4)
        self.assertEqual((textures.shape, textures.dtype), ((2, 16, 16), np.float32))
        self.assertTrue(0.0 <= textures.min() and textures.max() <= 255.0)
        generator = torch.Generator().manual_seed(4)  # texture_cells: one generator across its batches
        expected = [self.inferer.sample(torch.tensor(m[None, None], dtype=torch.float32), generator=generator)
                    for m in masks]
        np.testing.assert_allclose(textures, (torch.cat(expected)[:, 0].numpy() + 1.0) * 127.5, rtol=1e-6)
        stacks = np.repeat(masks[:, None], 3, axis=1)  # (2, Z=3, 16, 16) through the same call, no network
        textures = texture_cells(self.inferer, None, stacks, batch_size=2, seed=4)  # no network: the CPU
        self.assertEqual(textures.shape, (2, 3, 16, 16))
        self.assertTrue(0.0 <= textures.min() and textures.max() <= 255.0)

    def test_separate_controlnet_folder_and_cpu_log(self):
        with self.assertLogs(sd_module.logger, "INFO") as logs:
            inferer = StableDiffusionTextureInferer(str(self.folder), str(self.folder / "controlnet"),
                                                    num_inference_steps=STEPS, device="cpu")
        self.assertIn("no GPU", "".join(logs.output))
        torch.testing.assert_close(self.sample(disc_masks(), 2, inferer), self.sample(disc_masks(), 2), rtol=0, atol=0)

    @parameterized.expand([
        ("range", torch.full((1, 1, 16, 16), 2.0), r"\[0, 1\]"),
        ("nan", torch.full((1, 1, 16, 16), float("nan")), r"\[0, 1\]"),
        ("channels", torch.zeros((1, 2, 16, 16)), r"\(B, 1 or 3, Y, X\)"),
        ("ndim", torch.zeros((16, 16)), r"\(B, 1 or 3, Y, X\)"),
        ("size", torch.zeros((1, 1, 15, 16)), r"not divisible by the U-Net's down-sampling 2"),
    ])
    def test_bad_mask(self, _, mask, pattern):
        with self.assertRaisesRegex(ValueError, pattern):
            self.inferer.sample(mask)

    def test_bad_noise_and_arguments(self):
        with self.assertRaisesRegex(ValueError, r"latent shape \(1, 4, 16, 16\)"):
            self.inferer.sample(disc_masks()[:1], noise=torch.zeros(1, 1, 16, 16))
        pipe = self.inferer.pipeline
        for kwargs, pattern in (
            ({"sd_path": str(self.folder), "pipeline": pipe}, "exactly one"),
            ({}, "exactly one"),
            ({"pipeline": pipe, "guidance_scale": -1.0}, "guidance_scale"),
            ({"pipeline": pipe, "output": "rgb"}, "output must be one of"),
            ({"pipeline": pipe, "latent_size": (8, 0)}, "latent_size"),
            ({"pipeline": pipe, "num_inference_steps": 0}, "num_inference_steps"),
        ):
            with self.assertRaisesRegex(ValueError, pattern):
                StableDiffusionTextureInferer(**kwargs)

    def test_bad_weights(self):
        root = Path(self.tmp.name)
        cases = [({"sd_path": root / "missing"}, FileNotFoundError, "Stable Diffusion path .*missing' does not exist"),
                 ({"sd_path": self.folder / "unet"}, ValueError, "unet' is not a diffusers Stable Diffusion folder"),
                 ({"sd_path": self.folder / "model_index.json"}, ValueError, "neither a diffusers folder nor a checkpoint"),
                 ({"sd_path": self.folder, "controlnet_path": self.folder / "unet"}, ValueError,
                  "describes a 'UNet2DConditionModel', not a ControlNetModel")]
        no_vae = root / "no_vae"
        if not no_vae.exists():
            shutil.copytree(self.folder, no_vae)
            index = json.loads((no_vae / "model_index.json").read_text())
            del index["vae"], index["controlnet"]
            (no_vae / "model_index.json").write_text(json.dumps(index))
        cases.append(({"sd_path": no_vae}, ValueError, "lists no vae"))
        no_controlnet = root / "no_controlnet"
        if not no_controlnet.exists():
            shutil.copytree(self.folder, no_controlnet)
            index = json.loads((no_controlnet / "model_index.json").read_text())
            del index["controlnet"]
            (no_controlnet / "model_index.json").write_text(json.dumps(index))
        cases.append(({"sd_path": no_controlnet}, ValueError, "holds no ControlNet; give controlnet_path"))
        checkpoint = root / "foreign.ckpt"
        torch.save({"state_dict": {"weight": torch.zeros(2)}}, checkpoint)
        cases.append(({"sd_path": checkpoint}, ValueError, "foreign.ckpt' needs config_path"))
        cases.append(({"sd_path": checkpoint, "config_path": self.folder}, ValueError,
                      "cannot read a ControlNet from .*foreign.ckpt"))
        for kwargs, error, pattern in cases:
            with self.subTest(pattern=pattern), self.assertRaisesRegex(error, pattern):
                StableDiffusionTextureInferer(**{k: str(v) for k, v in kwargs.items()}, device="cpu")


@unittest.skipUnless(HAS_SD, SKIP_REASON)
class TestControlLDMCheckpoint(unittest.TestCase):
    """The public training's checkpoint layout (tiny, seeded weights; scripts/make_controlldm_fixture.py) read by
    diffusers' from_single_file: the converted networks give the public code's classes' outputs."""

    @classmethod
    def setUpClass(cls):
        cls.threads = torch.get_num_threads()
        torch.set_num_threads(1)
        fixture = json.loads(FIXTURE.read_text())
        make = load_script("make_controlldm_fixture")
        cls.tmp = tempfile.TemporaryDirectory()
        cls.checkpoint = Path(cls.tmp.name) / "last.ckpt"  # a Lightning checkpoint: the weights under "state_dict"
        torch.save({"state_dict": make.seeded_state_dict(fixture["keys"]), "global_step": 1}, cls.checkpoint)
        # the SD 1.5 folder of config_path, at the fixture's widths; its own (random) weights must not be read
        cls.config = build_tiny_pipeline(Path(cls.tmp.name) / "config", seed=7, unet_channels=(32, 64), vae_channels=32,
                                         norm_num_groups=32)
        cls.pipe = load_controlnet_pipeline(cls.checkpoint, config_path=cls.config, device="cpu")
        cls.inputs = make.fixture_inputs()
        cls.expected = {k: torch.tensor(v["values"]).reshape(v["shape"]) for k, v in fixture["outputs"].items()}

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()
        torch.set_num_threads(cls.threads)

    def test_networks_match_the_public_classes(self):
        pipe, x, t, context = self.pipe, self.inputs["x"], self.inputs["t"], self.inputs["context"]
        self.assertEqual(len(json.loads(FIXTURE.read_text())["keys"]), 533)
        with torch.no_grad():
            unet = pipe.unet(x, t, encoder_hidden_states=context).sample
            down, mid = pipe.controlnet(x, t, encoder_hidden_states=context, controlnet_cond=self.inputs["hint"],
                                        return_dict=False)
            guided = pipe.unet(x, t, encoder_hidden_states=context, down_block_additional_residuals=down,
                               mid_block_additional_residual=mid).sample
            decoded = pipe.vae.decode(self.inputs["z"]).sample
            text = pipe.text_encoder(self.inputs["tokens"])[0][:, :4]
        norms = torch.stack([r.norm() for r in [*down, mid]])
        for name, ours in (("unet", unet), ("controlnet_norms", norms), ("guided_unet", guided),
                           ("vae_decode", decoded), ("text", text)):
            with self.subTest(name=name):
                torch.testing.assert_close(ours, self.expected[name], atol=1e-4, rtol=1e-4)
        self.assertGreater(float((guided - unet).abs().max()), 0.1)  # the residuals matter

    def test_inferer_reads_the_checkpoint(self):
        inferer = StableDiffusionTextureInferer(str(self.checkpoint), config_path=str(self.config),
                                                num_inference_steps=2, device="cpu")
        out = inferer.sample(self.inputs["hint"][:, :1, ::8, ::8], generator=torch.Generator().manual_seed(0))
        self.assertEqual(out.shape, (1, 1, 8, 8))
        self.assertTrue(-1.0 <= float(out.min()) and float(out.max()) <= 1.0)
        torch.testing.assert_close(inferer.pipeline.unet.conv_in.weight, self.pipe.unet.conv_in.weight, rtol=0, atol=0)

    def test_controlnet_checkpoint_with_an_sd_folder(self):
        # the checkpoint's ControlNet on the folder's SD weights: its config comes from the folder's U-Net
        pipe = load_controlnet_pipeline(self.config, controlnet_path=self.checkpoint, device="cpu")
        inputs = self.inputs
        with torch.no_grad():
            down, mid = pipe.controlnet(inputs["x"], inputs["t"], encoder_hidden_states=inputs["context"],
                                        controlnet_cond=inputs["hint"], return_dict=False)
        norms = torch.stack([r.norm() for r in [*down, mid]])
        torch.testing.assert_close(norms, self.expected["controlnet_norms"], atol=1e-4, rtol=1e-4)
        self.assertFalse(torch.equal(pipe.unet.conv_in.weight, self.pipe.unet.conv_in.weight))  # the folder's U-Net


class TestStableDiffusionWithoutDiffusers(unittest.TestCase):
    def test_missing_packages_name_the_install_command(self):
        def without_diffusers(name, *args, **kwargs):
            return None, name not in ("diffusers", "transformers")

        pattern = r"needs diffusers and transformers: pip install 'emdiff-components\[sd\]'"
        with mock.patch.object(sd_module, "optional_import", side_effect=without_diffusers), \
                self.assertRaisesRegex(ImportError, pattern):
            StableDiffusionTextureInferer("anywhere")
