"""Networks of dlsort: plain torch modules, no SpikeInterface imports.

Each network is built from the ``architecture`` of its model card (``build_network``), so a
weight file and its card always describe the same module.
"""

from dlsort.nn.autoencoder import NeighbourhoodAutoencoder
from dlsort.nn.denoiser import SingleChannelDenoiser
from dlsort.nn.detector import NeighbourhoodDetector
from dlsort.nn.interpolator import BlindSpotInterpolator
from dlsort.nn.registry import ARCHITECTURES, build_network
from dlsort.nn.unet import PerFrameUNet

__all__ = ["ARCHITECTURES", "BlindSpotInterpolator", "NeighbourhoodAutoencoder", "NeighbourhoodDetector",
           "PerFrameUNet", "SingleChannelDenoiser", "build_network"]
