"""The SpikeInterface sorter class ``dlsort`` (``run_sorter("dlsort", recording)``)."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

from spikeinterface.sorters import BaseSorter

from dlsort.errors import DlsortInputError
from dlsort.params import DEFAULT_PARAMS, PARAMS_DESCRIPTION

SORTING_FOLDER = "sorting"
TEMPLATES_FILE = "templates.npy"
SCRATCH_FOLDER = "scratch"  # intermediate traces during a sort (disk cache, DeepInterpolation's), removed at its end


def job_kwargs_from_params(params: dict) -> dict:
    """SpikeInterface job kwargs taken from dlsort parameters."""
    return {
        "n_jobs": params["n_jobs"],
        "chunk_duration": params["chunk_duration"],
        "progress_bar": params["progress_bar"],
    }


class DlsortSorter(BaseSorter):
    """Deep-learning spike sorter: neural stages with classical fallbacks, HDBSCAN, template matching."""

    sorter_name = "dlsort"
    requires_locations = False  # checked by dlsort.validation with a message that says how to fix it
    gpu_capability = "nvidia-optional"
    requires_binary_data = False
    handle_multi_segment = True
    compatible_with_parallel = {"loky": True, "multiprocessing": True, "threading": False}
    sorter_description = (
        "dlsort: deep-learning spike sorter (DeepInterpolation, neural detection and denoising, autoencoder "
        "features) with classical fallbacks, HDBSCAN clustering and template matching."
    )
    installation_mesg = "pip install dlsort  (see the dlsort README for the CPU or CUDA build of torch)"
    _default_params = dict(DEFAULT_PARAMS)
    _params_description = dict(PARAMS_DESCRIPTION)

    @classmethod
    def is_installed(cls) -> bool:
        return all(importlib.util.find_spec(name) is not None for name in ("torch", "hdbscan", "sklearn", "numba"))

    @classmethod
    def get_sorter_version(cls) -> str:
        from dlsort import __version__

        return __version__

    @classmethod
    def use_gpu(cls, params: dict) -> bool:
        # Asked by SpikeInterface's container mode only, which then calls has_nvidia(): that raises when the
        # host lacks cuda-python. So "auto" asks for the GPU only when cuda-python can answer; "cuda" always
        # does, and SpikeInterface's error then says to install cuda-python.
        import importlib.util

        device = params.get("device", "auto")
        if device == "auto":
            return importlib.util.find_spec("cuda") is not None
        return device == "cuda"

    @classmethod
    def initialize_folder(cls, recording, output_folder, verbose, remove_existing_folder):
        # Check the recording before SpikeInterface dumps it or removes an existing folder.
        from dlsort.validation import check_recording

        check_recording(recording)
        return super().initialize_folder(recording, output_folder, verbose, remove_existing_folder)

    @classmethod
    def _check_params(cls, recording, output_folder, params: dict) -> dict:
        from dlsort.params import validate_params
        from dlsort.validation import check_duration, resolve_device

        params = validate_params(params)
        resolve_device(params["device"])
        from dlsort.denoising import denoising_network
        from dlsort.detection import check_peak_sign
        from dlsort.models import resolve_model

        check_peak_sign(params["detection_method"], params["peak_sign"])
        # a missing or broken model fails here, before any sorting
        if params["detection_method"] == "neural":
            resolve_model(params["detection_model"], task="detector", progress_bar=params["progress_bar"])
        denoising = denoising_network(params["denoising_method"], params["denoising_model"])
        if denoising is not None:
            resolve_model(denoising[0], task=denoising[1], progress_bar=params["progress_bar"])
        chunk_s = _chunk_seconds(recording, params["chunk_duration"], "chunk_duration")
        check_duration(recording, chunk_s, params["ms_before"], params["ms_after"])
        window_ms = params["ms_before"] + params["ms_after"]
        if _chunk_seconds(recording, params["matching_chunk_duration"], "matching_chunk_duration") * 1e3 < window_ms:
            raise DlsortInputError(
                f"matching_chunk_duration={params['matching_chunk_duration']!r} is shorter than one template "
                f"(ms_before + ms_after = {window_ms} ms); use e.g. '100ms'"
            )
        return params

    @classmethod
    def _check_apply_filter_in_params(cls, params: dict) -> bool:
        return True

    @classmethod
    def _setup_recording(cls, recording, sorter_output_folder: Path, params: dict, verbose: bool) -> None:
        # The recording is re-read from the folder's spikeinterface_recording.json in _run_from_folder.
        return None

    @classmethod
    def _run_from_folder(cls, sorter_output_folder: Path, params: dict, verbose: bool) -> None:
        import numpy as np

        from dlsort.models.startup import wait_for_startup
        from dlsort.pipeline import run_pipeline
        from dlsort.provenance import build_provenance, write_provenance
        from dlsort.validation import resolve_device

        sorter_output_folder = Path(sorter_output_folder)
        recording = cls.load_recording_from_folder(sorter_output_folder.parent, with_warnings=False)
        device = resolve_device(params["device"])
        startup = wait_for_startup()  # in an image: the models its start-up pulled, or why it fell back
        scratch = sorter_output_folder / SCRATCH_FOLDER
        try:
            result = run_pipeline(recording, params, job_kwargs_from_params(params), scratch_folder=scratch)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        result.sorting.save(folder=sorter_output_folder / SORTING_FOLDER, overwrite=True)
        np.save(sorter_output_folder / TEMPLATES_FILE, result.templates.get_dense_templates())
        provenance = build_provenance(
            params,
            result.models,
            device,
            result.num_peaks,
            result.sorting.get_num_units(),
            result.motion_correction,
            startup,
            result.estimated_drift_um,
            result.matching_whitened,
            result.common_referenced,
            result.preprocessing_cache,
        )
        write_provenance(sorter_output_folder.parent, provenance)

    @classmethod
    def _get_result_from_folder(cls, sorter_output_folder: Path):
        from spikeinterface.core import load

        return load(Path(sorter_output_folder) / SORTING_FOLDER)


def _chunk_seconds(recording, chunk_duration: str, name: str) -> float:
    from spikeinterface.core.job_tools import ensure_chunk_size

    try:
        chunk_size = ensure_chunk_size(recording, chunk_duration=chunk_duration)
    except (ValueError, AssertionError) as error:
        raise DlsortInputError(
            f"{name}={chunk_duration!r} is not understood ({error}); use e.g. '1s' or '500ms'"
        ) from error
    return chunk_size / recording.sampling_frequency
