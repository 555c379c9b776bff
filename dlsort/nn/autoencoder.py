"""Neighbourhood autoencoder: a small embedding of a spike's multi-channel snippet, for clustering."""

from __future__ import annotations

import torch
from torch import nn

from dlsort.errors import DlsortInputError


def _geometry(positions: torch.Tensor, scale_um: float) -> torch.Tensor:
    """(..., 3) relative position features: dx, dy and distance, in units of ``scale_um``."""
    relative = positions / scale_um
    return torch.cat([relative, relative.norm(dim=-1, keepdim=True)], dim=-1)


class NeighbourhoodAutoencoder(nn.Module):
    """Embed the snippet of a spike's channel neighbourhood in a few dimensions, and decode it back.

    The encoder reads each channel's waveform together with the channel's position relative to
    the centre (shared weights for every slot), masks the padded slots and sums over the
    neighbourhood, so the embedding does not depend on the slots' order, on how many padded slots
    there are, or on what they hold: one set of weights serves any probe. The decoder predicts
    the waveform of any channel from the embedding and that channel's relative position.

    Parameters
    ----------
    num_samples : int, default: 75
        Samples per waveform (1.0 + 1.5 ms at 30 kHz).
    embedding_dim : int, default: 8
        Dimension of the embedding.
    hidden : int, default: 64
        Width of the hidden layers.
    position_scale_um : float, default: 50.0
        Relative positions are divided by this before the networks read them.
    """

    def __init__(self, num_samples: int = 75, embedding_dim: int = 8, hidden: int = 64,
                 position_scale_um: float = 50.0):
        super().__init__()
        if num_samples < 2 or embedding_dim < 1 or hidden < 1 or position_scale_um <= 0:
            raise ValueError(f"need num_samples >= 2, embedding_dim >= 1, hidden >= 1 and position_scale_um > 0; "
                             f"got {num_samples}, {embedding_dim}, {hidden}, {position_scale_um}")
        self.hyperparameters = dict(num_samples=num_samples, embedding_dim=embedding_dim, hidden=hidden,
                                    position_scale_um=position_scale_um)
        self.num_samples = num_samples
        self.embedding_dim = embedding_dim
        self.position_scale_um = position_scale_um
        self.channel_encoder = nn.Sequential(nn.Linear(num_samples + 3, hidden), nn.ReLU(),
                                             nn.Linear(hidden, hidden), nn.ReLU())
        self.to_embedding = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, embedding_dim))
        self.decoder = nn.Sequential(nn.Linear(embedding_dim + 3, hidden), nn.ReLU(), nn.Linear(hidden, hidden),
                                     nn.ReLU(), nn.Linear(hidden, num_samples))

    def _check(self, snippets: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor) -> None:
        if (snippets.ndim != 3 or snippets.shape[2] != self.num_samples
                or positions.shape != (*snippets.shape[:2], 2) or mask.shape != snippets.shape[:2]):
            raise DlsortInputError(
                f"expected snippets (batch, slots, {self.num_samples}), positions (batch, slots, 2) and mask "
                f"(batch, slots); got {tuple(snippets.shape)}, {tuple(positions.shape)} and {tuple(mask.shape)}"
            )

    def encode(self, snippets: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Embeddings of neighbourhood snippets.

        Parameters
        ----------
        snippets : torch.Tensor
            (batch, slots, num_samples) in noise standard deviations; slot 0 is the centre channel.
        positions : torch.Tensor
            (batch, slots, 2) positions relative to the centre, in um.
        mask : torch.Tensor
            (batch, slots), 1 for a real channel and 0 for padding.

        Returns
        -------
        torch.Tensor
            (batch, embedding_dim).
        """
        self._check(snippets, positions, mask)
        mask = mask.to(snippets.dtype)[..., None]
        channels = torch.cat([snippets, _geometry(positions, self.position_scale_um)], dim=-1) * mask
        return self.to_embedding((self.channel_encoder(channels) * mask).sum(dim=1))

    def decode(self, embedding: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(batch, slots, num_samples) waveforms at ``positions`` decoded from embeddings; 0 on padding."""
        slots = positions.shape[1]
        inputs = torch.cat([embedding[:, None, :].expand(-1, slots, -1),
                            _geometry(positions, self.position_scale_um)], dim=-1)
        return self.decoder(inputs) * mask.to(embedding.dtype)[..., None]

    def forward(self, snippets: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Reconstruction (batch, slots, num_samples) of the snippets through the embedding (``encode``'s arguments)."""
        return self.decode(self.encode(snippets, positions, mask), positions, mask)
