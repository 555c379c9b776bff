"""``dlsort train denoiser``: train a waveform denoiser from scratch or fine-tune one on a recording."""

from __future__ import annotations

import argparse
from pathlib import Path

from dlsort.errors import DlsortInputError

SCRATCH_EXAMPLES, SCRATCH_EPOCHS = 200_000, 30
FINE_TUNE_EXAMPLES, FINE_TUNE_EPOCHS = 50_000, 8


def _train_denoiser(args: argparse.Namespace) -> int:
    import torch

    from dlsort.cli import read_recording
    from dlsort.models import load
    from dlsort.nn import build_network
    from dlsort.training.denoiser import denoiser_card, train_denoiser, write_model
    from dlsort.training.synthesis import TemporalNoise, recording_noise
    from dlsort.validation import resolve_device

    device = resolve_device(args.device)
    if (Path(args.output) / "weights.safetensors").exists() and not args.overwrite:
        raise DlsortInputError(f"{args.output} already holds a model; choose another folder or pass --overwrite")
    torch.set_num_threads(max(1, args.threads))
    start_from, base = None, args.start_from
    if args.recording is not None:
        noise = recording_noise(read_recording(Path(args.recording)), args.minutes, seed=args.seed)
        base = base or "denoiser-generic"
        training_data = f"synthetic spikes in the temporal noise of {Path(args.recording).name}"
    else:
        try:
            noise = TemporalNoise.from_shared_data()
        except FileNotFoundError as error:
            raise DlsortInputError(f"{error} (or pass --recording to train on a recording's noise)") from error
        training_data = f"synthetic spikes in {noise.source}"
    fine_tuning = base is not None
    examples = args.examples or (FINE_TUNE_EXAMPLES if fine_tuning else SCRATCH_EXAMPLES)
    epochs = args.epochs or (FINE_TUNE_EPOCHS if fine_tuning else SCRATCH_EPOCHS)
    if fine_tuning:
        tensors, card, model_file = load(base, task="denoiser")
        start_from = build_network(card["architecture"], tensors)
        training_data += f", fine-tuned from {model_file.id}"
        window = card["window_ms"]
        ms_before, ms_after = window["before"], window["after"]
    else:
        ms_before, ms_after = args.ms_before, args.ms_after
    network, report, metrics = train_denoiser(
        noise, start_from=start_from, num_examples=examples, ms_before=ms_before, ms_after=ms_after,
        seed=args.seed, device=device, max_epochs=epochs, max_seconds=args.max_seconds,
        progress_bar=not args.quiet,
    )
    card = denoiser_card(network, args.id, args.version, training_data, metrics, report, ms_before, ms_after)
    weights = write_model(Path(args.output), network.cpu(), card)
    overall = metrics[-1]
    print(
        f"dlsort: {args.id}@{args.version} written to {weights.parent} ({report.epochs} epochs, "
        f"{report.seconds:.0f} s); held-out MSE {overall['mse_network']:.3f} vs {overall['mse_raw']:.3f} raw and "
        f"{overall['mse_pca']:.3f} temporal PCA"
    )
    return 0


def add_train_parser(commands) -> None:
    """Add ``dlsort train`` and its subcommands to the ``dlsort`` parser's subparsers."""
    train = commands.add_parser("train", help="train or fine-tune networks")
    sub = train.add_subparsers(dest="train_command", required=True)
    denoiser = sub.add_parser(
        "denoiser",
        help="train the waveform denoiser (from scratch on the shared Neuropixels noise, or fine-tuned on a "
             "recording's noise)",
    )
    denoiser.add_argument("-o", "--output", required=True, help="model folder to write (weights + card.json)")
    denoiser.add_argument("--recording", help="fine-tune on this recording's noise (any `dlsort sort` input)")
    denoiser.add_argument("--from", dest="start_from",
                          help="model to start from (default with --recording: denoiser-generic)")
    denoiser.add_argument("--minutes", type=float, default=10.0,
                          help="noise is measured on 30 random 1-s chunks of the first MINUTES (default 10)")
    denoiser.add_argument("--examples", type=int, help=f"synthetic examples (default {SCRATCH_EXAMPLES}, "
                          f"{FINE_TUNE_EXAMPLES} when fine-tuning)")
    denoiser.add_argument("--epochs", type=int, help=f"at most this many epochs (default {SCRATCH_EPOCHS}, "
                          f"{FINE_TUNE_EPOCHS} when fine-tuning)")
    denoiser.add_argument("--max-seconds", type=float, help="time budget; stops after the epoch that exceeds it")
    denoiser.add_argument("--ms-before", type=float, default=1.0)
    denoiser.add_argument("--ms-after", type=float, default=1.5)
    denoiser.add_argument("--seed", type=int, default=0)
    denoiser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    denoiser.add_argument("--threads", type=int, default=2, help="CPU threads for torch (default 2)")
    denoiser.add_argument("--id", default="denoiser-custom", help="model id written to the card")
    denoiser.add_argument("--version", default="0.1.0", help="model version written to the card")
    denoiser.add_argument("--overwrite", action="store_true", help="replace a model already in --output")
    denoiser.add_argument("--quiet", action="store_true", help="no progress bar")
    denoiser.set_defaults(handler=_train_denoiser)

