"""Feature extraction stage: one row of features per peak.

``extract_features(recording, peaks, method=...)`` cuts each peak's snippet on its
distance-ordered channel neighbourhood, optionally denoises it, embeds every channel's waveform
(temporal PCA fitted on a sample of the recording's own spikes) and estimates the peak's location
(centre of mass of the peak-to-peak amplitudes). ``"autoencoder"`` adds one learned embedding of
the whole neighbourhood snippet per spike (``dlsort.spike_encoder``), which clustering then uses
instead of the detection channel's temporal PCA; the temporal PCA still decodes templates for the
merges. Streams in chunks through SpikeInterface's node pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from spikeinterface.core.node_pipeline import PeakRetriever, PipelineNode, run_node_pipeline

from dlsort.denoising import Denoiser, DenoisingNode
from dlsort.errors import DlsortInputError, check_choice
from dlsort.spike_encoder import SpikeEncoder
from dlsort.waveforms import Neighbourhoods, NeighbourhoodWaveforms, build_neighbourhoods

FEATURE_METHODS = ("tpca", "autoencoder")


@dataclass(frozen=True)
class TemporalPCA:
    """A temporal PCA basis for single-channel waveforms.

    Attributes
    ----------
    mean : np.ndarray
        float32 (num_samples,).
    components : np.ndarray
        float32 (n_components, num_samples), orthonormal rows.
    """

    mean: np.ndarray
    components: np.ndarray

    def inverse_transform(self, embedding: np.ndarray) -> np.ndarray:
        """Waveforms (..., num_samples) from embeddings (..., n_components)."""
        return self.mean + embedding @ self.components

    def transform(self, snippets: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Project (n, num_samples, width) snippets to (n, n_components, width); padded slots are zero."""
        embedded = np.einsum("nts,kt->nks", snippets - self.mean[None, :, None], self.components, optimize=True)
        return embedded * mask[:, None, :]


@dataclass(frozen=True)
class PeakFeatures:
    """Features of a set of peaks, one row per peak.

    Attributes
    ----------
    embedding : np.ndarray
        float32 (num_peaks, n_components, width): per-channel embedding on the peak's
        distance-ordered neighbourhood (zero on padded slots).
    locations : np.ndarray
        float32 (num_peaks, 2): estimated x, y of each peak in micrometres.
    neighbourhoods : Neighbourhoods
        The neighbourhoods the embedding is laid on (centre = the peak's channel).
    basis : TemporalPCA or None
        The embedding's decoder (``inverse_transform``), when it has one.
    nbefore : int
        Samples before the peak in the embedded window.
    spike_embedding : np.ndarray or None
        float32 (num_peaks, embedding_dim): one learned embedding of each peak's whole
        neighbourhood snippet (``features_method="autoencoder"``), or None.
    """

    embedding: np.ndarray
    locations: np.ndarray
    neighbourhoods: Neighbourhoods
    basis: TemporalPCA | None = None
    nbefore: int = 0
    spike_embedding: np.ndarray | None = None

    def __len__(self) -> int:
        return self.embedding.shape[0]

    def subset(self, indices: np.ndarray) -> PeakFeatures:
        """Features of the peaks at ``indices``."""
        learned = None if self.spike_embedding is None else self.spike_embedding[indices]
        return replace(self, embedding=self.embedding[indices], locations=self.locations[indices],
                       spike_embedding=learned)

    def waveform_features(self) -> np.ndarray:
        """Each peak's waveform features, comparable across channels and scaled to unit spread.

        The learned embedding when there is one, divided by its standard deviation along its
        principal direction (its axes are arbitrary); otherwise the temporal PCA of the detection
        channel, divided by the standard deviation of its first component.

        Returns
        -------
        np.ndarray
            float (num_peaks, dimensions).
        """
        if self.spike_embedding is None:
            main = self.embedding[:, :, 0]
            return main / (float(np.std(main[:, 0])) or 1.0)
        if len(self) == 0:
            return self.spike_embedding
        centred = self.spike_embedding - self.spike_embedding.mean(axis=0)
        spread = float(np.linalg.svd(centred, compute_uv=False)[0]) / np.sqrt(len(centred))
        return self.spike_embedding / (spread or 1.0)


