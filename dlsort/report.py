"""A report on a sorting: quality metrics, and per-unit figures a user looks at before trusting a unit.

``write_report`` takes a sorter's output folder (``dlsort sort`` / ``run_sorter``, any sorter), builds a
SpikeInterface ``SortingAnalyzer`` on the band-passed, referenced recording, and writes ``index.html``
(a table of quality metrics, one row per unit, with its figure), ``overview.png`` (unit positions on the
probe and the metrics' distributions), ``units/unit_<id>.png`` (template on its channels with single
spikes behind it, amplitudes over time, inter-spike-interval histogram) and ``quality_metrics.csv``.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dlsort.errors import DlsortInputError

QUALITY_METRICS = ("snr", "isi_violation", "presence_ratio", "firing_rate", "amplitude_cutoff")
# Thresholds of the Allen Brain Observatory's unit filter (Siegle et al., Nature 2021): a unit outside
# any of them is flagged in the report, not removed.
ALLEN_CRITERIA = {"isi_violations_ratio": ("<", 0.5), "presence_ratio": (">", 0.9), "amplitude_cutoff": ("<", 0.1)}
REFRACTORY_MS = 1.5
ISI_WINDOW_MS = 50.0
MAX_WAVEFORM_CHANNELS = 12
SINGLE_SPIKES_DRAWN = 30


@dataclass(frozen=True)
class SorterOutput:
    """A sorting read back from a sorter's output folder, with the recording it was sorted from.

    Attributes
    ----------
    sorting : BaseSorting
    recording : BaseRecording
    sorter_name : str
        From the folder's ``spikeinterface_log.json`` / ``spikeinterface_params.json`` ("unknown" if absent).
    params : dict
        The sorter's parameters as run (empty if the folder does not record them).
    """

    sorting: object
    recording: object
    sorter_name: str
    params: dict


def read_sorter_output(folder: str | Path, recording=None) -> SorterOutput:
    """Read a sorting and its recording from a ``run_sorter`` / ``dlsort sort`` output folder.

    Parameters
    ----------
    folder : str or Path
        The folder given to ``run_sorter(folder=...)`` or ``dlsort sort -o``.
    recording : BaseRecording or None
        The recording that was sorted; None re-opens the one the folder recorded (which needs it to
        have been saved to disk, not generated in memory).

    Returns
    -------
    SorterOutput

    Raises
    ------
    DlsortInputError
        The folder is not a sorter output folder, its recording cannot be re-opened, is unusable
        (``dlsort.validation.check_recording``: no probe, NaNs, ...) or does not match the sorting
        (sampling rate, segments, spikes past its end).
    """
    from spikeinterface.sorters import BaseSorter, read_sorter_folder

    from dlsort.validation import check_recording

    folder = Path(folder)
    if not (folder / "spikeinterface_params.json").is_file():
        raise DlsortInputError(
            f"{folder} is not a sorter output folder (no spikeinterface_params.json); give the folder passed to "
            "run_sorter(folder=...) or dlsort sort -o"
        )
    try:
        sorting = read_sorter_folder(folder, register_recording=False)
    except Exception as error:  # SpikeInterface raises several types for an unfinished or foreign folder
        raise DlsortInputError(f"cannot read the sorting in {folder} ({type(error).__name__}: {error})") from error
    if recording is None:
        try:
            recording = BaseSorter.load_recording_from_folder(folder, with_warnings=False)
        except Exception as error:
            recording = None
            reason = f"{type(error).__name__}: {error}"
        else:
            reason = "it was not saved to disk"
        if recording is None:
            raise DlsortInputError(
                f"cannot re-open the recording sorted in {folder} ({reason}); pass it with --recording "
                "(or recording=...)"
            )
    settings = json.loads((folder / "spikeinterface_params.json").read_text())
    check_recording(recording)
    check_matching(recording, sorting)
    return SorterOutput(sorting, recording, settings.get("sorter_name", "unknown"), settings.get("sorter_params", {}))


def check_matching(recording, sorting) -> None:
    """Raise :class:`DlsortInputError` unless ``sorting`` could have come from ``recording``.

    Parameters
    ----------
    recording : BaseRecording
    sorting : BaseSorting
    """
    if recording.get_num_segments() != sorting.get_num_segments():
        raise DlsortInputError(
            f"the recording has {recording.get_num_segments()} segment(s) but the sorting "
            f"{sorting.get_num_segments()}: give the recording that was sorted"
        )
    if not np.isclose(recording.sampling_frequency, sorting.sampling_frequency):
        raise DlsortInputError(
            f"the recording is sampled at {recording.sampling_frequency:g} Hz but the sorting at "
            f"{sorting.sampling_frequency:g} Hz: give the recording that was sorted"
        )
    for segment, spikes in enumerate(sorting.to_spike_vector(concatenated=False)):
        num_samples = recording.get_num_samples(segment)
        if spikes.size and spikes["sample_index"].max() >= num_samples:
            raise DlsortInputError(
                f"the sorting has spikes past the recording's end ({num_samples} samples in segment {segment}): "
                "give the recording that was sorted"
            )


def analyze_sorting(
    recording,
    sorting,
    params: dict | None = None,
    max_spikes_per_unit: int = 500,
    job_kwargs: dict | None = None,
    seed: int = 0,
):
    """A SortingAnalyzer with the extensions the report draws and SpikeInterface's quality metrics.

    The recording is band-passed and common-median referenced as the sorter did (``freq_min``,
    ``freq_max``, ``common_reference`` from ``params``, dlsort's defaults otherwise); motion correction
    is not applied, so templates of drifting units are blurred by the drift.

    Parameters
    ----------
    recording : BaseRecording
        The raw recording that was sorted.
    sorting : BaseSorting
    params : dict or None
        dlsort's parameters as run (None: its defaults).
    max_spikes_per_unit : int, default: 500
        Spikes per unit whose waveforms are extracted for templates and SNR.
    job_kwargs : dict or None
        SpikeInterface job kwargs (``n_jobs``, ``progress_bar``, ...).
    seed : int, default: 0
        Seed of the random spike selection.

    Returns
    -------
    SortingAnalyzer
        In memory, sparse; with ``quality_metrics`` computed for ``QUALITY_METRICS``.
    """
    from spikeinterface.core import create_sorting_analyzer

    from dlsort.params import DEFAULT_PARAMS
    from dlsort.preprocessing.standard import preprocess

    settings = {key: (params or {}).get(key, DEFAULT_PARAMS[key]) for key in ("freq_min", "freq_max",
                                                                              "common_reference")}
    job_kwargs = dict(job_kwargs or {})
    filtered = preprocess(recording, **settings, motion_correction=None)
    analyzer = create_sorting_analyzer(sorting, filtered, format="memory", sparse=True, job_kwargs=job_kwargs)
    analyzer.compute("random_spikes", max_spikes_per_unit=max_spikes_per_unit, seed=seed)
    analyzer.compute(["waveforms", "templates", "noise_levels", "spike_amplitudes", "unit_locations"],
                     **job_kwargs)
    duration_s = _total_duration_s(recording)
    analyzer.compute(
        "quality_metrics",
        metric_names=list(QUALITY_METRICS),
        # ten bins at least, so that a short recording still gets a presence ratio
        metric_params={"presence_ratio": {"bin_duration_s": min(60.0, duration_s / 10)}},
    )
    return analyzer


def _total_duration_s(recording) -> float:
    """Duration of all segments together, in seconds."""
    return sum(recording.get_duration(segment) for segment in range(recording.get_num_segments()))


def quality_table(analyzer):
    """One row per unit: spike count, position, main channel and the quality metrics.

    Parameters
    ----------
    analyzer : SortingAnalyzer
        From :func:`analyze_sorting`.

    Returns
    -------
    pandas.DataFrame
        Indexed by unit id; columns ``num_spikes``, ``x_um``, ``y_um``, ``main_channel``, ``amplitude_uv``
        (the template's largest absolute value, in uV when the recording is in uV or has gains), then the
        metrics' columns (``snr``, ``isi_violations_ratio``, ``presence_ratio``, ``firing_rate``,
        ``amplitude_cutoff``, ...), then ``flags`` (the ``ALLEN_CRITERIA`` a unit fails, comma-separated).
    """
    import pandas as pd

    templates = analyzer.get_extension("templates").get_data()
    locations = analyzer.get_extension("unit_locations").get_data()
    counts = analyzer.sorting.count_num_spikes_per_unit()
    table = pd.DataFrame(
        {
            "num_spikes": [counts[unit] for unit in analyzer.unit_ids],
            "x_um": locations[:, 0],
            "y_um": locations[:, 1],
            "main_channel": analyzer.channel_ids[np.abs(templates).max(axis=1).argmax(axis=1)],
            "amplitude_uv": np.abs(templates).max(axis=(1, 2)),
        },
        index=pd.Index(analyzer.unit_ids, name="unit_id"),
    )
    metrics = analyzer.get_extension("quality_metrics").get_data()
    table = table.join(metrics)
    table["flags"] = [", ".join(failed_criteria(row)) for _, row in table.iterrows()]
    return table


def failed_criteria(row) -> list[str]:
    """The ``ALLEN_CRITERIA`` a unit's metrics fail (a missing or NaN metric fails nothing)."""
    failed = []
    for metric, (side, limit) in ALLEN_CRITERIA.items():
        value = row.get(metric, np.nan)
        if np.isfinite(value) and not (value < limit if side == "<" else value > limit):
            failed.append(f"{metric} {value:.2f} (want {side} {limit:g})")
    return failed


def plot_overview(analyzer, table, path: Path) -> Path:
    """Unit positions on the probe coloured by SNR, and histograms of four metrics; saved as a PNG.

    Parameters
    ----------
    analyzer : SortingAnalyzer
    table : pandas.DataFrame
        From :func:`quality_table`.
    path : Path

    Returns
    -------
    Path
    """
    import matplotlib.pyplot as plt

    contacts = analyzer.get_channel_locations()
    figure = plt.figure(figsize=(11, 7), layout="constrained")
    grid = figure.add_gridspec(2, 3, width_ratios=[1.2, 1, 1])
    probe_axes = figure.add_subplot(grid[:, 0])
    probe_axes.scatter(contacts[:, 0], contacts[:, 1], marker="s", s=12, color="0.8", label="contacts")
    points = probe_axes.scatter(table["x_um"], table["y_um"], c=table["snr"], cmap="viridis", s=30,
                                edgecolor="k", linewidth=0.3)
    if len(table) <= 60:
        for unit, row in table.iterrows():
            probe_axes.annotate(str(unit), (row["x_um"], row["y_um"]), fontsize=6, xytext=(3, 2),
                                textcoords="offset points")
    figure.colorbar(points, ax=probe_axes, label="SNR")
    probe_axes.set(xlabel="x (um)", ylabel="depth y (um)", title=f"{len(table)} units on the probe")
    panels = [("firing_rate", "firing rate (Hz)"), ("snr", "SNR"),
              ("isi_violations_ratio", "ISI violations ratio"), ("presence_ratio", "presence ratio")]
    for index, (column, label) in enumerate(panels):
        axes = figure.add_subplot(grid[index // 2, 1 + index % 2])
        values = table[column].to_numpy(dtype=float)
        axes.hist(values[np.isfinite(values)], bins=20, color="tab:blue")
        if column in ALLEN_CRITERIA:
            axes.axvline(ALLEN_CRITERIA[column][1], color="tab:red", linestyle="--", linewidth=1)
        axes.set(xlabel=label, ylabel="units")
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def plot_unit(analyzer, unit_id, path: Path, amplitudes_by_unit: list[dict] | None = None) -> Path:
    """One unit's template on its channels (single spikes in grey), amplitudes over time, ISI histogram.

    Parameters
    ----------
    analyzer : SortingAnalyzer
        From :func:`analyze_sorting`.
    unit_id
        A unit of the analyzer's sorting.
    path : Path
    amplitudes_by_unit : list of dict or None
        The analyzer's spike amplitudes split by segment and unit (``get_data(outputs="by_unit")``);
        given when drawing many units, so that they are split once.

    Returns
    -------
    Path
    """
    import matplotlib.pyplot as plt

    figure, (waveform_axes, amplitude_axes, isi_axes) = plt.subplots(
        1, 3, figsize=(13, 3.8), layout="constrained", gridspec_kw={"width_ratios": [1, 1.6, 1]}
    )
    _draw_waveforms(waveform_axes, analyzer, unit_id)
    if amplitudes_by_unit is None:
        amplitudes_by_unit = analyzer.get_extension("spike_amplitudes").get_data(outputs="by_unit")
    times, amplitudes = _amplitudes_over_time(analyzer, unit_id, amplitudes_by_unit)
    amplitude_axes.scatter(times, amplitudes, s=2, color="tab:blue", alpha=0.5, linewidth=0)
    amplitude_axes.set(xlabel="time (s)", ylabel="amplitude (uV)", title="amplitude over time")
    intervals_ms = _inter_spike_intervals_ms(analyzer.sorting, unit_id)
    isi_axes.hist(intervals_ms[intervals_ms < ISI_WINDOW_MS], bins=np.arange(0, ISI_WINDOW_MS + 0.5, 0.5),
                  color="tab:blue")
    isi_axes.axvspan(0, REFRACTORY_MS, color="tab:red", alpha=0.2, label=f"< {REFRACTORY_MS} ms")
    isi_axes.set(xlabel="inter-spike interval (ms)", ylabel="count", title="ISI histogram")
    isi_axes.legend(loc="upper right", fontsize=8)
    figure.suptitle(f"unit {unit_id}: {len(times)} spikes")
    figure.savefig(path, dpi=80)
    plt.close(figure)
    return path


def _draw_waveforms(axes, analyzer, unit_id) -> None:
    """Template and single spikes on the unit's strongest channels, each drawn at its contact's position."""
    unit_index = analyzer.sorting.id_to_index(unit_id)
    template = analyzer.get_extension("templates").get_unit_template(unit_id)  # samples x channels
    channels = np.flatnonzero(analyzer.sparsity.mask[unit_index])
    channels = channels[np.argsort(-np.abs(template[:, channels]).max(axis=0))][:MAX_WAVEFORM_CHANNELS]
    positions = analyzer.get_channel_locations()[channels]
    waveforms = analyzer.get_extension("waveforms").get_waveforms_one_unit(unit_id, force_dense=True)
    waveforms = waveforms[:SINGLE_SPIKES_DRAWN][:, :, channels]
    pitch = _contact_pitch(positions)
    scale = 0.9 * pitch / max(np.abs(template[:, channels]).max(), 1e-6)
    time_axis = np.linspace(-0.4, 0.4, template.shape[0]) * pitch
    for index, (x, y) in enumerate(positions):
        axes.plot(x + time_axis, y + scale * waveforms[:, :, index].T, color="0.75", linewidth=0.4)
        axes.plot(x + time_axis, y + scale * template[:, channels[index]], color="tab:red", linewidth=1.2)
    axes.set(xlabel="x (um)", ylabel="y (um)",
             title=f"template on {len(channels)} channels ({template[:, channels].min():.0f} uV trough)")


def _contact_pitch(positions: np.ndarray) -> float:
    """Smallest distance between two of the contacts (20 um for a single contact)."""
    if len(positions) < 2:
        return 20.0
    distances = np.linalg.norm(positions[:, None] - positions[None], axis=-1)
    return float(distances[distances > 0].min()) if np.any(distances > 0) else 20.0


def _amplitudes_over_time(analyzer, unit_id, by_unit: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """Spike times (s, segments laid end to end) and amplitudes of one unit."""
    sorting, recording = analyzer.sorting, analyzer.recording
    times, amplitudes, offset = [], [], 0.0
    for segment in range(sorting.get_num_segments()):
        times.append(sorting.get_unit_spike_train(unit_id, segment_index=segment) / sorting.sampling_frequency
                     + offset)
        amplitudes.append(by_unit[segment][unit_id])
        offset += recording.get_duration(segment)
    return np.concatenate(times), np.concatenate(amplitudes)


def _inter_spike_intervals_ms(sorting, unit_id) -> np.ndarray:
    """Inter-spike intervals of one unit in ms, within each segment."""
    return np.concatenate([np.diff(sorting.get_unit_spike_train(unit_id, segment_index=segment))
                           for segment in range(sorting.get_num_segments())]) * 1000.0 / sorting.sampling_frequency


def write_report(
    folder: str | Path,
    output: str | Path | None = None,
    recording=None,
    job_kwargs: dict | None = None,
) -> Path:
    """Write the HTML report of a sorter's output folder.

    Parameters
    ----------
    folder : str or Path
        The folder given to ``run_sorter(folder=...)`` or ``dlsort sort -o`` (any sorter).
    output : str, Path or None
        Where the report goes; None writes ``<folder>/report``. An existing report there is replaced.
    recording : BaseRecording or None
        The recording that was sorted, if the folder cannot re-open it (see :func:`read_sorter_output`).
    job_kwargs : dict or None
        SpikeInterface job kwargs for the analyzer (``n_jobs``, ``progress_bar``).

    Returns
    -------
    Path
        The report's ``index.html``.
    """
    from tqdm.auto import tqdm

    sorted_output = read_sorter_output(folder, recording)
    output = Path(output) if output is not None else Path(folder) / "report"
    units_folder = output / "units"
    units_folder.mkdir(parents=True, exist_ok=True)
    for stale in units_folder.glob("unit_*.png"):
        stale.unlink()
    title = f"{sorted_output.sorter_name} sorting of {Path(folder).name}"
    if sorted_output.sorting.get_num_units() == 0:
        return _write_html(output, title, sorted_output, None)
    # another sorter's parameters may share a name with dlsort's and mean something else
    params = sorted_output.params if sorted_output.sorter_name == "dlsort" else None
    analyzer = analyze_sorting(sorted_output.recording, sorted_output.sorting, params, job_kwargs=job_kwargs)
    table = quality_table(analyzer)
    table.to_csv(output / "quality_metrics.csv")
    plot_overview(analyzer, table, output / "overview.png")
    progress = (job_kwargs or {}).get("progress_bar", False)
    by_unit = analyzer.get_extension("spike_amplitudes").get_data(outputs="by_unit")
    for unit_id in tqdm(analyzer.unit_ids, desc="unit figures", disable=not progress):
        plot_unit(analyzer, unit_id, units_folder / f"unit_{unit_id}.png", by_unit)
    return _write_html(output, title, sorted_output, table)


def _write_html(output: Path, title: str, sorted_output: SorterOutput, table) -> Path:
    """``index.html``: the recording's summary, the overview figure and the metrics table with unit figures."""
    recording = sorted_output.recording
    summary = (f"{recording.get_num_channels()} channels, {_total_duration_s(recording):.1f} s at "
               f"{recording.sampling_frequency:g} Hz; "
               f"{sorted_output.sorting.get_num_units()} units")
    criteria = ", ".join(f"{metric} {side} {limit:g}" for metric, (side, limit) in ALLEN_CRITERIA.items())
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse;font-size:13px}"
        "td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}tr.flagged{background:#fde8e8}"
        "img.unit{width:100%;max-width:1040px}</style></head><body>",
        f"<h1>{html.escape(title)}</h1><p>{html.escape(summary)}.</p>",
    ]
    if table is None:
        parts.append("<p>The sorting has no units: nothing to show.</p>")
    else:
        parts += [
            "<img src='overview.png' alt='units on the probe and metric distributions'>",
            f"<p>Metrics from SpikeInterface's quality_metrics on the band-passed, referenced recording. Rows "
            f"in red fail one of the Allen Brain Observatory's unit criteria ({html.escape(criteria)}); "
            "they are flagged, not removed. Units are sorted by depth; also in <a "
            "href='quality_metrics.csv'>quality_metrics.csv</a>.</p>",
            _metrics_table(table.sort_values("y_um")),
            "<h2>Units</h2>",
        ]
        for unit_id in table.sort_values("y_um").index:
            parts.append(f"<h3 id='unit-{html.escape(str(unit_id))}'>unit {html.escape(str(unit_id))}</h3>"
                         f"<img class='unit' loading='lazy' src='units/unit_{html.escape(str(unit_id))}.png'>")
    parts.append("</body></html>")
    path = output / "index.html"
    path.write_text("\n".join(parts))
    return path


def _metrics_table(table) -> str:
    """The metrics as an HTML table, unit ids linking to their figures."""
    columns = ["num_spikes", "x_um", "y_um", "main_channel", "amplitude_uv", "snr", "firing_rate",
               "isi_violations_ratio", "presence_ratio", "amplitude_cutoff", "flags"]
    rows = ["<table><tr><th>unit</th>" + "".join(f"<th>{column}</th>" for column in columns) + "</tr>"]
    for unit_id, row in table.iterrows():
        cells = "".join(f"<td>{html.escape(_format_cell(row.get(column)))}</td>" for column in columns)
        flagged = " class='flagged'" if row["flags"] else ""
        unit = html.escape(str(unit_id))
        rows.append(f"<tr{flagged}><td><a href='#unit-{unit}'>{unit}</a></td>{cells}</tr>")
    return "\n".join(rows + ["</table>"])


def _format_cell(value) -> str:
    """A table cell: floats to 3 significant digits, NaN as a dash."""
    if isinstance(value, float | np.floating):
        return "-" if not np.isfinite(value) else f"{value:.3g}"
    return str(value)
