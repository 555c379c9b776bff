"""``dlsort train denoiser|detector|deepinterpolation|autoencoder``: train a network, or fine-tune one."""

from __future__ import annotations

import argparse
from pathlib import Path

from dlsort.errors import DlsortInputError

# Training sizes from scratch and when fine-tuning (--recording or --from), per network.
SIZES = {
    "denoiser": {"scratch": dict(examples=200_000, epochs=30), "fine-tune": dict(examples=50_000, epochs=8)},
    "detector": {"scratch": dict(patches=300, examples=150_000, epochs=20),
                 "fine-tune": dict(patches=60, examples=50_000, epochs=8)},
    "deepinterpolation": {"scratch": dict(windows=1000, epochs=20), "fine-tune": dict(windows=400, epochs=8)},
    "autoencoder": {"scratch": dict(scenes=300, examples=200_000, epochs=20),
                    "fine-tune": dict(scenes=60, examples=50_000, epochs=8)},
}
# Tasks whose ``--recording`` alone fine-tunes the shipped ``<task>-generic`` model (the others train from scratch).
FINE_TUNES_GENERIC = ("denoiser", "detector", "autoencoder")
BOOTSTRAP_MINUTES = 2.0
NOISE_RECORDING_HELP = ("fine-tune on this recording's noise (and, for the detector, its probe); any `dlsort sort` "
                        "input")
SIZE_HELP = {"patches": "synthetic 1-s probe patches", "examples": "training examples",
             "epochs": "at most this many epochs", "windows": "256-frame windows of the recording",
             "scenes": "synthetic 1-s probe patches with their units' templates"}


def _sizes(args: argparse.Namespace, task: str, fine_tuning: bool) -> dict:
    """The training sizes: the command line's, else the task's defaults."""
    defaults = SIZES[task]["fine-tune" if fine_tuning else "scratch"]
    return {key: getattr(args, key) or value for key, value in defaults.items()}


def shared_noise(model):
    """``model.from_shared_data()`` (a ``TemporalNoise`` or ``SpatialNoise``), or an error saying how to do without."""
    try:
        return model.from_shared_data()
    except FileNotFoundError as error:
        raise DlsortInputError(f"{error} (or pass --recording to train on a recording's noise)") from error


def _setup(args: argparse.Namespace) -> str:
    """Check the model name and the output folder, set torch's threads; returns the device."""
    import torch

    from dlsort.models.catalog import check_model_name
    from dlsort.validation import resolve_device

    check_model_name(args.id, args.version)
    device = resolve_device(args.device)
    if (Path(args.output) / "weights.safetensors").exists() and not args.overwrite:
        raise DlsortInputError(f"{args.output} already holds a model; choose another folder or pass --overwrite")
    torch.set_num_threads(max(1, args.threads))
    return device


def _prepare(args: argparse.Namespace, task: str):
    """Shared set-up: device, threads, output folder, noise models, the model to start from.

    Returns
    -------
    device : str
    temporal : TemporalNoise
    spatial : SpatialNoise or None
        Fitted to the recording, or None without ``--recording`` (the caller loads the shared one).
    locations : np.ndarray or None
        The recording's channel locations.
    training_data : str
    start : tuple or None
        ``(network, card, model_file)`` of the model to fine-tune, or None.
    """
    from dlsort.cli import read_recording
    from dlsort.models import load
    from dlsort.nn import build_network
    from dlsort.training.noise import TemporalNoise, recording_noise

    device = _setup(args)
    base, spatial, locations = args.start_from, None, None
    if args.recording is not None:
        noise = recording_noise(read_recording(Path(args.recording)), args.minutes, seed=args.seed)
        temporal, spatial, locations = noise.temporal, noise.spatial, noise.locations
        if task in FINE_TUNES_GENERIC:
            base = base or f"{task}-generic"
        training_data = f"synthetic spikes in the noise of {Path(args.recording).name}"
    else:
        temporal = shared_noise(TemporalNoise)
        training_data = f"synthetic spikes in {temporal.source}"
    start = None
    if base is not None:
        tensors, card, model_file = load(base, task=task)
        start = (build_network(card["architecture"], tensors), card, model_file)
        training_data += f", fine-tuned from {model_file.id}"
    return device, temporal, spatial, locations, training_data, start


