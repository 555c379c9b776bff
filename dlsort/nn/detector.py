"""Neighbourhood spike detector: the probability that a spike is centred on a channel, at every sample."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class NeighbourhoodDetector(nn.Module):
    """Score every sample of a centre channel from the traces of its neighbourhood.

    A temporal convolution encodes each channel of the neighbourhood on its own (shared weights);
    a small network maps each neighbour's position relative to the centre to mixing weights, so
    the encodings are pooled by geometry rather than by channel index; a last temporal
    convolution reads the centre's encoding, the pooled ones and their maximum out to one logit
    per sample. Missing neighbours (fewer channels within the radius than slots) are masked, so
    one set of weights serves any probe. Fully convolutional in time: it runs on whole chunks.

    Parameters
    ----------
    filters : int, default: 8
        Channels of the per-channel encoding.
    hidden : int, default: 16
        Channels of the read-out convolution.
    encoder_kernel, readout_kernel : int, default: 15, 9
        Kernel sizes (odd; "same" padding). The receptive field is their sum minus one.
    position_scale_um : float, default: 50.0
        Relative positions are divided by this before the position network.
    """

    def __init__(self, filters: int = 8, hidden: int = 16, encoder_kernel: int = 15, readout_kernel: int = 9,
                 position_scale_um: float = 50.0):
        super().__init__()
        if encoder_kernel % 2 == 0 or readout_kernel % 2 == 0:
            raise ValueError(f"kernel sizes must be odd, got {encoder_kernel} and {readout_kernel}")
        self.hyperparameters = dict(filters=filters, hidden=hidden, encoder_kernel=encoder_kernel,
                                    readout_kernel=readout_kernel, position_scale_um=position_scale_um)
        self.filters = filters
        self.position_scale_um = position_scale_um
        self.receptive_field = encoder_kernel + readout_kernel - 1
        self.encoder = nn.Sequential(nn.Conv1d(1, filters, encoder_kernel, padding=encoder_kernel // 2), nn.ReLU())
        self.mixing = nn.Sequential(nn.Linear(3, 16), nn.ReLU(), nn.Linear(16, 2 * filters))
        self.readout = nn.Sequential(
            nn.Conv1d(4 * filters, hidden, readout_kernel, padding=readout_kernel // 2),
            nn.ReLU(),
            nn.Conv1d(hidden, 1, 1),
        )

    def forward(self, traces: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor,
                valid: bool = False) -> torch.Tensor:
        """Logits of a spike centred on the first channel of each neighbourhood.

        Parameters
        ----------
        traces : torch.Tensor
            (batch, slots, samples) in noise standard deviations; slot 0 is the centre channel.
        positions : torch.Tensor
            (batch, slots, 2) positions relative to the centre, in um.
        mask : torch.Tensor
            (batch, slots), 1 for a real channel and 0 for padding; slot 0 must be 1.
        valid : bool, default: False
            Compute only the samples whose whole receptive field lies inside ``traces`` (no zero
            padding; the samples ``receptive_field // 2`` from either end are dropped). They equal
            the same samples of the padded output, at a fraction of the cost on short windows.

        Returns
        -------
        torch.Tensor
            (batch, samples) logits, or (batch, samples - receptive_field + 1) when ``valid``.
        """
        if traces.ndim != 3 or positions.shape != (*traces.shape[:2], 2) or mask.shape != traces.shape[:2]:
            raise ValueError(
                f"expected traces (batch, slots, samples), positions (batch, slots, 2) and mask (batch, slots); "
                f"got {tuple(traces.shape)}, {tuple(positions.shape)} and {tuple(mask.shape)}"
            )
        batch, slots, samples = traces.shape
        mask = mask.to(traces.dtype)
        encoded = F.relu(_convolve(self.encoder[0], traces.reshape(batch * slots, 1, samples), valid))
        encoded = encoded.reshape(batch, slots, self.filters, encoded.shape[-1])
        relative = positions / self.position_scale_um
        geometry = torch.cat([relative, relative.norm(dim=-1, keepdim=True)], dim=-1)
        weights = self.mixing(geometry) * mask[..., None]  # (batch, slots, 2 * filters)
        pooled = torch.einsum("bsf,bsft->bft", weights[..., : self.filters], encoded)
        contrast = torch.einsum("bsf,bsft->bft", weights[..., self.filters :], encoded)
        others = encoded[:, 1:] - (1.0 - mask[:, 1:, None, None]) * 1e4
        strongest = others.amax(dim=1) if slots > 1 else torch.zeros_like(encoded[:, 0])
        strongest = torch.clamp(strongest, min=0.0)  # encodings are >= 0; an all-padding neighbourhood gives 0
        features = torch.cat([encoded[:, 0], pooled, contrast, strongest], dim=1)
        hidden = F.relu(_convolve(self.readout[0], features, valid))
        return self.readout[2](hidden)[:, 0]


def _convolve(layer: nn.Conv1d, inputs: torch.Tensor, valid: bool) -> torch.Tensor:
    """``layer`` applied with its own ("same") padding, or none (``valid``)."""
    return F.conv1d(inputs, layer.weight, layer.bias, padding=0 if valid else layer.padding)
