"""Converting the Allen DeepInterpolation Neuropixels model (Keras .h5) into the per-frame U-Net, checked against Keras.

No Allen file is downloaded: the tests write ``.h5`` files with the layer names and shapes of
``unet_single_ephys_1024`` and random weights, with h5py in Keras 2's layout (as the published
file was saved, by tf.keras 2) and with Keras 3's own ``model.save``, and compare the converted
network with Keras 3 (torch backend, the ``dev`` extra) running the same weights.
"""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch
from conftest import saved_recording

from dlsort.cli import main
from dlsort.errors import DlsortInputError
from dlsort.geometry import checkerboard_grid
from dlsort.groundtruth import make_probe
from dlsort.models import load
from dlsort.models.allen import convert_allen_h5
from dlsort.nn import build_network
from dlsort.preprocessing.deepinterpolation import deepinterpolate

ENCODER_KERNELS = [(2, 2), (3, 1), (3, 1), (3, 1), (3, 1)]


def keras_name(kind: str, index: int) -> str:
    """tf.keras 2's automatic layer name: the kind, then ``_1``, ``_2``... for later layers of that kind."""
    return kind if index == 0 else f"{kind}_{index}"


# unet_single_ephys_1024 names none of its layers: these are the names tf.keras 2 gave them, in the order it lists them
CONVOLUTIONS = [keras_name("conv2d", i) for i in range(10)]
KERAS2_LAYERS = ["input_1",
                 *[name for i in range(4) for name in (keras_name("conv2d", i), keras_name("max_pooling2d", i))],
                 "conv2d_4",
                 *[name for i in range(4) for name in (keras_name("up_sampling2d", i), keras_name("concatenate", i),
                                                       keras_name("conv2d", 5 + i))],
                 "conv2d_9"]


@pytest.fixture(scope="module")
def keras(tmp_path_factory):
    """Keras 3 on the torch backend, its configuration file kept out of the home folder."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KERAS_BACKEND", "torch")
        patch.setenv("KERAS_HOME", str(tmp_path_factory.mktemp("keras_home")))
        import keras

        assert keras.backend.backend() == "torch"
        yield keras


def keras_unet(keras, rows: int, frames: int, filters: int):
    """unet_single_ephys_1024 as a Keras functional model, from the architecture table, with tf.keras 2's names."""
    layers = keras.layers
    names = iter(CONVOLUTIONS)

    def convolution(x, width, kernel, activation="relu"):
        return layers.Conv2D(width, kernel, activation=activation, padding="same", name=next(names))(x)

    image = keras.Input((rows, 2, frames), name="input_1")
    x, skips = image, []
    for level, kernel in enumerate(ENCODER_KERNELS):
        x = convolution(x, filters * 2 ** level, kernel)
        if level < 4:
            skips.append(x)
            x = layers.MaxPooling2D((2, 2) if level == 0 else (2, 1), name=keras_name("max_pooling2d", level))(x)
    for i, level in enumerate(reversed(range(4))):
        x = layers.UpSampling2D((2, 2) if level == 0 else (2, 1), name=keras_name("up_sampling2d", i))(x)
        x = layers.Concatenate(name=keras_name("concatenate", i))([x, skips[level]])
        x = convolution(x, filters * 2 ** level, ENCODER_KERNELS[level])
    return keras.Model(image, convolution(x, 1, (1, 1), activation=None))


def random_weights(model, seed: int = 0) -> dict[str, list[np.ndarray]]:
    """He-scaled random kernels and small random biases for every convolution of ``model``, set in it."""
    rng = np.random.default_rng(seed)
    weights = {}
    for name in CONVOLUTIONS:
        kernel_shape, bias_shape = (tuple(weight.shape) for weight in model.get_layer(name).weights)
        fan_in = np.prod(kernel_shape[:3])
        weights[name] = [(rng.normal(size=kernel_shape) * np.sqrt(2 / fan_in)).astype("float32"),
                         (0.1 * rng.normal(size=bias_shape)).astype("float32")]
        model.get_layer(name).set_weights(weights[name])
    return weights


