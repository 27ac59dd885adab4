"""The embedding head after the CNN: GeM pooling of the feature map and the learned projection.

Where it sits: **embed**, between the backbone's head map and the L2-normalised descriptor stored in the bank
(:class:`vmatch.embed.TorchEmbedder`). Always fp32, whatever the network's precision. Functions of torch
tensors; torch itself is imported inside them, never at import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import torch

#: Floor of the feature map before GeM (keeps the p-th root defined).
_GEM_EPS = 1e-6


def gem_pool(fmap: torch.Tensor, p: float) -> torch.Tensor:
    """GeM-pool a head map [B, C, h, w] -> fp32 [B, C]: ``mean(x ** p) ** (1 / p)`` over space (plain mean at
    ``p == 1``), ``x`` clamped to at least ``1e-6``."""
    fmap = fmap.float().clamp(min=_GEM_EPS)
    if p == 1.0:
        return fmap.mean(dim=(2, 3))
    return fmap.pow(p).mean(dim=(2, 3)).pow(1.0 / p)


def apply_projection(
    pooled: torch.Tensor, mean: torch.Tensor | None, components: torch.Tensor | None
) -> torch.Tensor:
    """The descriptor of pooled features [B, C]: L2 normalise, then, with a projection,
    ``normalize((x - mean) @ components)`` (what ``models/fit_projection.py`` fits)."""
    import torch.nn.functional as F

    pooled = F.normalize(pooled, p=2.0, dim=1, eps=1e-12)
    if mean is not None and components is not None:
        pooled = (pooled - mean) @ components
        pooled = F.normalize(pooled, p=2.0, dim=1, eps=1e-12)
    return pooled
