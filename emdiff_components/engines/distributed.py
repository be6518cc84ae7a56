"""Pieces the bundles' ``multi_gpu_train.json`` overlays need around ``torch.distributed`` (torchrun, NCCL or gloo)."""

from __future__ import annotations

import torch
import torch.distributed as dist
from monai.data import DistributedSampler
from torch.utils.data import DataLoader, RandomSampler, SequentialSampler, WeightedRandomSampler

__all__ = ["distributed_loader", "process_rank"]


def process_rank() -> int:
    """This process's rank in the ``torch.distributed`` group; 0 when no group is initialised (a single process)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def distributed_loader(loader: DataLoader, seed: int = 0) -> DataLoader:
    """``loader`` rebuilt so that each rank of the process group gets its own share of the samples.

    What the model-zoo overlays do with ``train#dataloader#sampler``, for configs whose loaders differ: a shuffling
    (``RandomSampler``) or ordered loader gets MONAI's ``DistributedSampler`` (shuffle kept, ``even_divisible``: every
    rank runs the same number of iterations, as DDP needs); a ``WeightedRandomSampler`` (drawn with replacement) keeps
    its weights and ``num_samples`` and draws on every rank from its own generator, seeded ``seed + rank``, so the
    ranks' draws are independent and each follows the weights (e.g. a real / synthetic mixing ratio). Everything else
    of the loader (batch size, collate, workers) is kept. Without an initialised process group ``loader`` is returned.

    Args:
        loader: the single-process training loader of a bundle config.
        seed: seed of the weighted samplers' generators (the rank is added).

    Returns:
        A loader of the same class over the same dataset.

    Example::

        "train#trainer#train_data_loader": "$emdiff_components.engines.distributed_loader(@train#dataloader, @seed)"
    """
    if not (dist.is_available() and dist.is_initialized()):
        return loader
    sampler = loader.sampler
    if isinstance(sampler, WeightedRandomSampler):
        if not sampler.replacement:
            raise ValueError("distributed_loader: a WeightedRandomSampler without replacement cannot be split into "
                             "independent draws per rank; use replacement=True.")
        generator = torch.Generator().manual_seed(int(seed) + dist.get_rank())
        new = WeightedRandomSampler(sampler.weights, sampler.num_samples, replacement=True, generator=generator)
    elif isinstance(sampler, (RandomSampler, SequentialSampler)):
        new = DistributedSampler(loader.dataset, even_divisible=True, shuffle=isinstance(sampler, RandomSampler))
    else:
        raise TypeError(f"distributed_loader: cannot share a {type(sampler).__name__} between ranks; give the loader "
                        "shuffle=True / False or a WeightedRandomSampler.")
    return type(loader)(
        loader.dataset, batch_size=loader.batch_size, sampler=new, num_workers=loader.num_workers,
        collate_fn=loader.collate_fn, pin_memory=loader.pin_memory, drop_last=loader.drop_last,
        worker_init_fn=loader.worker_init_fn, generator=loader.generator,
    )
