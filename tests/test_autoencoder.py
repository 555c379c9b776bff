"""The neighbourhood autoencoder: network, training, model card."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dlsort.errors import DlsortInputError
from dlsort.nn import NeighbourhoodAutoencoder, build_network


def _network(seed: int = 0, **hyperparameters) -> NeighbourhoodAutoencoder:
    torch.manual_seed(seed)
    return NeighbourhoodAutoencoder(**hyperparameters).eval()


def _inputs(batch: int = 4, slots: int = 6, samples: int = 75, seed: int = 0):
    rng = np.random.default_rng(seed)
    snippets = torch.as_tensor(rng.normal(size=(batch, slots, samples)).astype("float32"))
    positions = torch.as_tensor(rng.uniform(-60, 60, size=(batch, slots, 2)).astype("float32"))
    positions[:, 0] = 0.0
    return snippets, positions, torch.ones(batch, slots)


def test_embedding_and_reconstruction_shapes():
    network = _network(embedding_dim=6)
    snippets, positions, mask = _inputs()
    assert network.encode(snippets, positions, mask).shape == (4, 6)
    reconstruction = network(snippets, positions, mask)
    assert reconstruction.shape == snippets.shape
    mask[:, 3:] = 0.0
    assert torch.all(network(snippets, positions, mask)[:, 3:] == 0.0)  # nothing decoded on padding


def test_padding_and_slot_order_do_not_change_the_embedding():
    network = _network()
    snippets, positions, mask = _inputs()
    mask[:, 4:] = 0.0
    reference = network.encode(snippets, positions, mask)
    garbage = snippets.clone()
    garbage[:, 4:] = 100.0
    moved = positions.clone()
    moved[:, 4:] = 500.0
    assert torch.allclose(network.encode(garbage, moved, mask), reference, atol=1e-5)
    narrow = network.encode(snippets[:, :4], positions[:, :4], mask[:, :4])  # the same channels, fewer slots
    assert torch.allclose(narrow, reference, atol=1e-5)
    order = [0, 2, 3, 1, 5, 4]
    assert torch.allclose(network.encode(snippets[:, order], positions[:, order], mask[:, order]), reference,
                          atol=1e-5)
    real = snippets.clone()
    real[:, 1] += 1.0  # a real channel does count
    assert not torch.allclose(network.encode(real, positions, mask), reference, atol=1e-3)


def test_bad_shapes_and_hyperparameters_are_refused():
    network = _network()
    snippets, positions, mask = _inputs(samples=60)
    with pytest.raises(DlsortInputError, match=r"expected snippets \(batch, slots, 75\)"):
        network.encode(snippets, positions, mask)
    snippets, positions, mask = _inputs()
    with pytest.raises(DlsortInputError, match="positions"):
        network(snippets, positions[..., :1], mask)
    with pytest.raises(DlsortInputError, match="bad hyper-parameters"):
        build_network({"name": "neighbourhood-autoencoder", "hyperparameters": {"embedding_dim": 0}})


def test_a_card_builds_the_network_and_refuses_weights_that_do_not_fit():
    network = _network(embedding_dim=5, hidden=32)
    architecture = {"name": "neighbourhood-autoencoder", "hyperparameters": dict(network.hyperparameters)}
    built = build_network(architecture, network.state_dict())
    snippets, positions, mask = _inputs()
    assert torch.allclose(built.encode(snippets, positions, mask), network.encode(snippets, positions, mask))
    wrong = {"name": "neighbourhood-autoencoder", "hyperparameters": {**network.hyperparameters, "embedding_dim": 8}}
    with pytest.raises(DlsortInputError, match="do not fit"):
        build_network(wrong, network.state_dict())
