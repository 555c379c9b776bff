"""The autoencoder of the features stage, run on neighbourhood snippets: one embedding per spike.

``make_spike_encoder(model, ...)`` loads a ``NeighbourhoodAutoencoder`` (task ``"autoencoder"``,
from the catalog or a local file, trained with ``dlsort train autoencoder``); the ``SpikeEncoder``
it returns divides each slot of a snippet by its channel's noise level, resamples the window to
the network's rate when the recording's differs, masks the slots beyond the radius the network
was trained on, and encodes the snippets in batches on the chosen device; ``reconstruct`` returns
the decoded snippets instead (the neighbourhood denoiser, ``dlsort.denoising``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from dlsort.denoising import window_resampling
from dlsort.errors import DlsortInputError
from dlsort.waveforms import Neighbourhoods
from dlsort.workers import adopt_torch_in_worker

TASK = "autoencoder"
ARCHITECTURE = "neighbourhood-autoencoder"


def autoencoder_radius(card: dict, model_id: str) -> float:
    """The neighbourhood radius (um) an autoencoder's card names, after checking that it describes one.

    Raises
    ------
    DlsortInputError
        When the card names another architecture or no ``geometry.neighbourhood_radius_um``.
    """
    name = card.get("architecture", {}).get("name")
    if name != ARCHITECTURE:
        raise DlsortInputError(f"{model_id} is a {name} network; the features stage runs {ARCHITECTURE} models only")
    radius = card.get("geometry", {}).get("neighbourhood_radius_um")
    if not isinstance(radius, int | float) or radius <= 0:
        raise DlsortInputError(f"the card of {model_id} gives no positive geometry.neighbourhood_radius_um "
                               f"({radius!r}): the radius the autoencoder was trained on")
    return float(radius)


class SpikeEncoder:
    """Embed neighbourhood snippets with a trained autoencoder.

    Parameters
    ----------
    network : NeighbourhoodAutoencoder
        In evaluation mode.
    model : dict
        Provenance of the weights (``ModelFile.provenance()``).
    neighbourhoods : Neighbourhoods
        The neighbourhoods the snippets are cut on.
    channel_locations : np.ndarray
        (num_channels, 2 or 3) in um.
    radius_um : float
        Slots farther than this from their centre are masked (the network's training radius).
    noise_levels : np.ndarray
        Noise standard deviation of every channel.
    resample : np.ndarray or None
        (network samples, snippet samples) interpolation to the network's grid, or None.
    device : str
    batch_size : int
        Snippets per forward pass.
    restore : np.ndarray or None
        (snippet samples, network samples) interpolation back to the snippets' grid (``reconstruct``).
    """

    def __init__(self, network, model: dict, neighbourhoods: Neighbourhoods, channel_locations: np.ndarray,
                 radius_um: float, noise_levels: np.ndarray, resample: np.ndarray | None, device: str,
                 batch_size: int = 4096, restore: np.ndarray | None = None):
        self.network = network.to(device)
        self.models = [model]
        self.neighbourhoods = neighbourhoods
        self.positions = neighbourhoods.relative_positions(channel_locations)
        self.mask = neighbourhoods.mask & (np.linalg.norm(self.positions, axis=2) <= radius_um + 1e-6)
        self.noise_levels = np.asarray(noise_levels, dtype="float32")
        self.resample, self.restore = resample, restore
        self.device = device
        self.batch_size = batch_size
        self._owner_pid = os.getpid()

    @property
    def embedding_dim(self) -> int:
        """Dimension of the embedding."""
        return self.network.embedding_dim

    def __call__(self, snippets: np.ndarray, centre_channels: np.ndarray) -> np.ndarray:
        """Embed (n, num_samples, width) snippets cut on the neighbourhoods of ``centre_channels`` (n,).

        Returns
        -------
        np.ndarray
            float32 (n, embedding_dim).
        """
        out = self._run(self.network.encode, snippets, centre_channels)
        return out if len(out) else np.zeros((0, self.embedding_dim), "float32")

    def reconstruct(self, snippets: np.ndarray, centre_channels: np.ndarray) -> np.ndarray:
        """The network's reconstruction of (n, num_samples, width) snippets, in their units and on their grid.

        Slots beyond the network's radius (and padded slots) are returned as they are.

        Returns
        -------
        np.ndarray
            float32 (n, num_samples, width).
        """
        decoded = self._run(self.network, snippets, centre_channels)  # (n, width, network samples)
        if len(decoded) == 0:
            return snippets.astype("float32", copy=True)
        if self.restore is not None:
            decoded = np.einsum("tm,nwm->nwt", self.restore, decoded, optimize=True)
        channels = self.neighbourhoods.indices[centre_channels]
        decoded = np.transpose(decoded, (0, 2, 1)) * self.noise_levels[np.maximum(channels, 0)][:, None, :]
        return np.where(self.mask[centre_channels][:, None, :], decoded, snippets).astype("float32", copy=False)

    def _run(self, forward, snippets: np.ndarray, centre_channels: np.ndarray) -> np.ndarray:
        """``forward`` (the network or its encoder) on the scaled, masked snippets, in batches; a numpy array."""
        import torch

        width = self.neighbourhoods.width
        if snippets.ndim != 3 or snippets.shape[2] != width or len(centre_channels) != len(snippets):
            raise DlsortInputError(f"expected (n, num_samples, {width}) snippets and n centre "
                                   f"channels, got {snippets.shape} and {np.shape(centre_channels)}")
        self._owner_pid = adopt_torch_in_worker(self._owner_pid)
        channels = self.neighbourhoods.indices[centre_channels]
        mask = self.mask[centre_channels]
        scaled = snippets / self.noise_levels[np.maximum(channels, 0)][:, None, :] * mask[:, None, :]
        if self.resample is not None:
            scaled = np.einsum("mt,ntw->nmw", self.resample, scaled, optimize=True)
        scaled = np.ascontiguousarray(np.transpose(scaled, (0, 2, 1)), dtype="float32")
        positions, mask = self.positions[centre_channels], mask.astype("float32")
        out = []
        with torch.inference_mode():
            for start in range(0, len(scaled), self.batch_size):
                part = slice(start, start + self.batch_size)
                inputs = (torch.as_tensor(array[part], device=self.device) for array in (scaled, positions, mask))
                out.append(forward(*inputs).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0,), "float32")


def make_spike_encoder(model: str | Path, sampling_frequency: float, channel_locations: np.ndarray,
                       neighbourhoods: Neighbourhoods, ms_before: float, ms_after: float, noise_levels: np.ndarray,
                       device: str = "cpu", batch_size: int = 4096) -> SpikeEncoder:
    """Load an autoencoder and prepare it for the snippets of a recording.

    Parameters
    ----------
    model : str or Path
        Catalog id, ``id@version`` or path to a ``.safetensors`` file with its card beside it.
    sampling_frequency : float
        Of the recording.
    channel_locations : np.ndarray
    neighbourhoods : Neighbourhoods
        Those the snippets are cut on; their radius must reach the network's.
    ms_before, ms_after : float
        Snippet window; must be the one the network was trained on.
    noise_levels : np.ndarray
        Per-channel noise standard deviation.
    device : str, default: "cpu"
    batch_size : int, default: 4096

    Returns
    -------
    SpikeEncoder

    Raises
    ------
    DlsortInputError
        A model that is not an autoencoder (task or architecture), a card without its radius,
        weights that do not fit their card, another window, or neighbourhoods narrower than the
        network's.
    """
    from dlsort.models import load
    from dlsort.nn import build_network

    tensors, card, model_file = load(model, task=TASK)
    radius_um = autoencoder_radius(card, model_file.id)
    network = build_network(card["architecture"], tensors)
    if neighbourhoods.radius_um < radius_um:
        raise DlsortInputError(f"autoencoder {model_file.id} reads neighbourhoods of {radius_um:g} um, wider than "
                               f"the {neighbourhoods.radius_um:g} um given: set neighbourhood_radius_um >= "
                               f"{radius_um:g}")
    resample, restore = window_resampling(card, model_file.id, network.num_samples, sampling_frequency, ms_before,
                                          ms_after)
    return SpikeEncoder(network, model_file.provenance(), neighbourhoods, channel_locations, radius_um, noise_levels,
                        resample, device, batch_size, restore)
