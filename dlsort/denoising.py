"""Waveform denoising stage.

``make_denoiser(method, ...)`` returns a ``Denoiser``: called on neighbourhood snippets
(num_snippets, num_samples, width) and the channel of each slot, it returns snippets of the same
shape; ``DenoisingNode`` runs it as a step of a SpikeInterface node pipeline. ``"none"`` leaves
snippets as they are (the classical pipeline); ``"neural"`` runs a trained single-channel network
(``dlsort.nn.SingleChannelDenoiser``, from the model catalog or a local file) on every channel of
every snippet, in noise-level units, resampling the window to the network's sampling rate when
the recording's differs; ``"neighbourhood"`` replaces each snippet by a neighbourhood
autoencoder's reconstruction of it (``dlsort.nn.NeighbourhoodAutoencoder``, trained to
reconstruct the clean spike from the noisy snippet of its whole neighbourhood).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from spikeinterface.core.node_pipeline import WaveformsNode

from dlsort.errors import DlsortInputError, check_choice
from dlsort.waveforms import Neighbourhoods, NeighbourhoodWaveforms
from dlsort.workers import adopt_torch_in_worker

DENOISING_METHODS = ("none", "neural", "neighbourhood")
# pinned: a catalog update must not change results
DEFAULT_DENOISERS = {"neural": ("denoiser-generic@1.0.0", "denoiser"),
                     "neighbourhood": ("autoencoder-generic@1.0.0", "autoencoder")}


def denoising_network(method: str, model: str | Path | None) -> tuple[str | Path, str] | None:
    """The network a denoising method runs and its catalog task: ``model``, or the method's default when None.

    Returns None for ``"none"``.
    """
    check_choice("denoising method", method, DENOISING_METHODS)
    if method == "none":
        return None
    default, task = DEFAULT_DENOISERS[method]
    return (default if model is None else model), task


class Denoiser:
    """The ``"none"`` method: snippets pass through unchanged.

    Attributes
    ----------
    models : list of dict
        Provenance of the networks used (``id``, ``sha256``, ``task``); empty here.
    """

    models: list[dict] = []

    def __call__(self, snippets: np.ndarray, channels: np.ndarray) -> np.ndarray:
        """Denoise (n, num_samples, width) snippets whose slots hold ``channels`` (n, width; -1 = padding)."""
        _check_shapes(snippets, channels)
        return snippets


class NeuralDenoiser(Denoiser):
    """Run a single-channel denoising network on every valid slot of every snippet.

    Parameters
    ----------
    network : torch.nn.Module
        A ``SingleChannelDenoiser`` (evaluation mode).
    model : dict
        Provenance of the weights (``ModelFile.provenance()``).
    resample, restore : np.ndarray or None
        Linear-interpolation matrices from the snippet grid to the network's, (network samples,
        snippet samples), and back, or None when the grids coincide.
    noise_levels : np.ndarray
        Noise standard deviation of every recording channel (snippets are divided by it).
    device : str
    batch_size : int
        Waveforms per forward pass.
    """

    def __init__(self, network, model: dict, resample: np.ndarray | None, restore: np.ndarray | None,
                 noise_levels: np.ndarray, device: str, batch_size: int = 16384):
        self.network = network.to(device)
        self.models = [model]
        self.resample, self.restore = resample, restore
        self.noise_levels = np.asarray(noise_levels, dtype="float32")
        self.device = device
        self.batch_size = batch_size
        self._owner_pid = os.getpid()

    def __call__(self, snippets: np.ndarray, channels: np.ndarray) -> np.ndarray:
        import torch

        _check_shapes(snippets, channels)
        self._owner_pid = adopt_torch_in_worker(self._owner_pid)
        valid = channels >= 0
        waveforms = np.transpose(snippets, (0, 2, 1))[valid]  # (m, samples)
        scale = self.noise_levels[channels[valid]][:, None]
        waveforms = waveforms / scale
        if self.resample is not None:
            waveforms = waveforms @ self.resample.T
        out = []
        with torch.inference_mode():
            for start in range(0, len(waveforms), self.batch_size):
                batch = torch.as_tensor(np.ascontiguousarray(waveforms[start : start + self.batch_size]),
                                        device=self.device)
                out.append(self.network(batch).cpu().numpy())
        denoised = np.concatenate(out) if out else waveforms
        if self.restore is not None:
            denoised = denoised @ self.restore.T
        result = np.zeros_like(snippets)
        transposed = np.transpose(result, (0, 2, 1))
        transposed[valid] = denoised * scale
        return result


class NeighbourhoodDenoiser(Denoiser):
    """Replace every snippet by a neighbourhood autoencoder's reconstruction of it.

    Parameters
    ----------
    encoder : SpikeEncoder
        The autoencoder, prepared for the neighbourhoods the snippets are cut on
        (``dlsort.spike_encoder.make_spike_encoder``). Slots beyond its radius pass unchanged.
    """

    def __init__(self, encoder):
        self.encoder = encoder
        self.models = encoder.models

    def __call__(self, snippets: np.ndarray, channels: np.ndarray) -> np.ndarray:
        _check_shapes(snippets, channels)
        centres = channels[:, 0]  # neighbourhoods are distance-ordered: the first slot is the centre
        if not np.array_equal(self.encoder.neighbourhoods.indices[centres], channels):
            raise ValueError("the snippets are not cut on the neighbourhoods the denoiser was prepared for")
        return self.encoder.reconstruct(snippets, centres)


class DenoisingNode(WaveformsNode):
    """SpikeInterface node-pipeline step that denoises the neighbourhood snippets of its parent.

    Parameters
    ----------
    recording : BaseRecording
    parents : list
        ``[peak source, NeighbourhoodWaveforms]``: the snippets to denoise and their peaks.
    denoiser : Denoiser
        From ``make_denoiser``.
    return_output : bool, default: True
    """

    def __init__(self, recording, parents: list, denoiser: Denoiser, return_output: bool = True):
        cutter = parents[-1]
        if not isinstance(cutter, NeighbourhoodWaveforms):
            raise TypeError(f"the last parent must be a NeighbourhoodWaveforms node, got {type(cutter).__name__}")
        WaveformsNode.__init__(self, recording, nbefore=cutter.nbefore, nafter=cutter.nafter, parents=parents,
                               return_output=return_output)
        self.denoiser = denoiser
        self.neighbourhoods = cutter.neighbourhoods
        self._kwargs.update(denoiser=denoiser)

    def get_dtype(self):
        return np.dtype("float32")

    def compute(self, traces, peaks, snippets):
        return self.denoiser(snippets, self.neighbourhoods.indices[peaks["channel_index"]])


def _check_shapes(snippets: np.ndarray, channels: np.ndarray) -> None:
    if snippets.ndim != 3 or channels.shape != (snippets.shape[0], snippets.shape[2]):
        raise ValueError(
            f"snippets must be (num_snippets, num_samples, width) with channels (num_snippets, width), "
            f"got {snippets.shape} and {channels.shape}"
        )


def interpolation_matrix(num_in: int, nbefore_in: int, rate_in: float, num_out: int, nbefore_out: int,
                         rate_out: float) -> np.ndarray:
    """Linear interpolation from one sampling grid of a window to another, aligned on the peak.

    Returns
    -------
    np.ndarray
        float32 (num_out, num_in); ``waveform_out = matrix @ waveform_in``. Output times outside the
        input window take the nearest input sample.
    """
    times_in = (np.arange(num_in) - nbefore_in) / rate_in
    times_out = (np.arange(num_out) - nbefore_out) / rate_out
    identity = np.eye(num_in)
    return np.stack([np.interp(times_out, times_in, column) for column in identity], axis=1).astype("float32")


def make_denoiser(
    method: str,
    sampling_frequency: float,
    ms_before: float,
    ms_after: float,
    noise_levels: np.ndarray | None = None,
    model: str | Path | None = None,
    device: str = "cpu",
    batch_size: int = 16384,
    channel_locations: np.ndarray | None = None,
    neighbourhoods: Neighbourhoods | None = None,
) -> Denoiser:
    """Build the denoiser of a stage.

    Parameters
    ----------
    method : {"none", "neural", "neighbourhood"}
    sampling_frequency : float
        Of the recording the snippets come from.
    ms_before, ms_after : float
        Snippet window around the peak (SpikeInterface cuts ``round(ms * fs / 1000)`` samples).
    noise_levels : np.ndarray or None
        Per-channel noise standard deviation (needed by the networks).
    model : str, Path or None
        Catalog id, ``id@version`` or path to a ``.safetensors`` file with its card beside it: a
        single-channel denoiser for ``"neural"``, a neighbourhood autoencoder for
        ``"neighbourhood"``; None takes the method's default (``DEFAULT_DENOISERS``).
    device : str, default: "cpu"
    batch_size : int, default: 16384
        Single-channel waveforms per forward pass of the network (``"neural"``).
    channel_locations : np.ndarray or None
        (num_channels, 2 or 3) in um (needed by ``"neighbourhood"``).
    neighbourhoods : Neighbourhoods or None
        Those the snippets are cut on (needed by ``"neighbourhood"``).

    Returns
    -------
    Denoiser

    Raises
    ------
    DlsortInputError
        Unknown method, a model for another task, weights that do not fit their card, a snippet
        window different from the one the network was trained on, or neighbourhoods narrower than
        a neighbourhood network's.
    """
    network_and_task = denoising_network(method, model)
    if network_and_task is None:
        return Denoiser()
    model, task = network_and_task
    if noise_levels is None:
        raise ValueError(f"the {method} denoiser needs the recording's noise levels")
    if method == "neighbourhood":
        if channel_locations is None or neighbourhoods is None:
            raise ValueError("the neighbourhood denoiser needs the channel locations and the snippets' neighbourhoods")
        from dlsort.spike_encoder import make_spike_encoder

        return NeighbourhoodDenoiser(make_spike_encoder(model, sampling_frequency, channel_locations, neighbourhoods,
                                                        ms_before, ms_after, noise_levels, device))
    from dlsort.models import load
    from dlsort.nn import build_network

    tensors, card, model_file = load(model, task=task)
    network = build_network(card["architecture"], tensors)
    resample, restore = window_resampling(card, model_file.id, network.num_samples, sampling_frequency, ms_before,
                                          ms_after)
    return NeuralDenoiser(network, model_file.provenance(), resample, restore, noise_levels, device, batch_size)


def window_resampling(card: dict, model_id: str, num_model: int, sampling_frequency: float, ms_before: float,
                      ms_after: float) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Check that snippets fit a waveform network's window; the matrices between their sampling grids.

    Parameters
    ----------
    card : dict
        The network's model card (``sampling_frequency_hz``, ``window_ms``).
    model_id : str
        Named in the error.
    num_model : int
        Samples of the network's window.
    sampling_frequency : float
        Of the recording the snippets come from.
    ms_before, ms_after : float
        Snippet window around the peak.

    Returns
    -------
    resample, restore : np.ndarray or None
        ``interpolation_matrix`` from the snippet grid to the network's and back, or None when
        the grids coincide.

    Raises
    ------
    DlsortInputError
        When the snippet window differs from the one the network was trained on.
    """
    from spikeinterface.core.core_tools import ms_to_samples

    rate = float(card["sampling_frequency_hz"])
    window = card["window_ms"]
    if not (np.isclose(ms_before, window["before"]) and np.isclose(ms_after, window["after"])):
        raise DlsortInputError(
            f"{card['task']} {model_id} was trained on windows of {window['before']} ms before and "
            f"{window['after']} ms after the peak, not {ms_before} and {ms_after} ms: set "
            f"ms_before={window['before']} and ms_after={window['after']}, or use another {card['task']}"
        )
    nbefore, nafter = ms_to_samples(ms_before, sampling_frequency), ms_to_samples(ms_after, sampling_frequency)
    nbefore_model = ms_to_samples(window["before"], rate)
    if rate == sampling_frequency and num_model == nbefore + nafter:
        return None, None
    return (interpolation_matrix(nbefore + nafter, nbefore, sampling_frequency, num_model, nbefore_model, rate),
            interpolation_matrix(num_model, nbefore_model, rate, nbefore + nafter, nbefore, sampling_frequency))