def _train_denoiser(args: argparse.Namespace) -> int:
    from dlsort.training.denoiser import denoiser_card, train_denoiser
    from dlsort.training.trainer import write_model

    device, noise, _, _, training_data, start = _prepare(args, "denoiser")
    sizes = _sizes(args, "denoiser", start is not None)
    if start is not None:
        window = start[1]["window_ms"]
        ms_before, ms_after = window["before"], window["after"]
    else:
        ms_before, ms_after = args.ms_before, args.ms_after
    templates, waveforms = _bootstrap(args), None
    if templates is not None:
        from dlsort.training.bootstrap import bootstrap_waveforms

        waveforms = bootstrap_waveforms(templates, ms_before, ms_after)
        training_data += (f"; half the examples with {len(waveforms)} waveforms of the {len(templates.templates)} "
                          f"units of a {args.bootstrap_minutes:g}-min bootstrap sort of it")
    network, report, metrics = train_denoiser(
        noise, start_from=start[0] if start else None, num_examples=sizes["examples"],
        ms_before=ms_before, ms_after=ms_after, seed=args.seed, device=device, max_epochs=sizes["epochs"],
        max_seconds=args.max_seconds, progress_bar=not args.quiet, recording_waveforms=waveforms,
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


def _bootstrap(args: argparse.Namespace):
    """The templates of a ``--bootstrap-minutes`` sort of ``--recording`` (``BootstrapTemplates``), or None."""
    if args.bootstrap_minutes < 0:
        raise DlsortInputError(f"--bootstrap-minutes {args.bootstrap_minutes:g} is negative; use 0 to turn it off")
    if args.recording is None or args.bootstrap_minutes == 0:
        return None
    from dlsort.cli import read_recording
    from dlsort.training.bootstrap import bootstrap_templates

    return bootstrap_templates(read_recording(Path(args.recording)), args.bootstrap_minutes, seed=args.seed)


def _train_detector(args: argparse.Namespace) -> int:
    from dlsort.neural_detection import probability_logit
    from dlsort.training.detector import DetectorGeometry, detector_card, evaluate_detector, train_detector
    from dlsort.training.noise import SpatialNoise
    from dlsort.training.trainer import write_model

    device, temporal, spatial, locations, training_data, start = _prepare(args, "detector")
    if spatial is None:
        spatial = shared_noise(SpatialNoise)
    sizes = _sizes(args, "detector", start is not None)
    templates = _bootstrap(args)
    if templates is not None:
        training_data += (f"; half the patches with the templates of {len(templates.templates)} units of a "
                          f"{args.bootstrap_minutes:g}-min bootstrap sort of it")
    if start is not None:
        card_geometry = start[1]["geometry"]
        geometry = DetectorGeometry(card_geometry["neighbourhood_radius_um"], card_geometry["neighbourhood_slots"])
    else:
        geometry = DetectorGeometry(args.radius_um, args.slots)
    network, report, held_out = train_detector(
        temporal, spatial, start_from=start[0] if start else None, geometry=geometry, locations=locations,
        templates=templates, num_patches=sizes["patches"], num_examples=sizes["examples"], seed=args.seed,
        device=device, max_epochs=sizes["epochs"], max_seconds=args.max_seconds, progress_bar=not args.quiet,
    )
    given = None if args.probability is None else probability_logit(args.probability)
    threshold, metrics = evaluate_detector(network, held_out, geometry, given)
    card = detector_card(network, args.id, args.version, training_data, geometry, metrics, report, threshold,
                         calibrated=given is None)
    weights = write_model(Path(args.output), network, card)
    summary = "; ".join(f"{row['detector']}: recall {row['recall']:.3f}, precision {row['precision']:.3f}"
                        for row in metrics)
    print(f"dlsort: {args.id}@{args.version} written to {weights.parent} ({report.epochs} epochs, "
          f"{report.seconds:.0f} s); operating point p >= {card['operating_point']['probability']:g}; "
          f"held-out patches: {summary}")
    return 0


def _train_autoencoder(args: argparse.Namespace) -> int:
    from dlsort.spike_encoder import autoencoder_radius
    from dlsort.training.autoencoder import autoencoder_card, train_autoencoder
    from dlsort.training.noise import SpatialNoise
    from dlsort.training.trainer import write_model

    device, temporal, spatial, locations, training_data, start = _prepare(args, "autoencoder")
    if spatial is None:
        spatial = shared_noise(SpatialNoise)
    sizes = _sizes(args, "autoencoder", start is not None)
    ms_before, ms_after, radius_um = args.ms_before, args.ms_after, args.radius_um
    objective = {}
    if start is not None:
        card = start[1]
        radius_um = autoencoder_radius(card, start[2].id)
        ms_before, ms_after = card["window_ms"]["before"], card["window_ms"]["after"]
        objective = card["metrics"].get("objective", {})  # fine-tuning keeps the start model's objective
    invariance_weight = objective.get("invariance_weight", 0.0) if args.invariance_weight is None \
        else args.invariance_weight
    displacement_um = objective.get("displacement_um", 0.0) if args.displacement_um is None else args.displacement_um
    network, report = train_autoencoder(
        temporal, spatial, start_from=start[0] if start else None, embedding_dim=args.embedding_dim,
        radius_um=radius_um, locations=locations, num_scenes=sizes["scenes"], num_examples=sizes["examples"],
        ms_before=ms_before, ms_after=ms_after, seed=args.seed, device=device, max_epochs=sizes["epochs"],
        max_seconds=args.max_seconds, progress_bar=not args.quiet, invariance_weight=invariance_weight,
        displacement_um=displacement_um,
    )
    card = autoencoder_card(network, args.id, args.version, training_data, radius_um, ms_before, ms_after, report,
                            invariance_weight, displacement_um)
    weights = write_model(Path(args.output), network, card)
    print(f"dlsort: {args.id}@{args.version} written to {weights.parent} ({report.epochs} epochs, "
          f"{report.seconds:.0f} s); held-out loss {report.best_validation_loss:.3f} "
          f"({card['metrics']['objective']['loss']}), {network.embedding_dim}-dimensional embedding")
    return 0


SYNTHETIC_SECONDS = 40.0  # length of each synthetic hybrid recording the shipped interpolators learn from


def _train_deepinterpolation(args: argparse.Namespace) -> int:
    from dlsort.cli import read_recording
    from dlsort.models import load
    from dlsort.nn import build_network
    from dlsort.params import DEFAULT_PARAMS
    from dlsort.preprocessing import preprocess
    from dlsort.preprocessing.deepinterpolation import TASK
    from dlsort.training.deepinterpolation import ARCHITECTURE, interpolator_card, train_interpolator
    from dlsort.training.trainer import write_model

    device = _setup(args)
    if args.recording is not None:
        recordings = [preprocess(read_recording(Path(args.recording)), DEFAULT_PARAMS["freq_min"],
                                 DEFAULT_PARAMS["freq_max"], DEFAULT_PARAMS["common_reference"])]
        training_data = f"{Path(args.recording).name}, band-passed and median-referenced as dlsort does"
    else:
        recordings, training_data = _synthetic_hybrids(args.probes, args.seed)
    start, start_card = None, None
    if args.start_from is not None:
        tensors, start_card, model_file = load(args.start_from, task=TASK)
        for option, value in (("--architecture", args.architecture), ("--end-rows", args.end_rows)):
            if value is not None:
                raise DlsortInputError(f"{option} is a choice for training from scratch; {model_file.id} keeps its "
                                       f"own ({start_card['architecture']['name']}): leave out {option} or --from")
        start = build_network(start_card["architecture"], tensors)
        training_data += f", fine-tuned from {model_file.id}" if args.readout_layers is None else (
            f", {model_file.id} with its read-out deepened to {args.readout_layers} layers (only the added ones "
            "trained)")
    sizes = _sizes(args, TASK, start is not None)
    network, report = train_interpolator(recordings, start_from=start, start_card=start_card, minutes=args.minutes,
                                         num_windows=sizes["windows"], max_epochs=sizes["epochs"], seed=args.seed,
                                         device=device, max_seconds=args.max_seconds, progress_bar=not args.quiet,
                                         architecture=args.architecture or ARCHITECTURE, end_rows=args.end_rows,
                                         readout_layers=args.readout_layers)
    card = interpolator_card(network, recordings, args.id, args.version, training_data, report, start_card)
    weights = write_model(Path(args.output), network.cpu(), card)
    print(f"dlsort: {args.id}@{args.version} written to {weights.parent} ({report.epochs} epochs, "
          f"{report.seconds:.0f} s); held-out loss {report.best_validation_loss:.4f} (normalised units); use it with "
          f"dlsort.preprocessing.deepinterpolate(recording, {str(weights)!r})")
    return 0


def _synthetic_hybrids(probes: list[str], seed: int) -> tuple[list, str]:
    """One synthetic hybrid recording per probe kind (64 channels, 40 units, real Neuropixels noise statistics)."""
    from dlsort.groundtruth import make_probe
    from dlsort.training.hybrid import hybrid_recording

    recordings = []
    for index, kind in enumerate(probes):
        hybrid = hybrid_recording(make_probe(kind, 64), 40, SYNTHETIC_SECONDS, 5.0, seed=seed + index)
        recordings.append(hybrid.recording)
    description = (f"synthetic hybrid recordings, {SYNTHETIC_SECONDS:g} s each, 64 channels of {', '.join(probes)} "
                   f"probes: SpikeInterface generator spikes (40 units) on noise with the temporal and spatial "
                   f"correlation of real Neuropixels 1.0 noise, 5 uV rms ({hybrid.noise_source})")
    return recordings, description


def _common_arguments(parser: argparse.ArgumentParser, task: str, recording_help: str) -> None:
    parser.add_argument("-o", "--output", required=True, help="model folder to write (weights + card.json)")
    parser.add_argument("--recording", help=recording_help)
    parser.add_argument("--from", dest="start_from", help="model to start from" + (
        f" (default with --recording: {task}-generic)" if task in FINE_TUNES_GENERIC else ""))
    parser.add_argument("--minutes", type=float, default=10.0,
                        help="the noise (deepinterpolation: the training windows) comes from the first MINUTES of "
                             "the recording (default 10)")
    parser.add_argument("--max-seconds", type=float, help="time budget; stops after the epoch that exceeds it")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for torch (default 2)")
    parser.add_argument("--id", default=f"{task}-custom", help="model id written to the card")
    parser.add_argument("--version", default="0.1.0", help="model version written to the card")
    parser.add_argument("--overwrite", action="store_true", help="replace a model already in --output")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    scratch, fine_tune = SIZES[task]["scratch"], SIZES[task]["fine-tune"]
    for key in scratch:
        parser.add_argument(f"--{key}", type=int, help=f"{SIZE_HELP[key]} (default {scratch[key]}, "
                            f"{fine_tune[key]} when fine-tuning)")


def _bootstrap_argument(parser: argparse.ArgumentParser, what: str, default: float) -> None:
    parser.add_argument("--bootstrap-minutes", type=float, default=default,
                        help=f"with --recording, {what} from a quick sort of the recording's first BOOTSTRAP_MINUTES "
                             f"(default {default:g}; 0: generated units only)")


def add_train_parser(commands) -> None:
    """Add ``dlsort train`` and its subcommands to the ``dlsort`` parser's subparsers."""
    train = commands.add_parser("train", help="train or fine-tune networks")
    sub = train.add_subparsers(dest="train_command", required=True)
    denoiser = sub.add_parser(
        "denoiser",
        help="train the waveform denoiser (from scratch on the shared Neuropixels noise, or fine-tuned on a "
             "recording's noise)",
    )
    _common_arguments(denoiser, "denoiser", NOISE_RECORDING_HELP)
    denoiser.add_argument("--ms-before", type=float, default=1.0)
    denoiser.add_argument("--ms-after", type=float, default=1.5)
    # off by default: a second bootstrap sort beside the detector's (37 s instead of 19 s on a 10-minute 64-channel
    # recording) for no clear gain in the generalization benchmark (docs/benchmarks.md)
    _bootstrap_argument(denoiser, "half the examples take their shapes", default=0.0)
    denoiser.set_defaults(handler=_train_denoiser)

    detector = sub.add_parser(
        "detector",
        help="train the neighbourhood spike detector (from scratch on synthetic probe patches with the shared "
             "Neuropixels noise, or fine-tuned on a recording's probe and noise)",
    )
    _common_arguments(detector, "detector", NOISE_RECORDING_HELP)
    detector.add_argument("--radius-um", type=float, default=50.0, help="neighbourhood radius (from scratch)")
    detector.add_argument("--slots", type=int, default=12, help="neighbourhood channels (from scratch)")
    detector.add_argument("--probability", type=float,
                          help="operating point written to the card (default: calibrated on held-out patches to "
                               "the precision of threshold detection at 5)")
    _bootstrap_argument(detector, "half the patches take their units", default=BOOTSTRAP_MINUTES)
    detector.set_defaults(handler=_train_detector)

    deepinterpolation = sub.add_parser(
        "deepinterpolation",
        help="train DeepInterpolation's blind-spot interpolator (or its per-frame U-Net) on a recording "
             "(self-supervised), from scratch or fine-tuned --from a model",
    )
    _common_arguments(deepinterpolation, "deepinterpolation",
                      "the recording to learn from (any `dlsort sort` input); without it, synthetic hybrid recordings "
                      "of --probes with real Neuropixels noise statistics (how the shipped models are trained)")
    deepinterpolation.add_argument("--probes", nargs="+", default=["np1"], choices=("np1", "np2", "staggered"),
                                   help="probe layouts of the synthetic recordings without --recording (default np1)")
    deepinterpolation.add_argument("--architecture", choices=("blind-spot-interpolator", "per-frame-unet"),
                                   help="network to train from scratch: the blind-spot interpolator (default) or "
                                        "DeepInterpolation's per-frame U-Net (over 200 times the multiply-adds)")
    deepinterpolation.add_argument("--end-rows", choices=("reflect", "zeros"),
                                   help="what the blind-spot interpolator sees beyond the grid's end rows, from "
                                        "scratch: the rows inside mirrored (default) or empty rows (the 1.0.0 models)")
    deepinterpolation.add_argument("--readout-layers", type=int,
                                   help="grid convolutions in the blind-spot interpolator's read-out (default 1): "
                                        "each reaches one row further, correcting the rows far enough from the grid's "
                                        "ends; with --from a one-layer model, only the added layers are trained")
    deepinterpolation.set_defaults(handler=_train_deepinterpolation)

    autoencoder = sub.add_parser(
        "autoencoder",
        help="train the neighbourhood autoencoder of the features stage (from scratch on synthetic probe patches "
             "with the shared Neuropixels noise, or on a recording's probe and noise; --from a model to fine-tune)",
    )
    _common_arguments(autoencoder, "autoencoder", "train on this recording's noise and probe (contacts within random "
                      "250 um bands); any `dlsort sort` input")
    autoencoder.add_argument("--embedding-dim", type=int, default=8, help="embedding dimension (from scratch)")
    autoencoder.add_argument("--radius-um", type=float, default=75.0,
                             help="neighbourhood radius, as the sorter's neighbourhood_radius_um (from scratch)")
    autoencoder.add_argument("--ms-before", type=float, default=1.0, help="window before the trough (from scratch)")
    autoencoder.add_argument("--ms-after", type=float, default=1.5, help="window after the trough (from scratch)")
    autoencoder.add_argument("--invariance-weight", type=float,
                             help="train on two views of each spike and add this weight x the distance between their "
                                  "embeddings to the loss; --examples then counts pairs (default: the start model's "
                                  "when fine-tuning, else 0: reconstruction only)")
    autoencoder.add_argument("--displacement-um", type=float,
                             help="with --invariance-weight, move the second view's unit along the probe by up to "
                                  "this many um, as drift does (default: the start model's when fine-tuning, else 0)")
    autoencoder.set_defaults(handler=_train_autoencoder)
