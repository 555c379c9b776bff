"""End-to-end sorts through ``run_sorter``: the accuracy floor, the output folder, multi-segment input."""

import json

import numpy as np
import pytest
import spikeinterface.sorters as ss

import dlsort
from dlsort.evaluation import evaluate
from dlsort.params import DEFAULT_PARAMS


@pytest.mark.parametrize("denoising_method", ["neural", "neighbourhood"])
def test_accuracy_floor_on_the_seeded_32_channel_case(accuracy_case, tmp_path, denoising_method):
    """Units of SNR >= 3 (as in the benchmark, where no sorter finds units below 3): mean accuracy >= 0.8.

    The case holds one unit of SNR 2.7: threshold detection used to find it (its peaks, selected by the
    threshold, averaged to a template above min_template_snr), the neural detector's less biased sample
    leaves its template below min_template_snr, so it is dropped.
    """
    from dlsort.evaluation import ground_truth_snrs

    recording, gt = accuracy_case
    sorting = ss.run_sorter("dlsort", recording, folder=tmp_path / "out", n_jobs=2, progress_bar=False,
                            denoising_method=denoising_method)
    result = evaluate(gt, sorting, snrs=ground_truth_snrs(recording, gt))
    visible = [unit["accuracy"] for unit in result.per_unit.values() if unit["snr"] >= 3]
    assert len(visible) == 7 and np.mean(visible) >= 0.8, result.summary()
    assert result.well_detected >= 6, result.summary()


def test_output_folder_holds_sorting_templates_and_provenance(tiny_recording, tmp_path):
    folder = tmp_path / "out"
    sorting = ss.run_sorter("dlsort", tiny_recording, folder=folder, n_jobs=1, progress_bar=False, detect_threshold=5.5)
    assert len(sorting.unit_ids) > 0
    provenance = json.loads((folder / "provenance.json").read_text())
    assert provenance["dlsort_version"] == dlsort.__version__
    assert provenance["parameters"] == {**DEFAULT_PARAMS, "n_jobs": 1, "progress_bar": False, "detect_threshold": 5.5}
    from dlsort.denoising import denoising_network
    from dlsort.models import catalog

    denoiser, _ = denoising_network(DEFAULT_PARAMS["denoising_method"], DEFAULT_PARAMS["denoising_model"])
    shipped = [catalog.find_entry(model) for model in (DEFAULT_PARAMS["detection_model"], denoiser)]
    assert [entry.ref for entry in shipped] == ["detector-generic@1.0.0", "denoiser-generic@1.0.0"]  # pinned
    assert provenance["models"] == [{"id": entry.ref, "sha256": entry.sha256, "task": entry.task, "source": "embedded"}
                                    for entry in shipped]
    assert provenance["container_startup"] is None  # not in an image
    assert provenance["motion_correction_applied"] is None  # 8 channels: "auto" applies none
    # 8 contacts within 90 x 60 um: a spike reaches most of them, so "auto" leaves the median in
    assert provenance["common_reference_applied"] is False
    assert provenance["preprocessing_cache"] == "memory"  # a few MiB: "auto" keeps them in shared memory
    assert provenance["num_units"] == len(sorting.unit_ids)
    templates = np.load(folder / "sorter_output" / "templates.npy")
    assert templates.shape[0] == len(sorting.unit_ids)
    assert templates.shape[2] == tiny_recording.get_num_channels()
    again = ss.read_sorter_folder(folder)
    assert np.array_equal(again.to_spike_vector(), sorting.to_spike_vector())


def test_a_disk_cache_sorts_as_the_memory_cache_and_is_removed_after_the_sort(tiny_recording, tmp_path):
    sortings = {}
    for where in ("memory", "disk"):
        folder = tmp_path / where
        sortings[where] = ss.run_sorter("dlsort", tiny_recording, folder=folder, n_jobs=2, progress_bar=False,
                                        cache_preprocessing=where)
        assert json.loads((folder / "provenance.json").read_text())["preprocessing_cache"] == where
        assert not (folder / "sorter_output" / "scratch").exists()
    assert len(sortings["disk"].unit_ids) > 0
    assert np.array_equal(sortings["disk"].to_spike_vector(), sortings["memory"].to_spike_vector())


def test_multi_segment_recording(tiny_recording, tmp_path):
    from spikeinterface.core import append_recordings

    two = append_recordings([tiny_recording, tiny_recording.frame_slice(0, 150_000)])
    sorting = ss.run_sorter("dlsort", two, folder=tmp_path / "out", n_jobs=1, progress_bar=False)
    assert sorting.get_num_segments() == 2
    first = sorting.to_spike_vector()
    counts = np.bincount(first["segment_index"], minlength=2)
    assert counts[0] > 0 and counts[1] > 0
    assert first["sample_index"][first["segment_index"] == 1].max() < 150_000


def test_without_matching_the_clustered_peaks_are_the_spikes(tiny_recording, tmp_path):
    folder = tmp_path / "out"
    sorting = ss.run_sorter(
        "dlsort", tiny_recording, folder=folder, n_jobs=1, progress_bar=False, matching_method="none"
    )
    provenance = json.loads((folder / "provenance.json").read_text())
    spikes = sorting.to_spike_vector()
    assert len(sorting.unit_ids) > 0
    assert 0 < len(spikes) <= provenance["num_peaks"]
    assert np.all(np.bincount(spikes["unit_index"]) >= DEFAULT_PARAMS["min_cluster_size"] // 2)


def test_matching_runs_in_its_own_chunks(tiny_recording, monkeypatch):
    """Template matching gets matching_chunk_duration; the other passes keep chunk_duration."""
    import dlsort.pipeline as pipeline
    from dlsort.sorter import job_kwargs_from_params

    seen = {}

    def recording(stage):
        run = getattr(pipeline, stage)

        def wrapped(*args, job_kwargs, **kwargs):
            seen[stage] = job_kwargs["chunk_duration"]
            return run(*args, job_kwargs=job_kwargs, **kwargs)

        monkeypatch.setattr(pipeline, stage, wrapped)

    for stage in ("detect_peaks", "match_templates"):
        recording(stage)
    params = {**DEFAULT_PARAMS, "n_jobs": 1, "progress_bar": False, "matching_chunk_duration": "250ms"}
    result = pipeline.run_pipeline(tiny_recording, params, job_kwargs_from_params(params))
    assert seen == {"detect_peaks": "1s", "match_templates": "250ms"}
    assert result.sorting.get_num_units() > 0