def write_keras2_h5(path, weights: dict[str, list[np.ndarray]], layer_names: list[str]) -> None:
    """A whole-model .h5 in Keras 2's layout (what tf.keras 2 ``model.save`` wrote), with h5py."""
    with h5py.File(path, "w") as file:
        file.attrs["keras_version"], file.attrs["backend"] = b"2.4.0", b"tensorflow"
        file.attrs["model_config"] = json.dumps({"class_name": "Functional", "config": {"name": "model"}}).encode()
        root = file.create_group("model_weights")
        root.attrs["layer_names"] = np.array([name.encode() for name in layer_names])
        root.attrs["keras_version"], root.attrs["backend"] = b"2.4.0", b"tensorflow"
        for name in layer_names:
            group = root.create_group(name)
            weight_names = [f"{name}/{kind}:0" for kind in ("kernel", "bias")[:len(weights.get(name, []))]]
            group.attrs["weight_names"] = np.array([weight.encode() for weight in weight_names]) if weight_names \
                else np.zeros(0)
            for weight_name, value in zip(weight_names, weights.get(name, [])):
                group.create_dataset(weight_name, data=value)
        file.create_dataset("optimizer_weights/RMSprop/iter:0", data=np.int64(105_000))


def context_images(grid_traces: np.ndarray, frames: list[int], pre: int, post: int, omission: int) -> np.ndarray:
    """The U-Net's input for each of ``frames``: its context frames, earliest first, as the channels of the image.

    Returns
    -------
    np.ndarray
        (frames, rows, columns, pre + post), Keras' channels-last layout.
    """
    windows = [[*range(t - omission - pre, t - omission), *range(t + omission + 1, t + omission + post + 1)]
               for t in frames]
    return np.stack([grid_traces[window].transpose(1, 2, 0) for window in windows])


@pytest.fixture(scope="module")
def tiny_allen(keras, tmp_path_factory):
    """A narrow unet_single_ephys_1024 (8 filters, 6 + 6 frames, 32 rows) in Keras with random weights."""
    model = keras_unet(keras, rows=32, frames=12, filters=8)
    return model, random_weights(model), tmp_path_factory.mktemp("tiny_allen")


@pytest.mark.parametrize("writer", ["keras 2 layout, h5py", "keras 3 model.save"])
def test_converted_unet_predicts_what_keras_predicts(tiny_allen, tmp_path, writer):
    model, weights, _ = tiny_allen
    h5_path = tmp_path / "model.h5"
    if writer == "keras 3 model.save":
        model.save(h5_path)
    else:
        write_keras2_h5(h5_path, weights, KERAS2_LAYERS)
    weights_path = convert_allen_h5(h5_path, tmp_path / "converted", num_channels=32)
    tensors, card, _ = load(weights_path, task="deepinterpolation")
    network = build_network(card["architecture"], tensors)
    assert card["architecture"]["hyperparameters"] == {"pre_frames": 6, "post_frames": 6, "omission": 1, "filters": 8}

    traces = np.random.default_rng(1).normal(size=(60, 32)).astype("float32")
    grid = checkerboard_grid(32)
    frames = list(range(7, 53))  # every frame whose context lies inside the traces
    expected = model.predict(context_images(grid.to_grid(traces), frames, 6, 6, 1), verbose=0)[..., 0]
    with torch.no_grad():
        predicted = network(torch.as_tensor(grid.to_grid(traces))[None], torch.as_tensor(grid.mask))[0].numpy()
    difference = np.abs(grid.from_grid(predicted[frames]) - grid.from_grid(expected)).max()
    assert difference < 1e-4, difference
    assert np.abs(grid.from_grid(expected)).mean() > 0.1  # the comparison is not of zeros

    # the same through the lazy preprocessor: checkerboard grid from the card, normalisation, margins
    recording = saved_recording(tmp_path, traces * 3.0 + 1.0, make_probe("np1", 32).contact_positions)
    denoised = deepinterpolate(recording, weights_path, mean=1.0, std=3.0).get_traces(start_frame=7, end_frame=53)
    assert np.abs((denoised - 1.0) / 3.0 - grid.from_grid(expected)).max() < 1e-4


