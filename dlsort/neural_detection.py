"""Neural spike detection: a neighbourhood network scores samples of every channel, peaks are picked.

``detection_logits`` runs a ``dlsort.nn.NeighbourhoodDetector`` over a chunk of standardized
traces (every channel is the centre of its own distance-ordered neighbourhood);
``candidate_logits`` runs it only around given samples (the same values, at a fraction of the
cost); the peaks are the logits above a threshold that are the largest within ``exclude``
samples and the exclusion neighbourhood (``dlsort.peak_picking``, locally exclusive as
SpikeInterface's threshold detector), less those that are the far field of a much deeper peak
further away (``far_field_peaks``). ``NeuralPeakDetector`` wraps them as a SpikeInterface ``PeakDetector``
node, so the detector runs in any node pipeline, chunked and in parallel.
"""

from __future__ import annotations

import os

import numpy as np
from spikeinterface.core.node_pipeline import PeakDetector, base_peak_dtype

from dlsort.errors import DlsortInputError
from dlsort.peak_picking import candidate_troughs, exclusion_adjacency, exclusive_maxima, far_field_peaks, pick_peaks
from dlsort.waveforms import Neighbourhoods, build_neighbourhoods, cut_snippets
from dlsort.workers import adopt_torch_in_worker

# Detection on its own (``dlsort.detection.detect_peaks``, ``make_neural_detector``): the network and candidate
# threshold that meet the detection benchmark's goals on every layout (docs/benchmarks.md, "Spike detection": recall of
# SNR 3-5 units 0.95 on Neuropixels 1.0, within 0.05 of it on layouts and rates it was not trained on, at threshold
# detection's precision). Pinned: a catalog update must not change results.
DEFAULT_DETECTOR = "detector-generic@1.2.0"
DEFAULT_CANDIDATE_THRESHOLD = 3.0
# The sorter's pins (``dlsort.params``), chosen by the sorter benchmark: its clustering and matching find more units
# from these peaks (docs/benchmarks.md, case tables). Also the candidates detector-generic@1.2.0 was trained to score.
SORTER_DETECTOR = "detector-generic@1.0.0"
SORTER_CANDIDATE_THRESHOLD = 3.5
DETECTION_MODES = ("candidates", "dense")
REACH = 2  # a candidate may move this many samples (at the network's rate) to the network's best logit
# A peak is dropped as far field when a peak this many times deeper lies beyond the exclusion radius and within
# DEFAULT_FAR_FIELD_RADIUS_UM, from FAR_FIELD_BEFORE_MS after it to FAR_FIELD_AFTER_MS before it. Chosen by the
# detection benchmark (docs/benchmarks.md): case S's largest unit otherwise gives false peaks 90-250 um away.
DEFAULT_FAR_FIELD_RATIO = 14.0
DEFAULT_FAR_FIELD_RADIUS_UM = 250.0
FAR_FIELD_BEFORE_MS, FAR_FIELD_AFTER_MS = 0.2, 0.8


def check_far_field_rule(ratio: float, radius_um: float, far_field_radius_um: float) -> None:
    """Refuse a far-field rule that cannot hold: a ratio that is neither 0 (off) nor above 1, or a ring with no width.

    Raises
    ------
    DlsortInputError
    """
    if ratio != 0 and ratio <= 1:
        raise DlsortInputError(f"the far-field ratio must be 0 (off) or above 1, got {ratio}: a peak can be the far "
                               "field only of a deeper one")
    if ratio and far_field_radius_um <= radius_um:
        raise DlsortInputError(f"the far-field radius ({far_field_radius_um} um) must exceed the exclusion radius "
                               f"({radius_um} um): the far-field rule applies between the two")


def probability_logit(probability: float) -> float:
    """The logit ``log(p / (1 - p))`` the network's output is compared with for a probability ``p``."""
    return float(np.log(probability / (1.0 - probability)))


