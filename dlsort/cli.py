"""The ``dlsort`` command line: ``sort``, ``report``, ``demo``, ``models ...`` and ``train ...``.

Errors the user can fix are printed as one line (``dlsort: error: ...``) with exit code 2;
``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from dlsort.errors import DlsortInputError
from dlsort.models.cli import add_models_parser
from dlsort.training.cli import add_train_parser


def read_recording(path: Path):
    """Open a recording from a path: a SpikeInterface folder or JSON, NWB, SpikeGLX or Open Ephys.

    Parameters
    ----------
    path : Path

    Returns
    -------
    BaseRecording
    """
    import spikeinterface.extractors as se
    from spikeinterface.core import load

    if not path.exists():
        raise DlsortInputError(f"recording not found: {path}")
    if path.suffix == ".nwb":
        return se.read_nwb_recording(path)
    if path.is_dir() and any(path.rglob("*.meta")):
        return se.read_spikeglx(path, stream_id=_ap_stream(se.get_neo_streams("spikeglx", path)[1]))
    if path.is_dir() and (any(path.rglob("structure.oebin")) or any(path.rglob("settings.xml"))):
        return se.read_openephys(path)
    try:
        return load(path)
    except Exception as error:  # SpikeInterface raises many types for "not a recording"
        raise DlsortInputError(
            f"cannot open {path} as a recording ({type(error).__name__}: {error}); give a SpikeInterface "
            "folder (recording.save(folder=...)), an .nwb file, or a SpikeGLX or Open Ephys folder"
        ) from error


def _ap_stream(stream_ids: list[str]) -> str:
    """The first action-potential stream of a SpikeGLX folder (the first stream if none is named ``.ap``)."""
    return next((stream for stream in stream_ids if stream.endswith(".ap")), stream_ids[0])


def _sort(args: argparse.Namespace) -> int:
    from spikeinterface.sorters import run_sorter

    import dlsort  # noqa: F401  (registers the sorter)

    recording = read_recording(Path(args.recording))
    params = {}
    if args.params is not None:
        try:
            params = json.loads(Path(args.params).read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise DlsortInputError(f"cannot read parameters from {args.params}: {error}") from error
        if not isinstance(params, dict):
            raise DlsortInputError(f"{args.params} must hold a JSON object of parameters")
    if args.device is not None:
        params["device"] = args.device
    if args.n_jobs is not None:
        params["n_jobs"] = args.n_jobs
    _validate_before_folder(recording, params, Path(args.output), args.overwrite)
    sorting = run_sorter(
        "dlsort", recording, folder=args.output, remove_existing_folder=args.overwrite, verbose=False, **params
    )
    print(f"dlsort: {len(sorting.unit_ids)} units written to {Path(args.output) / 'sorter_output'}")
    return 0


def _validate_before_folder(recording, params: dict, output: Path, overwrite: bool) -> None:
    """Check everything before SpikeInterface touches the output folder, so bad input loses nothing."""
    from dlsort.sorter import DlsortSorter
    from dlsort.validation import check_recording

    if output.exists() and not overwrite:
        raise DlsortInputError(f"output folder {output} exists; choose another or pass --overwrite to replace it")
    check_recording(recording)
    DlsortSorter._check_params(recording, None, params)


def _report(args: argparse.Namespace) -> int:
    import dlsort  # noqa: F401  (registers the sorter, so that its folders can be read)
    from dlsort.report import write_report

    folder = Path(args.folder)
    if not folder.is_dir():
        raise DlsortInputError(f"sorter output folder not found: {folder}")
    recording = read_recording(Path(args.recording)) if args.recording is not None else None
    index = write_report(folder, args.output, recording, job_kwargs={"n_jobs": args.n_jobs, "progress_bar": True})
    print(f"dlsort: report written to {index}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from spikeinterface.sorters import run_sorter

    import dlsort  # noqa: F401
    from dlsort.evaluation import evaluate
    from dlsort.groundtruth import GroundTruthCase, generate_case

    if args.duration < 5 or args.channels < 4:
        raise DlsortInputError("the demo needs --duration >= 5 seconds and --channels >= 4")
    num_units = args.units if args.units is not None else max(2, args.channels // 3)
    case = GroundTruthCase("demo", "demo", "staggered", args.channels, num_units, float(args.duration), seed=args.seed)
    print(
        f"dlsort demo: {args.duration:g} s, {args.channels} channels, {num_units} ground-truth units (seed {args.seed})"
    )
    recording, gt_sorting = generate_case(case)
    with tempfile.TemporaryDirectory(prefix="dlsort-demo-") as tmp:
        work = Path(args.folder) if args.folder else Path(tmp)
        recording = recording.save(folder=work / "recording", overwrite=True, n_jobs=args.n_jobs, progress_bar=False)
        params = {"n_jobs": args.n_jobs}
        if args.device is not None:
            params["device"] = args.device
        sorting = run_sorter("dlsort", recording, folder=work / "dlsort", remove_existing_folder=True, **params)
        result = evaluate(gt_sorting, sorting, recording=recording)
    print(result.summary())
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``dlsort`` command."""
    from dlsort import __version__

    parser = argparse.ArgumentParser(prog="dlsort", description="Deep-learning spike sorter for SpikeInterface.")
    parser.add_argument("--version", action="version", version=f"dlsort {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    commands = parser.add_subparsers(dest="command", required=True)

    sort = commands.add_parser("sort", help="sort a recording")
    sort.add_argument("recording", help="SpikeInterface folder/JSON, .nwb file, SpikeGLX or Open Ephys folder")
    sort.add_argument("-o", "--output", required=True, help="output folder")
    sort.add_argument("--params", help="JSON file of dlsort parameters")
    sort.add_argument("--device", choices=("auto", "cpu", "cuda"))
    sort.add_argument("--n-jobs", type=int)
    sort.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    sort.set_defaults(handler=_sort)

    report = commands.add_parser(
        "report", help="write an HTML report of a sorting: quality metrics, templates, amplitudes, ISI histograms"
    )
    report.add_argument("folder", help="a sorter output folder (dlsort sort -o, or run_sorter's folder, any sorter)")
    report.add_argument("-o", "--output", help="report folder (default: FOLDER/report)")
    report.add_argument("--recording", help="the recording that was sorted, if the folder cannot re-open it")
    report.add_argument("--n-jobs", type=int, default=-1)
    report.set_defaults(handler=_report)

    demo = commands.add_parser("demo", help="sort a generated ground-truth recording and print the accuracy")
    demo.add_argument("--duration", type=float, default=30.0, help="seconds (default 30)")
    demo.add_argument("--channels", type=int, default=32, help="channels of a 3-column probe (default 32)")
    demo.add_argument("--units", type=int, help="ground-truth units (default channels // 3)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--n-jobs", type=int, default=-1)
    demo.add_argument("--device", choices=("auto", "cpu", "cuda"))
    demo.add_argument("--folder", help="keep the recording and the sorter output here")
    demo.set_defaults(handler=_demo)

    add_models_parser(commands)
    add_train_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``dlsort`` command; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except (DlsortInputError, FileNotFoundError) as error:
        if args.debug:
            raise
        print(f"dlsort: error: {error}", file=sys.stderr)
        return 2
    except Exception as error:
        if args.debug:
            raise
        message = str(error).strip().splitlines()
        print(
            f"dlsort: error: {type(error).__name__}: {message[-1] if message else ''} (rerun with --debug)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
