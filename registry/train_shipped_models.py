"""Train the networks shipped inside the dlsort wheel and list them in registry/index.json.

Usage (from the repository root, with ../shared/data or DLSORT_SHARED_DATA holding the
Neuropixels noise statistics)::

    PYTHONPATH=. python registry/train_shipped_models.py [--only denoiser-generic]

Each model is trained with ``dlsort train`` (fixed seeds, so a re-run reproduces the weights up
to floating-point non-determinism), then copied to ``dlsort/models/embedded/`` with its card in
``registry/cards/`` and its catalog entry (sha256, size) in ``registry/index.json``. A model whose
``id@version`` is already in the catalog is refused: bump its version below to re-train it.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SHIPPED = {
    "denoiser-generic": ["denoiser", "--id", "denoiser-generic", "--version", "1.0.0", "--examples", "200000",
                         "--epochs", "30", "--seed", "0", "--device", "cpu", "--quiet"],
    "detector-generic": ["detector", "--id", "detector-generic", "--version", "1.2.0", "--patches", "300",
                         "--examples", "150000", "--epochs", "20", "--seed", "0", "--device", "cpu", "--quiet"],
    "deepinterpolation-np1": ["deepinterpolation", "--id", "deepinterpolation-np1", "--version", "1.0.0", "--probes",
                              "np1", "--windows", "1000", "--epochs", "20", "--seed", "0", "--device", "cpu",
                              "--quiet"],
    "deepinterpolation-generic": ["deepinterpolation", "--id", "deepinterpolation-generic", "--version", "1.0.0",
                                  "--probes", "np1", "np2", "staggered", "--windows", "1200", "--epochs", "15",
                                  "--seed", "0", "--device", "cpu", "--quiet"],
    "autoencoder-generic": ["autoencoder", "--id", "autoencoder-generic", "--version", "1.1.0", "--scenes", "300",
                            "--examples", "100000", "--invariance-weight", "1.0", "--epochs", "20", "--seed", "0",
                            "--device", "cpu", "--quiet"],
}


def main(argv: list[str] | None = None) -> int:
    """Train every shipped model (or ``--only`` one) and embed it."""
    from dlsort.cli import main as dlsort_main
    from dlsort.models.publish import embed

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=sorted(SHIPPED))
    args = parser.parse_args(argv)
    for model_id, train_args in SHIPPED.items():
        if args.only not in (None, model_id):
            continue
        with tempfile.TemporaryDirectory() as tmp:
            if dlsort_main(["train", *train_args, "--output", tmp]) != 0:
                return 1
            entry = embed(Path(tmp), REPO_ROOT / "registry", REPO_ROOT / "dlsort" / "models" / "embedded")
        print(f"embedded {entry['id']}@{entry['version']}: {entry['size_bytes']} bytes, sha256 {entry['sha256']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
