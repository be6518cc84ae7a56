"""What MONAI's MetricsSaver needs from a batch whose items carry their name under a key of their own."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

__all__ = ["filename_meta"]


def filename_meta(batch: Sequence[Mapping[str, object]], key: str = "name") -> list[dict[str, str]]:
    """``MetricsSaver``'s ``batch_transform``: one ``{"filename_or_obj": item[key]}`` per item of a decollated batch.

    MetricsSaver names the rows of its per-image table after ``filename_or_obj`` of each item's meta data; items
    loaded without MONAI meta data (e.g. NeuroDiff's volumes, named by the data list) give their name this way.

    Args:
        batch: the evaluator's ``engine.state.batch`` after post-processing: a list of dicts.
        key: the item key that holds the name; default ``"name"``.

    Returns:
        A list of ``{"filename_or_obj": str}``, one per item, in batch order.
    """
    missing = [i for i, item in enumerate(batch) if key not in item]
    if missing:
        raise KeyError(f"filename_meta: batch items {missing} have no {key!r} key.")
    return [{"filename_or_obj": str(item[key])} for item in batch]