class _FeatureNode(PipelineNode):
    """Embed (denoised) neighbourhood snippets, locate the peak, and encode the snippet when given an encoder."""

    def __init__(self, recording, parents, tpca: TemporalPCA, neighbourhoods: Neighbourhoods,
                 encoder: SpikeEncoder | None = None):
        PipelineNode.__init__(self, recording, parents=parents, return_output=True)
        self.tpca = tpca
        self.neighbourhoods = neighbourhoods
        self.encoder = encoder
        self.channel_locations = recording.get_channel_locations()[:, :2].astype("float32")
        self._kwargs.update(tpca=tpca, neighbourhoods=neighbourhoods, encoder=encoder)
        fields = [("embedding", "float32", (tpca.components.shape[0], neighbourhoods.width)),
                  ("location", "float32", (2,))]
        if encoder is not None:
            fields.append(("spike_embedding", "float32", (encoder.embedding_dim,)))
        self._dtype = np.dtype(fields)

    def get_dtype(self):
        return self._dtype

    def compute(self, traces, peaks, snippets):
        channels = self.neighbourhoods.indices[peaks["channel_index"]]
        mask = channels >= 0
        out = np.zeros(len(peaks), dtype=self._dtype)
        out["embedding"] = self.tpca.transform(snippets, mask)
        out["location"] = centre_of_mass(snippets, channels, self.channel_locations)
        if self.encoder is not None:
            out["spike_embedding"] = self.encoder(snippets, peaks["channel_index"])
        return out


def centre_of_mass(snippets: np.ndarray, channels: np.ndarray, channel_locations: np.ndarray) -> np.ndarray:
    """Locate peaks at the centre of mass of their per-channel peak-to-peak amplitudes.

    Parameters
    ----------
    snippets : np.ndarray
        (n, num_samples, width) neighbourhood snippets.
    channels : np.ndarray
        (n, width) channel index of each slot, -1 for padding.
    channel_locations : np.ndarray
        (num_channels, 2) positions.

    Returns
    -------
    np.ndarray
        float32 (n, 2).
    """
    ptp = np.ptp(snippets, axis=1) * (channels >= 0)
    positions = channel_locations[np.maximum(channels, 0)]
    weights = ptp / np.maximum(ptp.sum(axis=1, keepdims=True), 1e-12)
    return np.einsum("ns,nsd->nd", weights, positions).astype("float32")


def fit_temporal_pca(
    recording,
    peaks: np.ndarray,
    neighbourhoods: Neighbourhoods,
    ms_before: float,
    ms_after: float,
    n_components: int,
    max_peaks: int = 5000,
    fit_slots: int = 4,
    denoiser: Denoiser | None = None,
    seed: int | None = None,
    job_kwargs: dict | None = None,
) -> TemporalPCA:
    """Fit a temporal PCA basis on single-channel waveforms of a random sample of peaks.

    Parameters
    ----------
    recording : BaseRecording
    peaks : np.ndarray
        Peak array to sample from.
    neighbourhoods : Neighbourhoods
    ms_before, ms_after : float
        Snippet window.
    n_components : int
        Number of components kept.
    max_peaks : int, default: 5000
        Peaks sampled for the fit.
    fit_slots : int, default: 4
        The nearest ``fit_slots`` channels of each neighbourhood (those that carry the spike)
        enter the fit.
    denoiser : Denoiser or None
        Denoising applied to the snippets before the fit (None: none).
    seed : int or None
    job_kwargs : dict or None

    Returns
    -------
    TemporalPCA
    """
    if len(peaks) == 0:
        raise ValueError("cannot fit a temporal PCA without peaks: no spike was detected")
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(len(peaks), size=min(max_peaks, len(peaks)), replace=False))
    snippets = _snippets(recording, peaks[chosen], neighbourhoods, ms_before, ms_after, denoiser or Denoiser(),
                         job_kwargs)
    slots = min(fit_slots, neighbourhoods.width)
    valid = neighbourhoods.mask[peaks["channel_index"][chosen], :slots]
    waveforms = np.transpose(snippets[:, :, :slots], (0, 2, 1))[valid].astype("float64")
    num_samples = snippets.shape[1]
    if n_components > num_samples:
        raise ValueError(f"n_components={n_components} exceeds the {num_samples} samples of the snippet window")
    mean = waveforms.mean(axis=0)
    _, _, vt = np.linalg.svd(waveforms - mean, full_matrices=False)
    return TemporalPCA(mean=mean.astype("float32"), components=vt[:n_components].astype("float32"))


