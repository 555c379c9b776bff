"""Container costs: image build time and size, and a sort in a container against the same sort run locally.

Usage (from the repository root, after ``.ci/containers-setup`` has set up podman and Apptainer)::

    PYTHONPATH=. python benchmarks/containers.py --base localhost/debian-base:bookworm-slim \\
        [--apptainer-image localhost/apptainer-sid] [--no-cache]

Builds the CPU image with ``containers/build.sh`` (``--no-cache``: every layer, as a first build
would), then sorts the 32-channel, 30-s, 8-unit accuracy-floor recording (seed 0) with
``run_sorter("dlsort", ..., n_jobs=2)`` three ways, each in a fresh Python process timed from
outside (interpreter start to return, as a user would wait): locally, with ``docker_image=True``
through podman's Docker API, and, with ``--apptainer-image``, with ``singularity_image=`` on a SIF
made from the image (Apptainer in a privileged podman container). The containers start as
shipped: their start-up pull tries gin.g-node.org, which this machine cannot reach, and falls
back to the embedded weights; its time is in the provenance. Prints a table and writes
``benchmarks/work/containers/results.json``. Run it with nothing else on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from container_runtime import apptainer_in_podman, build_image, docker_api  # noqa: E402

IMAGE = "localhost/dlsort:benchmark"
SORT = """
import sys, spikeinterface.core as si, spikeinterface.sorters as ss
from spikeinterface.sorters import runsorter
runsorter.SORTER_DOCKER_MAP["dlsort"] = {image!r}
ss.run_sorter("dlsort", si.load(sys.argv[1]), folder=sys.argv[2], n_jobs=2, progress_bar=False, **{options})
"""


def timed_sort(recording: Path, folder: Path, options: dict, env: dict | None = None) -> dict:
    """Sort in a fresh interpreter; wall seconds, units found and the start-up's outcome from the provenance."""
    script = SORT.format(image=IMAGE, options=repr(options))
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", script, str(recording), str(folder)], check=True,
                   env={**os.environ, **(env or {})}, capture_output=True)
    seconds = time.perf_counter() - started
    provenance = json.loads((folder / "provenance.json").read_text())
    startup = provenance["container_startup"]
    return {"seconds": round(seconds, 1), "units": provenance["num_units"],
            "startup": None if startup is None else {key: startup.get(key) for key in ("state", "seconds")}}


def image_bytes(name: str) -> int:
    """The image's size as podman reports it."""
    found = subprocess.run(["podman", "image", "inspect", name, "--format", "{{.Size}}"], check=True,
                           capture_output=True, text=True)
    return int(found.stdout.strip())


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    from dlsort.groundtruth import GroundTruthCase, generate_case

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", required=True, help="base image for containers/build.sh")
    parser.add_argument("--apptainer-image", help="image holding Apptainer (from .ci/containers-setup)")
    parser.add_argument("--no-cache", action="store_true", help="rebuild every layer of the image")
    args = parser.parse_args(argv)

    work = ROOT / "benchmarks" / "work" / "containers"
    subprocess.run(["rm", "-rf", str(work)], check=True)
    work.mkdir(parents=True)
    recording, _ = generate_case(GroundTruthCase("floor", "accuracy floor", "staggered", 32, 8, 30.0, seed=0))
    recording.save(folder=work / "recording", n_jobs=2, progress_bar=False)

    results: dict = {}
    started = time.perf_counter()
    build_image(IMAGE, args.base, no_cache=args.no_cache)
    results["build"] = {"seconds": round(time.perf_counter() - started, 1), "no_cache": args.no_cache,
                        "bytes": image_bytes(IMAGE)}
    try:
        results["local"] = timed_sort(work / "recording", work / "local", {})
        with docker_api(work) as socket:
            results["docker"] = timed_sort(work / "recording", work / "docker", {"docker_image": True},
                                           {"DOCKER_HOST": f"unix://{socket}"})
        if args.apptainer_image:
            started = time.perf_counter()
            with apptainer_in_podman(args.apptainer_image, IMAGE, work, work / "sif") as (sif, wrappers):
                results["sif"] = {"seconds": round(time.perf_counter() - started, 1), "bytes": sif.stat().st_size}
                path = f"{wrappers}{os.pathsep}{os.environ['PATH']}"
                results["apptainer"] = timed_sort(work / "recording", work / "apptainer",
                                                  {"singularity_image": str(sif)}, {"PATH": path})
    finally:
        subprocess.run(["podman", "rmi", "--force", IMAGE], capture_output=True)

    (work / "results.json").write_text(json.dumps(results, indent=2))
    build = results["build"]
    print(f"image: built in {build['seconds']} s ({'no cache' if build['no_cache'] else 'layer cache as found'}),"
          f" {build['bytes'] / 1e9:.2f} GB")
    if "sif" in results:
        sif = results["sif"]
        print(f"SIF: podman save + apptainer build {sif['seconds']} s, {sif['bytes'] / 1e9:.2f} GB")
    for mode in ("local", "docker", "apptainer"):
        if mode in results:
            run = results[mode]
            overhead = run["seconds"] - results["local"]["seconds"]
            startup = run["startup"]
            note = f", start-up {startup['state']} in {startup['seconds']} s" if startup else ""
            print(f"{mode:>9}: {run['seconds']:6.1f} s wall ({overhead:+.1f} s vs local), {run['units']} units{note}")


if __name__ == "__main__":
    main()
