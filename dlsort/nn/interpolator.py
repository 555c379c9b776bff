"""Blind-spot interpolator: DeepInterpolation's prediction of each frame from the frames around it, for
every frame of a chunk in one pass.

DeepInterpolation (Lecoq et al., Nature Methods 2021) predicts frame t of a probe from the 30
frames before and the 30 after, leaving out t and its immediate neighbours, so a network trained
to reproduce the recording cannot copy the noise of frame t and learns only what the surrounding
frames predict (the signal). The original runs a U-Net once per output frame. Here two stacks of
dilated causal 1-D convolutions run over time on every cell of the probe grid (cells folded into
the batch, which CPUs run fast), one forward in time and one backward; each is shifted so that its
output at t has seen only frames up to ``t - omission - 1`` (or from ``t + omission + 1``), and a
read-out convolves both over the grid at each frame, so neighbouring channels inform each other; more
read-out layers add a correction, from further along the probe, to the prediction of rows far enough from
the grid's ends. The blind spot holds by construction, for every frame at once.

At the ends of the grid's rows (the ends of a shank, or of the stretch of it that was recorded) the
read-out sees either empty rows (``end_rows="zeros"``, the first shipped models) or the rows inside
mirrored (``"reflect"``): the signal does not stop at the last contact, and a spike centred on an end
row with nothing beyond it looks to the read-out like one smaller than it is.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional


class _CausalStack(nn.Module):
    """Dilated convolutions over time, never looking ahead, on (batch, features, samples, cells) tensors.

    The layers are ``Conv1d`` (one temporal kernel shared by every cell) applied as 2-D
    convolutions of height ``temporal_kernel`` and width 1, so cells stay the innermost axis and
    channels-last memory keeps the small feature vectors of each sample together (several times
    faster on CPU than cells folded into the batch).
    """

    def __init__(self, filters: int, dilations: tuple[int, ...], temporal_kernel: int):
        super().__init__()
        self.dilations = dilations
        self.temporal_kernel = temporal_kernel
        self.layers = nn.ModuleList(
            nn.Conv1d(1 if i == 0 else filters, filters, temporal_kernel, dilation=dilation)
            for i, dilation in enumerate(dilations)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for dilation, layer in zip(self.dilations, self.layers):
            padded = functional.pad(x, (0, 0, (self.temporal_kernel - 1) * dilation, 0))  # the past end only
            x = functional.conv2d(padded, layer.weight.unsqueeze(-1), layer.bias, dilation=(dilation, 1)).relu_()
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
    end_rows : {"zeros", "reflect"}, default: "zeros"
        What the read-out sees beyond the first and last row of the grid: empty rows, or the rows
        inside mirrored (row -1 is row 1; a grid of one row is repeated). Columns always end in empty
        cells. "zeros" is the default of the cards that predate this parameter.
    readout_layers : int, default: 1
        Convolutions over the grid in the read-out (``filters`` features each, ReLU after each),
        each reaching ``spatial_kernel // 2`` rows and columns further across the probe. The
        first gives the prediction; the others compute a correction added to it on the rows
        whose whole reach lies inside the grid (at least ``readout_layers`` rows from either end,
        for 3 x 3 kernels), so rows near the ends are predicted as by one layer: beyond the last
        contact the correction would read only mirrored or empty rows, and it shrank spikes
        there. 1 is the default of the cards that predate this parameter.
    """

    def __init__(self, filters: int = 8, dilations: tuple[int, ...] = (1, 2, 4, 8), temporal_kernel: int = 3,
                 spatial_kernel: int = 3, omission: int = 1, end_rows: str = "zeros", readout_layers: int = 1):
        super().__init__()
        if spatial_kernel % 2 == 0 or temporal_kernel < 1 or omission < 0 or not dilations or readout_layers < 1:
            raise ValueError(f"need an odd spatial_kernel, temporal_kernel >= 1, omission >= 0, at least one "
                             f"dilation and readout_layers >= 1; got {spatial_kernel}, {temporal_kernel}, {omission}, "
                             f"{dilations}, {readout_layers}")
        if end_rows not in ("zeros", "reflect"):
            raise ValueError(f"end_rows must be 'zeros' or 'reflect', got {end_rows!r}")
        self.hyperparameters = dict(filters=filters, dilations=tuple(dilations), temporal_kernel=temporal_kernel,
                                    spatial_kernel=spatial_kernel, omission=omission, end_rows=end_rows,
                                    readout_layers=readout_layers)
        self.omission = omission
        self.context = 1 + (temporal_kernel - 1) * sum(dilations)
        self.end_rows = end_rows
        self.forward_stack = _CausalStack(filters, tuple(dilations), temporal_kernel)
        self.backward_stack = _CausalStack(filters, tuple(dilations), temporal_kernel)
        reach = spatial_kernel // 2
        # rows the first grid convolution reads beyond each end: mirrored in forward(); otherwise the convolution pads
        # them with zeros, as it always pads the columns (and the correction's, whose padding never reaches the rows
        # it corrects)
        self._mirrored_rows = reach if end_rows == "reflect" else 0
        padding = (reach - self._mirrored_rows, reach)
        self.readout = nn.Sequential(nn.Conv2d(2 * filters, filters, spatial_kernel, padding=padding), nn.ReLU(),
                                     nn.Conv2d(filters, 1, 1))
        self.correction = None
        if readout_layers > 1:  # rows within this reach of an end are left to the first layer (see forward)
            layers = []
            for _ in range(readout_layers - 1):
                layers += [nn.Conv2d(filters, filters, spatial_kernel, padding=reach), nn.ReLU()]
            self.correction = nn.Sequential(*layers, nn.Conv2d(filters, 1, 1))
        self._inner_from_end = reach * readout_layers  # first row (from either end) whose correction reads no padding

    def _shifted_past(self, stack: _CausalStack, x: torch.Tensor) -> torch.Tensor:
        """``stack`` output at t moved to ``t + omission + 1``: frame t then saw only frames before ``t - omission``."""
        return functional.pad(stack(x), (0, 0, self.omission + 1, 0))[:, :, : x.shape[2]]

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
        batch, samples, rows, columns = traces.shape
        mask = mask.to(traces.dtype).reshape(-1, 1, rows * columns)  # (1 or batch, 1, cells), broadcasts over samples
        occupied = mask.amax(dim=(0, 1)).nonzero().squeeze(1)  # the stacks skip cells that are empty in every window
        cells = (traces.reshape(batch, samples, -1) * mask)[:, None, :, occupied]  # (batch, 1, samples, occupied)
        cells = cells.contiguous(memory_format=torch.channels_last)
        past = self._shifted_past(self.forward_stack, cells)
        future = self._shifted_past(self.backward_stack, cells.flip(2)).flip(2)
        features = traces.new_zeros(batch, samples, rows * columns, 2 * past.shape[1])
        features[:, :, occupied] = torch.cat([past, future], dim=1).permute(0, 2, 3, 1)
        features = features * mask[..., None]  # cells empty in this window carry nothing into the read-out
        # (batch * samples, features, rows, columns) in channels-last memory: the layout CPUs convolve fastest
        features = features.reshape(batch * samples, rows, columns, -1).permute(0, 3, 1, 2)
        if self._mirrored_rows:
            features = functional.pad(features, (0, 0, self._mirrored_rows, self._mirrored_rows),
                                      mode="reflect" if rows > self._mirrored_rows else "replicate")
        first = self.readout[1](self.readout[0](features))
        prediction = self.readout[2](first)
        inner = slice(self._inner_from_end, rows - self._inner_from_end)
        if self.correction is not None and inner.start < inner.stop:
            prediction[:, :, inner] += self.correction(first)[:, :, inner]
        return prediction.reshape(batch, samples, rows * columns).mul(mask).reshape(batch, samples, rows, columns)
