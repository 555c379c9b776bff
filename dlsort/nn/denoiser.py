"""Single-channel spike waveform denoiser (the YASS design: two temporal convolutions, a linear read-out)."""

from __future__ import annotations

import torch
from torch import nn


class SingleChannelDenoiser(nn.Module):
    """Map a noisy single-channel waveform to the clean spike waveform it contains.

    Inputs and outputs are in noise-standard-deviation units, one waveform per row. Every channel
    of a spike's neighbourhood is denoised on its own, so the same weights serve any probe.

    Parameters
    ----------
    num_samples : int
        Samples per waveform (the model card's window at its sampling rate).
    filters : tuple of int, default: (16, 8)
        Channels of the two convolutions.
    kernel_sizes : tuple of int, default: (5, 11)
        Their kernel sizes (valid convolutions).
    """

    def __init__(self, num_samples: int, filters: tuple[int, int] = (16, 8), kernel_sizes: tuple[int, int] = (5, 11)):
        super().__init__()
        reduced = num_samples - sum(kernel_sizes) + len(kernel_sizes)
        if reduced < 1:
            raise ValueError(f"num_samples={num_samples} is shorter than the convolutions' span {sum(kernel_sizes)}")
        self.num_samples = num_samples
        self.convolutions = nn.Sequential(
            nn.Conv1d(1, filters[0], kernel_sizes[0]),
            nn.ReLU(),
            nn.Conv1d(filters[0], filters[1], kernel_sizes[1]),
            nn.ReLU(),
        )
        self.readout = nn.Linear(filters[1] * reduced, num_samples)

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        """Denoise (batch, num_samples) waveforms."""
        if waveforms.ndim != 2 or waveforms.shape[1] != self.num_samples:
            raise ValueError(f"expected (batch, {self.num_samples}) waveforms, got {tuple(waveforms.shape)}")
        hidden = self.convolutions(waveforms[:, None, :])
        return self.readout(hidden.flatten(1))
