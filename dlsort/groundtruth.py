"""Seeded ground-truth recordings for the demo, the tests and the benchmark.

All cases are built offline with SpikeInterface's generators; Neuropixels geometries come from
``probeinterface.neuropixels_tools`` (a named-probe download would need the internet).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SAMPLING_FREQUENCY = 30_000.0
# Square grids: contact pitch (um) of each kind.
GRID_PITCH_UM = {"tetrode": 25.0, "utah": 400.0, "mea": 100.0}


@dataclass(frozen=True)
class GroundTruthCase:
    """Description of one seeded ground-truth case.

    Attributes
    ----------
    name : str
        Short name used in tables ("S", "M", "D", ...).
    description : str
        One line for humans.
    probe : str
        A ``make_probe`` kind.
    num_channels : int
        Number of recording channels.
    num_units : int
        Number of ground-truth units.
    duration_s : float
        Duration in seconds.
    drift_um : float
        Peak amplitude of a zigzag drift (0 = static).
    seed : int
        Seed of every random draw.
    sampling_frequency : float
        In Hz.
    noise_uv : float
        Standard deviation of the generator's noise, in uV.
    noise_model : {"generator", "neuropixels"}
        ``"generator"``: SpikeInterface's generator noise; ``"neuropixels"``: a hybrid recording, the
        generator's spikes on noise with the temporal and spatial correlation of real Neuropixels 1.0
        noise (``dlsort.training.hybrid``; needs the shared data, 30 kHz only).
    """

    name: str
    description: str
    probe: str
    num_channels: int
    num_units: int
    duration_s: float
    drift_um: float = 0.0
    seed: int = 42
    sampling_frequency: float = SAMPLING_FREQUENCY
    noise_uv: float = 5.0
    noise_model: str = "generator"


BENCHMARK_CASES: dict[str, GroundTruthCase] = {
    "S": GroundTruthCase("S", "32-ch 3-column staggered probe, 20 units", "staggered", 32, 20, 120.0),
    "M": GroundTruthCase("M", "64 ch of Neuropixels 1.0, 40 units", "np1", 64, 40, 120.0),
    "D": GroundTruthCase("D", "M with a +-15 um zigzag drift", "np1", 64, 40, 120.0, drift_um=15.0),
    "L": GroundTruthCase("L", "M with the noise doubled (10 uV): low SNR", "np1", 64, 40, 120.0, noise_uv=10.0),
    "H": GroundTruthCase("H", "64 ch of Neuropixels 1.0, 80 units: dense", "np1", 64, 80, 120.0),
}
# Probe families and a sampling rate the shipped networks were not trained on.
GENERALIZATION_CASES: dict[str, GroundTruthCase] = {
    "T20": GroundTruthCase("T20", "tetrode (25 um square) at 20 kHz, 6 units", "tetrode", 4, 6, 60.0,
                           sampling_frequency=20_000.0),
    "NP2": GroundTruthCase("NP2", "64 ch of a Neuropixels 2.0 layout (2 columns 32 um apart, 15 um rows), 40 units",
                           "np2", 64, 40, 60.0),
    "U": GroundTruthCase("U", "10 x 10 Utah-like grid (400 um pitch), 150 units", "utah", 100, 150, 60.0),
    "M20": GroundTruthCase("M20", "64 ch of Neuropixels 1.0 at 20 kHz, 40 units", "np1", 64, 40, 60.0,
                           sampling_frequency=20_000.0),
}
# One case per probe family of the generalization benchmark (benchmarks/generalization.py).
PROBE_FAMILY_CASES: dict[str, GroundTruthCase] = {
    "N1": GroundTruthCase("N1", "64 ch of Neuropixels 1.0, 40 units", "np1", 64, 40, 60.0),
    "NP2": GENERALIZATION_CASES["NP2"],
    "LIN": GroundTruthCase("LIN", "32-ch linear probe (25 um pitch), 16 units", "linear", 32, 16, 60.0),
    "P4": GroundTruthCase("P4", "4-shank polytrode (250 um apart, 2 staggered columns of 8 each), 32 units",
                          "polytrode", 64, 32, 60.0),
    "T20": GENERALIZATION_CASES["T20"],
    "U": GENERALIZATION_CASES["U"],
    "MEA": GroundTruthCase("MEA", "16 x 16 MEA (100 um pitch), 120 units", "mea", 256, 120, 60.0),
}
# Hybrid recordings on realistic noise for the real-data benchmark (benchmarks/real_data.py).
HYBRID_CASES: dict[str, GroundTruthCase] = {
    "HN": GroundTruthCase("HN", "64 ch of Neuropixels 1.0, 40 units, on noise with real Neuropixels 1.0 statistics "
                          "(IBL, 5 uV rms)", "np1", 64, 40, 60.0, noise_model="neuropixels"),
}
ALL_CASES: dict[str, GroundTruthCase] = {**BENCHMARK_CASES, **GENERALIZATION_CASES, **PROBE_FAMILY_CASES,
                                         **HYBRID_CASES}


def make_probe(kind: str, num_channels: int):
    """Build an offline probe with ``num_channels`` contacts wired in order.

    Parameters
    ----------
    kind : {"staggered", "np1", "np2", "linear", "polytrode", "tetrode", "utah", "mea"}
        ``"staggered"``: 3 columns, 30 um pitch, middle column shifted by half a pitch.
        ``"np1"``: the first ``num_channels`` contacts of a Neuropixels 1.0 probe.
        ``"np2"``: 2 columns 32 um apart, 15 um rows (a Neuropixels 2.0 layout).
        ``"linear"``: one column, 25 um pitch.
        ``"polytrode"``: 4 shanks 250 um apart, each with 2 columns 20 um apart, 25 um rows, the second
        column shifted by half a row (``num_channels`` must be a multiple of 8).
        ``"tetrode"``: 4 contacts on a 25 um square (``num_channels`` must be 4).
        ``"utah"``: a square grid of 400 um pitch (``num_channels`` must be a square).
        ``"mea"``: a square grid of 100 um pitch (``num_channels`` must be a square).
    num_channels : int
        Number of contacts.

    Returns
    -------
    probeinterface.Probe
    """
    from probeinterface import generate_linear_probe, generate_multi_columns_probe, generate_multi_shank
    from probeinterface.neuropixels_tools import build_neuropixels_probe

    if num_channels < 1:
        raise ValueError(f"num_channels must be >= 1, got {num_channels}")
    if kind == "staggered":
        per_column = [num_channels // 3 + (1 if i < num_channels % 3 else 0) for i in range(3)]
        probe = generate_multi_columns_probe(
            num_columns=3,
            num_contact_per_column=per_column,
            xpitch=30.0,
            ypitch=30.0,
            y_shift_per_column=[0.0, -15.0, 0.0],
            contact_shapes="circle",
            contact_shape_params={"radius": 6},
        )
    elif kind == "np1":
        probe = build_neuropixels_probe("NP1000").get_slice(np.arange(num_channels))
    elif kind == "np2":
        probe = generate_multi_columns_probe(num_columns=2, num_contact_per_column=num_channels // 2, xpitch=32.0,
                                             ypitch=15.0, contact_shapes="square", contact_shape_params={"width": 12})
    elif kind == "linear":
        probe = generate_linear_probe(num_elec=num_channels, ypitch=25.0, contact_shapes="circle",
                                      contact_shape_params={"radius": 6})
    elif kind == "polytrode":
        if num_channels % 8:
            raise ValueError(f"a 4-shank polytrode needs a multiple of 8 channels, got {num_channels}")
        probe = generate_multi_shank(num_shank=4, shank_pitch=[250.0, 0.0], num_columns=2,
                                     num_contact_per_column=num_channels // 8, xpitch=20.0, ypitch=25.0,
                                     y_shift_per_column=[0.0, -12.5], contact_shapes="circle",
                                     contact_shape_params={"radius": 6})
    elif kind in GRID_PITCH_UM:
        side = int(round(np.sqrt(num_channels)))
        if side * side != num_channels or (kind == "tetrode" and num_channels != 4):
            raise ValueError(f"a {kind} needs {'4' if kind == 'tetrode' else 'a square number of'} channels, "
                             f"got {num_channels}")
        pitch = GRID_PITCH_UM[kind]
        probe = generate_multi_columns_probe(num_columns=side, num_contact_per_column=side, xpitch=pitch,
                                             ypitch=pitch, contact_shapes="circle", contact_shape_params={"radius": 6})
    else:
        raise ValueError(f"unknown probe kind {kind!r}: use 'staggered', 'np1', 'np2', 'linear', 'polytrode', "
                         "'tetrode', 'utah' or 'mea'")
    probe.set_device_channel_indices(np.arange(num_channels))
    return probe


def generate_case(case: GroundTruthCase):
    """Generate the recording and ground-truth sorting of ``case``.

    The recording is lazy and not serialisable (it embeds the sorting): save it
    (``recording.save(folder=...)``) before handing it to ``run_sorter``.

    Parameters
    ----------
    case : GroundTruthCase

    Returns
    -------
    recording : BaseRecording
        float32 traces in uV (noise ``case.noise_uv`` rms) with a probe attached.
    sorting : BaseSorting
        The ground truth.
    """
    probe = make_probe(case.probe, case.num_channels)
    if case.noise_model == "neuropixels":
        from dlsort.training.hybrid import hybrid_recording

        if case.drift_um > 0 or case.sampling_frequency != SAMPLING_FREQUENCY:
            raise ValueError(f"case {case.name}: hybrid recordings are static and sampled at 30 kHz")
        hybrid = hybrid_recording(probe, case.num_units, case.duration_s, case.noise_uv, seed=case.seed)
        return hybrid.recording, hybrid.sorting
    if case.noise_model != "generator":
        raise ValueError(f"case {case.name}: unknown noise_model {case.noise_model!r}: use 'generator' or "
                         "'neuropixels'")
    if case.drift_um > 0:
        return _generate_drifting(case, probe)
    return generate_static(probe, case.num_units, case.duration_s, case.sampling_frequency, case.noise_uv, case.seed)


def generate_static(probe, num_units: int, duration_s: float, sampling_frequency: float, noise_uv: float,
                    seed: int):
    """SpikeInterface's ground-truth generator on ``probe`` with the benchmark's units and firing.

    Parameters
    ----------
    probe : probeinterface.Probe
        With device channel indices.
    num_units : int
    duration_s, sampling_frequency : float
    noise_uv : float
        Standard deviation of the generator's noise (0: the spikes alone).
    seed : int

    Returns
    -------
    recording : BaseRecording
        Lazy float32 traces in uV with the probe attached.
    sorting : BaseSorting
    """
    from spikeinterface.core.generate import generate_ground_truth_recording

    return generate_ground_truth_recording(
        durations=[duration_s],
        sampling_frequency=sampling_frequency,
        num_units=num_units,
        probe=probe,
        generate_sorting_kwargs=dict(firing_rates=(2.0, 10.0), refractory_period_ms=4.0),
        noise_kwargs=dict(noise_levels=noise_uv, strategy="tile_pregenerated"),
        generate_unit_locations_kwargs=dict(margin_um=10.0, minimum_z=5.0, maximum_z=45.0, minimum_distance=20),
        seed=seed,
    )


def _generate_drifting(case: GroundTruthCase, probe):
    from spikeinterface.generation import generate_drifting_recording

    half = case.drift_um
    _, drifting, sorting = generate_drifting_recording(
        num_units=case.num_units,
        duration=case.duration_s,
        sampling_frequency=case.sampling_frequency,
        probe=probe,
        generate_displacement_vector_kwargs=dict(
            displacement_sampling_frequency=5.0,
            drift_start_um=[0.0, half],
            drift_stop_um=[0.0, -half],
            drift_step_um=1.0,
            motion_list=[
                dict(drift_mode="zigzag", non_rigid_gradient=None, t_start_drift=10.0, t_end_drift=None, period_s=60)
            ],
        ),
        generate_sorting_kwargs=dict(firing_rates=(2.0, 10.0), refractory_period_ms=4.0),
        generate_noise_kwargs=dict(noise_levels=(case.noise_uv, 1.2 * case.noise_uv), spatial_decay=25.0),
        seed=case.seed,
    )
    return drifting, sorting
