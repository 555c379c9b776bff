"""``dlsort report``: quality metrics of a sorting, the HTML report of a sorter folder, and its errors."""

import re
import shutil

import numpy as np
import pytest
import spikeinterface.sorters as ss
from conftest import JOB, folder_of

from dlsort.cli import main
from dlsort.errors import DlsortInputError
from dlsort.report import analyze_sorting, quality_table, write_report


@pytest.fixture(scope="module")
def sorted_tiny(tiny_recording, tmp_path_factory):
    """A dlsort output folder of the tiny recording."""
    folder = tmp_path_factory.mktemp("sorted_tiny") / "out"
    ss.run_sorter("dlsort", tiny_recording, folder=folder, n_jobs=1, progress_bar=False)
    return folder


def test_metrics_flag_a_merged_unit_and_a_unit_that_stops(accuracy_case):
    """True units pass the refractory and presence criteria; two units merged into one, or a unit cut
    off halfway through the recording, fail them; SNRs rank units as the ground-truth SNRs do."""
    from scipy.stats import spearmanr
    from spikeinterface.core import NumpySorting

    from dlsort.evaluation import ground_truth_snrs

    recording, gt = accuracy_case
    trains = {str(unit): gt.get_unit_spike_train(unit) for unit in gt.unit_ids}
    first, second = list(trains)[:2]
    half = recording.get_num_samples() // 2
    trains["merged"] = np.sort(np.concatenate([trains[first], trains[second]]))
    trains["stops"] = trains[first][trains[first] < half]
    sorting = NumpySorting.from_unit_dict([trains], recording.sampling_frequency)
    table = quality_table(analyze_sorting(recording, sorting, job_kwargs=JOB))

    assert list(table.index) == list(trains)
    true_units = table.loc[[str(unit) for unit in gt.unit_ids]]
    assert (true_units["isi_violations_ratio"] == 0).all() and (true_units["presence_ratio"] >= 0.9).all()
    assert table.loc["merged", "isi_violations_ratio"] > 0.5 and "isi_violations_ratio" in table.loc["merged", "flags"]
    assert table.loc["stops", "presence_ratio"] <= 0.6 and "presence_ratio" in table.loc["stops", "flags"]
    assert table.loc["stops", "num_spikes"] < table.loc[first, "num_spikes"]
    rho = spearmanr(true_units["snr"], ground_truth_snrs(recording, gt)).statistic
    assert rho >= 0.9, (true_units["snr"].tolist(), rho)
    probe_y = recording.get_channel_locations()[:, 1]
    assert true_units["y_um"].between(probe_y.min() - 50, probe_y.max() + 50).all()
    # the amplitude is the SNR's numerator: over units with the same noise level, their ratio is that level (uV)
    noise_uv = true_units["amplitude_uv"] / true_units["snr"]
    assert noise_uv.std() < 0.1 * noise_uv.mean() and 2.0 < noise_uv.mean() < 6.0, noise_uv.tolist()


def test_report_command_writes_every_unit(sorted_tiny, tmp_path, capsys):
    output = tmp_path / "report"
    assert main(["report", str(sorted_tiny), "-o", str(output), "--n-jobs", "1"]) == 0
    assert str(output / "index.html") in capsys.readouterr().out
    sorting = ss.read_sorter_folder(sorted_tiny)
    page = (output / "index.html").read_text()
    images = re.findall(r"src='([^']+\.png)'", page)
    assert sorted(images) == sorted(["overview.png"] + [f"units/unit_{unit}.png" for unit in sorting.unit_ids])
    import matplotlib.image

    for image in images:
        height, width = matplotlib.image.imread(output / image).shape[:2]
        assert height > 200 and width > 600, image
    csv = (output / "quality_metrics.csv").read_text().splitlines()
    assert csv[0].startswith("unit_id,num_spikes") and len(csv) == 1 + len(sorting.unit_ids)


def test_report_of_a_sorting_without_units(sorted_tiny, tmp_path):
    from spikeinterface.core import NumpySorting

    from dlsort.sorter import SORTING_FOLDER

    folder = tmp_path / "empty"
    shutil.copytree(sorted_tiny, folder)
    fs = ss.read_sorter_folder(sorted_tiny).sampling_frequency
    NumpySorting.from_unit_dict([{}], fs).save(folder=folder / "sorter_output" / SORTING_FOLDER, overwrite=True)
    page = write_report(folder).read_text()
    assert "has no units" in page and "<img" not in page


def test_errors_name_the_fix(sorted_tiny, tiny_recording, tmp_path):
    from spikeinterface.preprocessing import resample

    with pytest.raises(DlsortInputError, match="not a sorter output folder"):
        write_report(tmp_path)
    lost = tmp_path / "lost"
    shutil.copytree(sorted_tiny, lost)
    for dumped in lost.glob("spikeinterface_recording.*"):
        dumped.unlink()
    with pytest.raises(DlsortInputError, match="pass it with --recording"):
        write_report(lost)
    assert write_report(lost, recording=tiny_recording).is_file()
    with pytest.raises(DlsortInputError, match="give the recording that was sorted"):
        write_report(sorted_tiny, tmp_path / "r", recording=tiny_recording.frame_slice(0, 1000))
    with pytest.raises(DlsortInputError, match="sampled at 20000 Hz"):
        write_report(sorted_tiny, tmp_path / "r", recording=resample(tiny_recording, 20_000))
    from spikeinterface.core import NumpyRecording

    unplaced = NumpyRecording([tiny_recording.get_traces()], tiny_recording.sampling_frequency)
    with pytest.raises(DlsortInputError, match="no probe"):
        write_report(sorted_tiny, tmp_path / "r", recording=unplaced)
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert main(["report", str(sorted_tiny), "--recording", folder_of(tiny_recording), "-o", str(tmp_path / "ok"),
                 "--n-jobs", "1"]) == 0
