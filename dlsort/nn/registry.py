"""Build a network from a model card's ``architecture`` and check that weights fit it."""

from __future__ import annotations

from torch import nn

from dlsort.errors import DlsortInputError
from dlsort.nn.autoencoder import NeighbourhoodAutoencoder
from dlsort.nn.denoiser import SingleChannelDenoiser
from dlsort.nn.detector import NeighbourhoodDetector
from dlsort.nn.interpolator import BlindSpotInterpolator
from dlsort.nn.unet import PerFrameUNet

ARCHITECTURES: dict[str, type[nn.Module]] = {
    "single-channel-denoiser": SingleChannelDenoiser,
    "neighbourhood-detector": NeighbourhoodDetector,
    "blind-spot-interpolator": BlindSpotInterpolator,
    "per-frame-unet": PerFrameUNet,
    "neighbourhood-autoencoder": NeighbourhoodAutoencoder,
}


def build_network(architecture: dict, state_dict: dict | None = None) -> nn.Module:
    """Instantiate ``architecture["name"]`` with its hyper-parameters and optionally load weights.

    Parameters
    ----------
    architecture : dict
        ``{"name": ..., "hyperparameters": {...}}`` from a model card.
    state_dict : dict or None
        Tensors to load (from safetensors); they must match the architecture exactly.

    Returns
    -------
    torch.nn.Module
        In evaluation mode.

    Raises
    ------
    DlsortInputError
        Unknown architecture, bad hyper-parameters, or weights that do not fit them.
    """
    name = architecture.get("name")
    if name not in ARCHITECTURES:
        raise DlsortInputError(f"unknown network architecture {name!r}; dlsort knows {sorted(ARCHITECTURES)}")
    hyperparameters = {
        key: tuple(value) if isinstance(value, list) else value
        for key, value in architecture.get("hyperparameters", {}).items()
    }
    try:
        network = ARCHITECTURES[name](**hyperparameters)
    except (TypeError, ValueError) as error:
        raise DlsortInputError(f"bad hyper-parameters for {name}: {error}") from error
    if state_dict is not None:
        expected = {key: tuple(tensor.shape) for key, tensor in network.state_dict().items()}
        given = {key: tuple(tensor.shape) for key, tensor in state_dict.items()}
        if expected != given:
            missing = sorted(set(expected) - set(given))
            wrong = sorted(key for key in set(expected) & set(given) if expected[key] != given[key])
            raise DlsortInputError(
                f"the weights do not fit the card's {name} architecture {hyperparameters}: "
                f"missing {missing}, unexpected {sorted(set(given) - set(expected))}, wrong shape {wrong}"
            )
        network.load_state_dict(state_dict)
    return network.eval()
