"""Train the networks shipped inside the dlsort wheel and list them in registry/index.json.

Usage (from the repository root, with ../shared/data or DLSORT_SHARED_DATA holding the
Neuropixels noise statistics)::

    PYTHONPATH=. python registry/train_shipped_models.py [--only denoiser-generic]

Each model is trained with ``dlsort train`` (fixed seeds, so a re-run reproduces the weights up
to floating-point non-determinism), then copied to ``dlsort/models/embedded/`` with its card in
``registry/cards/`` and its catalog entry (sha256, size) in ``registry/index.json``. A model whose
``id@version`` is already in the catalog is refused: bump its version below to re-train it.
Models in ``DERIVED`` are not trained: they ship an embedded version's weights under a new version
whose card changes architecture hyper-parameters that hold no weights (``--only ID@VERSION`` embeds
one of them alone).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SHIPPED = {
    "denoiser-generic": ["denoiser", "--id", "denoiser-generic", "--version", "1.0.0", "--examples", "200000",
                         "--epochs", "30", "--seed", "0", "--device", "cpu", "--quiet"],
    "detector-generic": ["detector", "--id", "detector-generic", "--version", "1.2.0", "--patches", "300",
                         "--examples", "150000", "--epochs", "20", "--seed", "0", "--device", "cpu", "--quiet"],
    # 1.1.0 (1.0.0's weights, DERIVED below) with a two-layer correction of its inner rows, trained on 1.0.0's data
    "deepinterpolation-np1": ["deepinterpolation", "--id", "deepinterpolation-np1", "--version", "2.0.0", "--from",
                              "deepinterpolation-np1@1.1.0", "--readout-layers", "3", "--probes", "np1", "--windows",
                              "1000", "--epochs", "20", "--seed", "0", "--device", "cpu", "--quiet"],
    "deepinterpolation-generic": ["deepinterpolation", "--id", "deepinterpolation-generic", "--version", "1.0.0",
                                  "--probes", "np1", "np2", "staggered", "--windows", "1200", "--epochs", "15",
                                  "--seed", "0", "--device", "cpu", "--end-rows", "zeros", "--quiet"],
    "autoencoder-generic": ["autoencoder", "--id", "autoencoder-generic", "--version", "1.1.0", "--scenes", "300",
                            "--examples", "100000", "--invariance-weight", "1.0", "--epochs", "20", "--seed", "0",
                            "--device", "cpu", "--quiet"],
}
MIRRORED_ENDS = ("The read-out sees the rows beyond each end of the grid as the rows inside mirrored (end_rows "
                 "'reflect'); weights and metrics of {source}, which saw empty rows there.")
# id@version -> (the embedded id@version whose weights it ships, hyper-parameters its card changes, note added to the
# card's description)
DERIVED = {
    "deepinterpolation-np1@1.1.0": ("deepinterpolation-np1@1.0.0", {"end_rows": "reflect"}, MIRRORED_ENDS),
    "deepinterpolation-generic@1.1.0": ("deepinterpolation-generic@1.0.0", {"end_rows": "reflect"}, MIRRORED_ENDS),
}
EMBEDDED = REPO_ROOT / "dlsort" / "models" / "embedded"


def derive(ref: str, folder: Path) -> None:
    """Write ``DERIVED[ref]``'s model folder (weights and card) into ``folder``."""
    source, hyperparameters, note = DERIVED[ref]
    name = source.replace("@", "-")
    card = json.loads((REPO_ROOT / "registry" / "cards" / f"{name}.json").read_text())
    card["version"] = ref.split("@")[1]
    card["architecture"]["hyperparameters"].update(hyperparameters)
    card["description"] += " " + note.format(source=source)
    shutil.copyfile(EMBEDDED / f"{name}.safetensors", folder / "weights.safetensors")
    (folder / "card.json").write_text(json.dumps(card, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    """Train every shipped model (or ``--only`` one), derive the ``DERIVED`` ones, and embed them."""
    from dlsort.cli import main as dlsort_main
    from dlsort.models.publish import embed

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=sorted(SHIPPED) + sorted(DERIVED))
    args = parser.parse_args(argv)
    for model in [*SHIPPED, *DERIVED]:
        if args.only not in (None, model):
            continue
        with tempfile.TemporaryDirectory() as tmp:
            if model in DERIVED:
                derive(model, Path(tmp))
            elif dlsort_main(["train", *SHIPPED[model], "--output", tmp]) != 0:
                return 1
            entry = embed(Path(tmp), REPO_ROOT / "registry", EMBEDDED)
        print(f"embedded {entry['id']}@{entry['version']}: {entry['size_bytes']} bytes, sha256 {entry['sha256']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