def test_full_size_allen_file_converts_to_a_checkerboard_model_that_matches_keras(keras, tmp_path):
    model = keras_unet(keras, rows=384, frames=60, filters=64)
    h5_path = tmp_path / "2020_02_29_15_28_unet_single_ephys_1024_mean_squared_error-1050.h5"
    write_keras2_h5(h5_path, random_weights(model), KERAS2_LAYERS)
    weights_path = convert_allen_h5(h5_path, tmp_path / "allen")
    tensors, card, _ = load(weights_path, task="deepinterpolation")
    assert card["grid"] == "checkerboard" and card["sampling_frequency_hz"] == 30_000.0
    assert card["geometry"] == {"probe_families": ["neuropixels-1.0"], "min_channels": 384, "max_channels": 384}
    assert card["architecture"] == {"name": "per-frame-unet", "hyperparameters": {"pre_frames": 30, "post_frames": 30,
                                                                                   "omission": 1, "filters": 64}}
    assert h5_path.name in card["training_data"] and "non-commercial" in card["licence"]
    network = build_network(card["architecture"], tensors)

    traces = np.random.default_rng(2).normal(size=(66, 384)).astype("float32")
    grid = checkerboard_grid(384)
    images = context_images(grid.to_grid(traces), [31, 33, 34], 30, 30, 1)
    expected = model.predict(images, verbose=0)[..., 0]
    with torch.no_grad():  # the U-Net on the same images (unfolding the windows is checked on the narrow one)
        predicted = network.predict_frames(torch.as_tensor(images.transpose(0, 3, 1, 2))).numpy()
    assert np.abs(grid.from_grid(predicted) - grid.from_grid(expected)).max() < 1e-4
    assert np.abs(grid.from_grid(expected)).mean() > 0.1

    recording = saved_recording(tmp_path, traces[:, :32], make_probe("np1", 32).contact_positions)
    with pytest.raises(DlsortInputError, match="reads 384 channels on a checkerboard .* the recording has 32"):
        deepinterpolate(recording, weights_path, mean=0.0, std=1.0)


def damage(h5_path, how: str) -> None:
    """Alter a Keras 2 layout file written by ``write_keras2_h5``."""
    with h5py.File(h5_path, "r+") as file:
        layers = file["model_weights"]
        if how == "missing weights":
            del layers["conv2d_3/conv2d_3/kernel:0"]
        elif how == "missing layer":
            del layers["conv2d_7"]
        elif how == "wrong shape":
            del layers["conv2d_8/conv2d_8/kernel:0"]
            layers.create_dataset("conv2d_8/conv2d_8/kernel:0", data=np.zeros((3, 1, 24, 8), "float32"))


@pytest.mark.parametrize(("how", "message"), [
    ("not hdf5", "is not an HDF5 file"),
    ("not keras", "is HDF5 but not a Keras model"),
    ("missing weights", r"lists layer conv2d_3 but lacks its weights \['conv2d_3/kernel:0'\]: the file is truncated"),
    ("missing layer", "lists layer conv2d_7 but lacks its group"),
    ("wrong shape", r"layer conv2d_8 has a kernel of shape \(3, 1, 24, 8\).* needs \(2, 2, 24, 8\)"),
    ("another network", "is not unet_single_ephys_1024: it has 2 layers with weights"),
])
def test_files_that_are_not_the_allen_model_are_refused(tiny_allen, tmp_path, how, message):
    _, weights, _ = tiny_allen
    h5_path = tmp_path / "model.h5"
    if how == "not hdf5":
        h5_path.write_text("<html>Sign in to SharePoint</html>")
    elif how == "not keras":
        with h5py.File(h5_path, "w") as file:
            file.create_dataset("data", data=np.zeros((10, 384, 2), "float32"))
    elif how == "another network":
        dense = {"dense": [np.zeros((60, 128), "float32"), np.zeros(128, "float32")],
                 "dense_1": [np.zeros((128, 1), "float32"), np.zeros(1, "float32")]}
        write_keras2_h5(h5_path, dense, ["input_1", "flatten", "dense", "dense_1"])
    else:
        write_keras2_h5(h5_path, weights, KERAS2_LAYERS)
        damage(h5_path, how)
    with pytest.raises(DlsortInputError, match=message):
        convert_allen_h5(h5_path, tmp_path / "converted", num_channels=32)
    assert not (tmp_path / "converted").exists()


def test_convert_allen_command(tiny_allen, tmp_path, capsys):
    _, weights, _ = tiny_allen
    h5_path = tmp_path / "model.h5"
    write_keras2_h5(h5_path, weights, KERAS2_LAYERS)
    assert main(["models", "convert-allen", str(h5_path), "--output", str(tmp_path / "out"), "--id", "allen-test"]) == 0
    assert "allen-test@1.0.0" in capsys.readouterr().out
    card = json.loads((tmp_path / "out" / "card.json").read_text())
    assert card["id"] == "allen-test" and card["grid"] == "checkerboard"
    assert main(["models", "convert-allen", str(tmp_path / "out" / "card.json"), "--output", str(tmp_path)]) == 2
    assert "is not an HDF5 file" in capsys.readouterr().err
