"""Convert the Allen Institute's DeepInterpolation Neuropixels model (a Keras ``.h5``) into dlsort's per-frame U-Net.

The published model (``2020_02_29_15_28_unet_single_ephys_1024_mean_squared_error-1050.h5``,
Lecoq et al., Nature Methods 2021) is ``unet_single_ephys_1024`` saved whole by Keras 2: its
weights are in the group ``model_weights``, whose attribute ``layer_names`` lists the layers from
input to output; each layer's group lists its ``weight_names`` (a convolution's kernel, then its
bias), stored as datasets under those names (``conv2d_3/conv2d_3/kernel:0``). A weights-only file
(``save_weights``) has the same layout at its root. Only h5py reads it; no TensorFlow.

The weights stay under the Allen Institute Software License: non-commercial use only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dlsort.errors import DlsortInputError

SAMPLING_FREQUENCY_HZ = 30_000.0
ALLEN_CHANNELS = 384
LICENCE = ("Allen Institute Software License (2-clause BSD plus a clause forbidding redistribution and use for "
           "commercial purposes without the Allen Institute's written permission): the converted weights may be used "
           "for non-commercial purposes only (https://github.com/AllenInstitute/deepinterpolation, LICENSE).")


def _strings(values) -> list[str]:
    """An HDF5 attribute of names (Keras 2 writes bytes, Keras 3 str) as a list of str."""
    return [value.decode("utf8") if isinstance(value, bytes) else str(value) for value in np.atleast_1d(values)]


def read_keras_layers(h5_path: Path) -> list[tuple[str, list[np.ndarray]]]:
    """The layers holding weights in a Keras HDF5 file, in the order the file lists its layers.

    Parameters
    ----------
    h5_path : Path
        A whole model (``model.save``) or its weights (``save_weights``) in Keras' HDF5 format.

    Returns
    -------
    list of (str, list of np.ndarray)
        Layer name and its weights in the order of its ``weight_names``.

    Raises
    ------
    DlsortInputError
        Not an HDF5 file, no Keras layer list, or a layer or weight the list names is absent.
    """
    import h5py

    h5_path = Path(h5_path)
    if not h5_path.is_file():
        raise DlsortInputError(f"{h5_path} not found: give the path of the Allen model's .h5 file")
    if not h5py.is_hdf5(h5_path):
        raise DlsortInputError(f"{h5_path} is not an HDF5 file: give the Keras .h5 file of the Allen model "
                               "(not a SavedModel folder, a .keras archive or a download error page)")
    with h5py.File(h5_path, "r") as file:
        root = file["model_weights"] if "model_weights" in file else file
        if "layer_names" not in root.attrs:
            raise DlsortInputError(f"{h5_path} is HDF5 but not a Keras model: it lists no layers (attribute "
                                   "layer_names); give the .h5 file Keras saved the Allen model in")
        layers = []
        for name in _strings(root.attrs["layer_names"]):
            group = root.get(name)
            weight_names = _strings(group.attrs.get("weight_names", [])) if group is not None else []
            absent = [weight for weight in weight_names if weight not in group]
            if group is None or absent:
                lacks = "its group" if group is None else f"its weights {absent}"
                raise DlsortInputError(f"{h5_path} lists layer {name} but lacks {lacks}: the file is truncated or "
                                       "damaged; download the Allen model again")
            if weight_names:
                layers.append((name, [np.asarray(group[weight]) for weight in weight_names]))
    return layers


def unet_from_keras_layers(layers: list[tuple[str, list[np.ndarray]]], omission: int = 1, where: str = "the file"):
    """A ``PerFrameUNet`` holding the weights of a Keras ``unet_single_ephys_1024``.

    Keras kernels (rows, columns, in, out) become torch's (out, in, rows, columns). The number of
    context frames and the width come from the first kernel (input channels = pre + post frames,
    split evenly; output channels = filters); every other shape must then fit.

    Parameters
    ----------
    layers : list of (str, list of np.ndarray)
        From ``read_keras_layers``.
    omission : int, default: 1
        Frames left out on each side of the predicted one in training (not stored in the file;
        the Allen model's is 1).
    where : str
        The file, for error messages.

    Returns
    -------
    PerFrameUNet
        In evaluation mode.

    Raises
    ------
    DlsortInputError
        Another architecture (number or kind of layers) or a layer of the wrong shape.
    """
    import torch

    from dlsort.nn.unet import PerFrameUNet

    described = ", ".join(f"{name} {[tuple(array.shape) for array in arrays]}" for name, arrays in layers)
    is_convolution = [len(arrays) == 2 and arrays[0].ndim == 4 and arrays[1].ndim == 1 for _, arrays in layers]
    num_convolutions = len(PerFrameUNet(filters=1).convolutions())
    if len(layers) != num_convolutions or not all(is_convolution) or layers[0][1][0].shape[2] % 2:
        raise DlsortInputError(
            f"{where} is not unet_single_ephys_1024: it has {len(layers)} layers with weights ({described}), the "
            f"U-Net has {num_convolutions} 2-D convolutions with a kernel and a bias each and an even number of input "
            "frames; dlsort converts only the Allen Neuropixels DeepInterpolation model")
    frames, filters = layers[0][1][0].shape[2:]
    network = PerFrameUNet(frames // 2, frames // 2, omission, filters)
    names = {module: name for name, module in network.named_modules()}
    state = {}
    for (layer, (kernel, bias)), convolution in zip(layers, network.convolutions()):
        expected = tuple(convolution.weight.shape)
        keras_expected = (*expected[2:], expected[1], expected[0])
        if kernel.shape != keras_expected or bias.shape != expected[:1]:
            raise DlsortInputError(
                f"{where}: layer {layer} has a kernel of shape {kernel.shape} and a bias of shape {bias.shape}; "
                f"unet_single_ephys_1024 with {frames} context frames and {filters} filters needs {keras_expected} "
                f"and {expected[:1]} there: the file holds another network or was altered")
        state[f"{names[convolution]}.weight"] = torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)))
        state[f"{names[convolution]}.bias"] = torch.from_numpy(np.ascontiguousarray(bias))
    network.load_state_dict({key: tensor.float() for key, tensor in state.items()})
    return network.eval()


def allen_card(network, model_id: str, version: str, source: str, num_channels: int) -> dict:
    """The model card of a converted Allen model (schema: ``dlsort/models/catalog.schema.json``)."""
    context_ms = round(1000.0 * (network.context + network.omission) / SAMPLING_FREQUENCY_HZ, 4)
    return {
        "id": model_id,
        "task": "deepinterpolation",
        "version": version,
        "description": "DeepInterpolation's per-frame U-Net (unet_single_ephys_1024, Lecoq et al. 2021) with the Allen "
                       "Institute's Neuropixels weights, converted from Keras: each frame predicted from the frames "
                       "before and after it, leaving out the frame and its neighbours; channels on a checkerboard "
                       "(channel c at row c, column c % 2), normalised by one mean and standard deviation per probe. "
                       "Trained on Neuropixels recordings high-passed at 150 Hz with median subtraction; "
                       "preprocess alike.",
        "architecture": {"name": "per-frame-unet", "hyperparameters": network.hyperparameters},
        "sampling_frequency_hz": SAMPLING_FREQUENCY_HZ,
        "window_ms": {"before": context_ms, "after": context_ms},
        "geometry": {"probe_families": ["neuropixels-1.0"], "min_channels": num_channels,
                     "max_channels": num_channels},
        "grid": "checkerboard",
        "training_data": source,
        "metrics": {},
        "licence": LICENCE,
    }


def convert_allen_h5(h5_path: str | Path, output_folder: str | Path, model_id: str = "deepinterpolation-allen-np1",
                     version: str = "1.0.0", omission: int = 1, num_channels: int = ALLEN_CHANNELS) -> Path:
    """Convert the Allen Neuropixels DeepInterpolation model into ``weights.safetensors`` + ``card.json``.

    Parameters
    ----------
    h5_path : str or Path
        The Keras ``.h5`` of ``unet_single_ephys_1024`` (the Allen Institute's
        ``2020_02_29_15_28_unet_single_ephys_1024_mean_squared_error-1050.h5``).
    output_folder : str or Path
        Created if needed; ``deepinterpolate(recording, output_folder / "weights.safetensors")`` then uses it.
    model_id, version : str
        Of the model card.
    omission : int, default: 1
        Frames the model was trained to leave out on each side (the Allen model's is 1).
    num_channels : int, default: 384
        Channels the model was trained on (rows of its checkerboard); recordings must have as many.

    Returns
    -------
    Path
        The written ``weights.safetensors``.

    Raises
    ------
    DlsortInputError
        A bad model id or version, or a file that is not the Allen model (``read_keras_layers``,
        ``unet_from_keras_layers``).
    """
    from dlsort.models.catalog import check_model_name, validate_card
    from dlsort.models.download import sha256_of
    from dlsort.training.trainer import write_model

    check_model_name(model_id, version)
    h5_path = Path(h5_path)
    network = unet_from_keras_layers(read_keras_layers(h5_path), omission, str(h5_path))
    source = (f"the Allen Institute's DeepInterpolation Neuropixels model {h5_path.name} "
              f"(sha256 {sha256_of(h5_path)}), trained on Allen Brain Observatory Neuropixels recordings "
              "(Lecoq et al., Nature Methods 2021), converted from Keras by dlsort")
    card = validate_card(allen_card(network, model_id, version, source, num_channels), "converted Allen model card")
    return write_model(Path(output_folder), network, card)