def detection_logits(network, traces: np.ndarray, neighbourhoods: Neighbourhoods, relative_positions: np.ndarray,
                     device: str = "cpu", max_elements: int = 2**25) -> np.ndarray:
    """Logit of a spike centred on every channel at every sample.

    Parameters
    ----------
    network : NeighbourhoodDetector
    traces : np.ndarray
        (num_samples, num_channels) traces divided by each channel's noise level.
    neighbourhoods : Neighbourhoods
        With as many slots as the network was trained with.
    relative_positions : np.ndarray
        ``neighbourhoods.relative_positions(locations)``.
    device : str, default: "cpu"
    max_elements : int, default: 2**25
        Bound on the encoder activations of one forward pass (centre channels are batched under it).

    Returns
    -------
    np.ndarray
        float32 (num_channels, num_samples).
    """
    import torch

    num_samples, num_channels = traces.shape
    width = neighbourhoods.width
    padded = np.concatenate([traces.T.astype("float32", copy=False), np.zeros((1, num_samples), "float32")])
    slots = np.where(neighbourhoods.mask, neighbourhoods.indices, num_channels)  # padding reads the zero row
    batch = max(1, int(max_elements // max(1, width * network.filters * num_samples)))
    logits = np.empty((num_channels, num_samples), dtype="float32")
    with torch.inference_mode():
        for start in range(0, num_channels, batch):
            stop = min(num_channels, start + batch)
            inputs = (torch.as_tensor(padded[slots[start:stop]], device=device),
                      torch.as_tensor(relative_positions[start:stop], device=device),
                      torch.as_tensor(neighbourhoods.mask[start:stop], device=device))
            logits[start:stop] = network(*inputs).cpu().numpy()
    return logits


def candidate_logits(network, traces: np.ndarray, samples: np.ndarray, channels: np.ndarray,
                     neighbourhoods: Neighbourhoods, relative_positions: np.ndarray, reach: int = REACH,
                     device: str = "cpu", batch_size: int = 4096) -> np.ndarray:
    """Logits at ``samples - reach`` to ``samples + reach`` on each candidate's channel only.

    Each candidate's neighbourhood window spans the network's receptive field on both sides of
    the reach and the network computes only the samples whose receptive field lies inside it
    (``valid``), so the logits equal those ``detection_logits`` computes on the whole chunk.
    ``samples`` must lie at least ``receptive_field // 2 + reach`` samples inside ``traces``.

    Returns
    -------
    np.ndarray
        float32 (num_candidates, 2 * reach + 1).
    """
    import torch

    half = network.receptive_field // 2 + reach
    out = np.empty((len(samples), 2 * reach + 1), dtype="float32")
    with torch.inference_mode():
        for start in range(0, len(samples), batch_size):
            stop = start + batch_size
            windows = cut_snippets(traces, samples[start:stop], channels[start:stop], neighbourhoods, half, half + 1)
            inputs = (torch.as_tensor(np.ascontiguousarray(np.transpose(windows, (0, 2, 1))), device=device),
                      torch.as_tensor(relative_positions[channels[start:stop]], device=device),
                      torch.as_tensor(neighbourhoods.mask[channels[start:stop]], device=device))
            out[start:stop] = network(*inputs, valid=True).cpu().numpy()
    return out


class NeuralPeakDetector(PeakDetector):
    """SpikeInterface peak-detection node running a neighbourhood detection network.

    Traces are divided by the noise levels (and resampled to the network's rate when the
    recording's differs). In ``"candidates"`` mode every channel's troughs below
    ``-candidate_threshold`` are scored on that channel, each keeping its best logit within
    ``REACH`` samples (the peak moves to that sample); in ``"dense"`` mode the network scores
    every sample of every channel. Either way, the locally exclusive maxima of the logits above
    ``threshold`` are the peaks; sample indices are mapped back to the recording's rate, and
    peaks that ``far_field_peaks`` finds to be the far field of a peak at least
    ``far_field_ratio`` times deeper (between ``radius_um`` and ``far_field_radius_um`` away)
    are dropped.

    Parameters
    ----------
    recording : BaseRecording
        Preprocessed recording with channel locations.
    network : NeighbourhoodDetector
    model : dict
        Provenance of the weights (``ModelFile.provenance()``).
    card : dict
        The weights' model card (sampling rate, neighbourhood radius and slots).
    noise_levels : np.ndarray
        Per-channel noise standard deviation.
    threshold : float
        Logit a peak needs (``log(p / (1 - p))`` for a probability ``p``).
    mode : {"candidates", "dense"}
    candidate_threshold : float
        Multiple of the noise level that proposes candidates (``"candidates"`` mode).
    exclude_sweep_ms : float
        Half-width of the temporal exclusion around a peak.
    radius_um : float
        Spatial exclusion radius.
    device : str
    batch_size : int
        Candidates per forward pass.
    far_field_ratio : float, default: DEFAULT_FAR_FIELD_RATIO (14)
        How many times deeper a peak must be to make a peak further away far field; 0 keeps every peak.
    far_field_radius_um : float, default: DEFAULT_FAR_FIELD_RADIUS_UM (250)
        Outer radius of the far-field rule (its inner radius is ``radius_um``).
    return_output : bool, default: True
    """

    name = "dlsort_neural"
    need_noise_levels = True
    preferred_mp_context = None

    def __init__(self, recording, network, model: dict, card: dict, noise_levels: np.ndarray, threshold: float,
                 mode: str, candidate_threshold: float, exclude_sweep_ms: float, radius_um: float, device: str,
                 batch_size: int = 4096, far_field_ratio: float = DEFAULT_FAR_FIELD_RATIO,
                 far_field_radius_um: float = DEFAULT_FAR_FIELD_RADIUS_UM, return_output: bool = True):
        PeakDetector.__init__(self, recording, return_output=return_output)
        self.network = network.to(device)
        self.models = [model]
        self.rate = float(card["sampling_frequency_hz"])
        geometry = card["geometry"]
        locations = recording.get_channel_locations()
        self.neighbourhoods = build_neighbourhoods(locations, geometry["neighbourhood_radius_um"],
                                                   max_width=geometry["neighbourhood_slots"])
        self.relative_positions = self.neighbourhoods.relative_positions(locations)
        self.exclusion = build_neighbourhoods(locations, radius_um)
        self.radius_um = float(radius_um)
        self.far_field_ratio, self.far_field_radius_um = float(far_field_ratio), float(far_field_radius_um)
        self.distances = np.linalg.norm(locations[:, None, :2] - locations[None, :, :2], axis=2)
        fs = recording.sampling_frequency
        self.far_field_before = int(round(FAR_FIELD_BEFORE_MS * fs / 1000.0))
        self.far_field_after = int(round(FAR_FIELD_AFTER_MS * fs / 1000.0))
        self.adjacency = exclusion_adjacency(self.exclusion)
        self.noise_levels = np.asarray(noise_levels, dtype="float32")
        self.threshold, self.mode, self.candidate_threshold = float(threshold), mode, float(candidate_threshold)
        self.exclude = int(exclude_sweep_ms * self.rate / 1000.0)
        self.ratio = self.rate / recording.sampling_frequency
        self.device, self.batch_size = device, batch_size
        self._owner_pid = os.getpid()
        self._kwargs.update(network=network, model=model, card=card, noise_levels=noise_levels, threshold=threshold,
                            mode=mode, candidate_threshold=candidate_threshold, exclude_sweep_ms=exclude_sweep_ms,
                            radius_um=radius_um, device=device, batch_size=batch_size,
                            far_field_ratio=far_field_ratio, far_field_radius_um=far_field_radius_um)

    def get_margin(self) -> int:
        """Samples of context needed on each side of a chunk (receptive field, reach, exclusion, far field)."""
        at_network_rate = self.network.receptive_field // 2 + 2 * self.exclude + 4
        return int(np.ceil(at_network_rate / min(1.0, self.ratio))) + max(self.far_field_before, self.far_field_after)

    def get_dtype(self):
        return base_peak_dtype

    def compute(self, traces, start_frame, end_frame, segment_index, max_margin):
        self._owner_pid = adopt_torch_in_worker(self._owner_pid)
        standardized = self._resample(traces / self.noise_levels[None, :])
        if self.mode == "dense":
            logits = detection_logits(self.network, standardized, self.neighbourhoods, self.relative_positions,
                                      self.device)
            samples, channels = pick_peaks(logits, self.threshold, self.exclude, self.exclusion)
        else:
            samples, channels = self._score_candidates(standardized)
        samples = np.round(samples / self.ratio).astype("int64")
        order = np.lexsort((channels, samples))
        samples, channels = samples[order], channels[order]
        if self.far_field_ratio > 0:
            depths = -traces[samples, channels] / self.noise_levels[channels]
            far = far_field_peaks(samples, channels, depths, self.distances, self.far_field_ratio, self.radius_um,
                                  self.far_field_radius_um, self.far_field_before, self.far_field_after)
            samples, channels = samples[~far], channels[~far]
        margin = self.get_margin()
        inside = (samples >= margin) & (samples < len(traces) - margin)
        samples, channels = samples[inside], channels[inside]
        peaks = np.zeros(len(samples), dtype=base_peak_dtype)
        peaks["sample_index"] = samples
        peaks["channel_index"] = channels
        peaks["amplitude"] = traces[samples, channels]
        peaks["segment_index"] = segment_index
        return (peaks,)

    def _score_candidates(self, standardized: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Peaks among the troughs below ``-candidate_threshold`` of every channel, scored by the network.

        Every channel's candidates are scored on that channel (not only the deepest channel of a
        spike: the network, not the threshold, decides which channel a spike is centred on); each
        keeps its best logit within ``REACH`` samples, and the locally exclusive maxima of these
        sparse logits above ``threshold`` are the peaks.
        """
        context = self.network.receptive_field // 2 + REACH
        channels, samples = candidate_troughs(standardized, self.candidate_threshold)
        inside = (samples >= context) & (samples < len(standardized) - context)
        channels, samples = channels[inside], samples[inside]
        logits = candidate_logits(self.network, standardized, samples, channels, self.neighbourhoods,
                                  self.relative_positions, device=self.device, batch_size=self.batch_size)
        best, samples = logits.max(axis=1), samples + np.argmax(logits, axis=1) - REACH
        passed = best >= self.threshold
        best, samples, channels = best[passed], samples[passed], channels[passed]
        # candidates that moved to the same sample of a channel are one entry, with their best logit
        order = np.lexsort((-best, samples, channels))
        first = np.ones(len(order), dtype=bool)
        first[1:] = (np.diff(samples[order]) != 0) | (np.diff(channels[order]) != 0)
        unique = order[first]
        return exclusive_maxima(samples[unique], channels[unique], best[unique], self.exclude, self.adjacency)

    def _resample(self, traces: np.ndarray) -> np.ndarray:
        """Traces on the network's sampling grid (unchanged when the rates agree)."""
        if np.isclose(self.ratio, 1.0):
            return traces
        from fractions import Fraction

        from scipy.signal import resample_poly

        fraction = Fraction(self.ratio).limit_denominator(1000)
        return resample_poly(traces, fraction.numerator, fraction.denominator, axis=0).astype("float32")
