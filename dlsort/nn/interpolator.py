"""Blind-spot interpolator: DeepInterpolation's prediction of each frame from the frames around it, for
every frame of a chunk in one pass.

DeepInterpolation (Lecoq et al., Nature Methods 2021) predicts frame t of a probe from the 30
frames before and the 30 after, leaving out t and its immediate neighbours, so a network trained
to reproduce the recording cannot copy the noise of frame t and learns only what the surrounding
frames predict (the signal). The original runs a U-Net once per output frame. Here two stacks of
dilated causal convolutions over time (with spatial convolutions over the probe grid) run over
the whole chunk, one forward in time and one backward; each is shifted so that its output at t
has seen only frames up to ``t - omission - 1`` (or from ``t + omission + 1``), and a pointwise
read-out combines them. The blind spot holds by construction, for every frame at once.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional


class _CausalStack(nn.Module):
    """Dilated convolutions over (time, rows, columns) that never look ahead in time."""

    def __init__(self, filters: int, dilations: tuple[int, ...], temporal_kernel: int, spatial_kernel: int):
        super().__init__()
        self.dilations = dilations
        self.temporal_kernel = temporal_kernel
        self.spatial_padding = spatial_kernel // 2
        self.layers = nn.ModuleList(
            nn.Conv3d(1 if i == 0 else filters, filters, (temporal_kernel, spatial_kernel, spatial_kernel),
                      dilation=(dilation, 1, 1))
            for i, dilation in enumerate(dilations)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for dilation, layer in zip(self.dilations, self.layers):
            past = (self.temporal_kernel - 1) * dilation
            padding = (self.spatial_padding,) * 4 + (past, 0)  # columns, rows, then time: left only
            x = torch.relu(layer(functional.pad(x, padding)))
        return x


class BlindSpotInterpolator(nn.Module):
    """Predict every frame of a probe grid from the frames around it, never from itself or its neighbours.

    Parameters
    ----------
    filters : int, default: 8
        Feature channels of each stack.
    dilations : tuple of int, default: (1, 2, 4, 8)
        Temporal dilation of each layer; with ``temporal_kernel`` they set the context: each side
        sees ``1 + (temporal_kernel - 1) * sum(dilations)`` frames (31 by default, as
        DeepInterpolation's 30 plus one).
    temporal_kernel : int, default: 3
    spatial_kernel : int, default: 3
        Odd size of the convolutions over grid rows and columns.
    omission : int, default: 1
        Frames left out on each side of the predicted one (DeepInterpolation's ``pre_post_omission``).
    """

    def __init__(self, filters: int = 8, dilations: tuple[int, ...] = (1, 2, 4, 8), temporal_kernel: int = 3,
                 spatial_kernel: int = 3, omission: int = 1):
        super().__init__()
        if spatial_kernel % 2 == 0 or temporal_kernel < 1 or omission < 0 or not dilations:
            raise ValueError(f"need an odd spatial_kernel, temporal_kernel >= 1, omission >= 0 and at least one "
                             f"dilation; got {spatial_kernel}, {temporal_kernel}, {omission}, {dilations}")
        self.hyperparameters = dict(filters=filters, dilations=tuple(dilations), temporal_kernel=temporal_kernel,
                                    spatial_kernel=spatial_kernel, omission=omission)
        self.omission = omission
        self.context = 1 + (temporal_kernel - 1) * sum(dilations)
        self.forward_stack = _CausalStack(filters, tuple(dilations), temporal_kernel, spatial_kernel)
        self.backward_stack = _CausalStack(filters, tuple(dilations), temporal_kernel, spatial_kernel)
        self.readout = nn.Sequential(nn.Conv3d(2 * filters, filters, 1), nn.ReLU(), nn.Conv3d(filters, 1, 1))

    def _shifted_past(self, stack: _CausalStack, x: torch.Tensor) -> torch.Tensor:
        """``stack`` output at t moved to ``t + omission + 1``: frame t then saw only frames before ``t - omission``."""
        shift = self.omission + 1
        return functional.pad(stack(x), (0, 0, 0, 0, shift, 0))[:, :, : x.shape[2]]

    def forward(self, traces: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Interpolated traces.

        Parameters
        ----------
        traces : torch.Tensor
            (batch, samples, rows, columns), normalised (zero mean, unit variance).
        mask : torch.Tensor
            (rows, columns) or (batch, rows, columns), 1 where a channel sits, 0 in empty cells.

        Returns
        -------
        torch.Tensor
            (batch, samples, rows, columns), zero in empty cells. The first and last
            ``omission + 1`` frames see the other side only; frames within ``context`` of an
            edge see less than the full context, so callers add margins.
        """
        if traces.ndim != 4:
            raise ValueError(f"traces must be (batch, samples, rows, columns), got shape {tuple(traces.shape)}")
        mask = mask.to(traces.dtype)
        mask = mask.unsqueeze(1) if mask.ndim == 3 else mask  # broadcasts over samples
        x = (traces * mask).unsqueeze(1)
        past = self._shifted_past(self.forward_stack, x)
        future = self._shifted_past(self.backward_stack, x.flip(2)).flip(2)
        return self.readout(torch.cat([past, future], dim=1)).squeeze(1) * mask