def _snippets(recording, peaks, neighbourhoods, ms_before, ms_after, denoiser: Denoiser,
              job_kwargs) -> np.ndarray:
    """Denoised neighbourhood snippets of ``peaks``."""
    source = PeakRetriever(recording, peaks)
    cutter = NeighbourhoodWaveforms(recording, [source], neighbourhoods, ms_before, ms_after)
    denoise = DenoisingNode(recording, [source, cutter], denoiser)
    return run_node_pipeline(recording, [source, cutter, denoise], dict(job_kwargs or {}),
                             job_name="temporal PCA fit")


def extract_features(
    recording,
    peaks: np.ndarray,
    method: str = "tpca",
    neighbourhoods: Neighbourhoods | None = None,
    radius_um: float = 75.0,
    ms_before: float = 1.0,
    ms_after: float = 1.5,
    n_components: int = 5,
    denoiser: Denoiser | None = None,
    fit_peaks: np.ndarray | None = None,
    encoder: SpikeEncoder | None = None,
    seed: int | None = None,
    job_kwargs: dict | None = None,
) -> PeakFeatures:
    """Compute one row of features per peak.

    Parameters
    ----------
    recording : BaseRecording
        The preprocessed recording the peaks were detected on.
    peaks : np.ndarray
        SpikeInterface peak array.
    method : {"tpca", "autoencoder"}, default: "tpca"
        ``"autoencoder"`` adds ``encoder``'s embedding of each snippet (``spike_embedding``).
    neighbourhoods : Neighbourhoods or None
        Channel neighbourhoods; built from the channel locations with ``radius_um`` when None.
    radius_um : float, default: 75.0
    ms_before, ms_after : float, default: 1.0, 1.5
        Snippet window around the peak.
    n_components : int, default: 5
        Embedding dimension per channel.
    denoiser : Denoiser or None
        Waveform denoiser (``dlsort.denoising.make_denoiser``); None leaves snippets as they are.
    fit_peaks : np.ndarray or None
        Peaks the embedding is fitted on (default: ``peaks``).
    encoder : SpikeEncoder or None
        The autoencoder of ``method="autoencoder"`` (``dlsort.spike_encoder.make_spike_encoder``),
        built on the same neighbourhoods and window.
    seed : int or None
    job_kwargs : dict or None
        SpikeInterface job kwargs.

    Returns
    -------
    PeakFeatures
    """
    check_choice("features method", method, FEATURE_METHODS)
    if (method == "autoencoder") != (encoder is not None):
        raise DlsortInputError(f"features method {method!r} {'needs' if encoder is None else 'takes no'} encoder "
                               "(dlsort.spike_encoder.make_spike_encoder)")
    if neighbourhoods is None:
        neighbourhoods = build_neighbourhoods(recording.get_channel_locations(), radius_um)
    if encoder is not None and not np.array_equal(encoder.neighbourhoods.indices, neighbourhoods.indices):
        raise DlsortInputError("the encoder was built on other neighbourhoods than the features'")
    tpca = fit_temporal_pca(
        recording,
        peaks if fit_peaks is None else fit_peaks,
        neighbourhoods,
        ms_before,
        ms_after,
        n_components,
        denoiser=denoiser,
        seed=seed,
        job_kwargs=job_kwargs,
    )
    source = PeakRetriever(recording, peaks)
    cutter = NeighbourhoodWaveforms(recording, [source], neighbourhoods, ms_before, ms_after)
    denoise = DenoisingNode(recording, [source, cutter], denoiser or Denoiser(), return_output=False)
    node = _FeatureNode(recording, [source, denoise], tpca, neighbourhoods, encoder)
    if len(peaks) == 0:
        out = np.zeros(0, dtype=node.get_dtype())
    else:
        out = run_node_pipeline(recording, [source, cutter, denoise, node], dict(job_kwargs or {}),
                                job_name="features")
    learned = out["spike_embedding"] if encoder is not None else None
    return PeakFeatures(out["embedding"], out["location"], neighbourhoods, basis=tpca, nbefore=cutter.nbefore,
                        spike_embedding=learned)
