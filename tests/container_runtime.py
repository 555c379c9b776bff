"""Container runtimes as the tests and ``benchmarks/containers.py`` drive them (set up by ``.ci/containers-setup``).

- ``build_image``: ``containers/build.sh`` with podman, trusting the host's CA bundle (proxies);
- ``docker_api``: a Docker API served by ``podman system service``, as SpikeInterface's docker
  mode talks to it, with extra environment variables for every container it creates;
- ``apptainer_in_podman``: Apptainer inside a privileged podman container (Debian 12 has no
  Apptainer), a SIF built from the image with ``containers/apptainer.def``, and a host-side
  ``singularity`` command that runs Apptainer there, for SpikeInterface's singularity mode.

Everything started is stopped on exit (the service by its process, the container by name).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


def build_image(tag: str, base: str, python: str = sys.executable, no_cache: bool = False) -> None:
    """Build the CPU image of this checkout as ``tag`` on ``base`` with podman (raises with the build's output)."""
    build = [str(ROOT / "containers" / "build.sh"), "--engine", "podman", "--tag", tag, "--base", base,
             "--python", python, *(["--no-cache"] if no_cache else [])]
    if HOST_CA_BUNDLE.exists():  # the host's proxy certificates, if any
        build += ["--extra-ca", str(HOST_CA_BUNDLE)]
    done = subprocess.run(build, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"containers/build.sh failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")


@contextlib.contextmanager
def docker_api(folder: Path, container_env: dict[str, str] | None = None):
    """A Docker API served by ``podman system service`` whose containers all get ``container_env``.

    SpikeInterface creates its containers with no environment of ours, so the variables go into a
    containers.conf of this service only (the machine's settings, plus ``env``). Yields the socket.
    """
    system = Path("/etc/containers/containers.conf")
    settings = system.read_text() if system.exists() else ""
    if container_env:
        env_line = "env = [" + ", ".join(json.dumps(f"{key}={value}") for key, value in container_env.items()) + "]\n"
        if "[containers]\n" in settings:
            settings = settings.replace("[containers]\n", "[containers]\n" + env_line, 1)
        else:
            settings = "[containers]\n" + env_line + settings
    config = folder / "containers.conf"
    config.write_text(settings)
    socket = folder / "podman.sock"
    service = subprocess.Popen(["podman", "system", "service", "--time=0", f"unix://{socket}"],
                               env={**os.environ, "CONTAINERS_CONF": str(config)},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            if socket.exists():
                break
            time.sleep(0.1)
        yield socket
    finally:
        service.terminate()
        service.wait(timeout=30)


@contextlib.contextmanager
def apptainer_in_podman(runtime_image: str, image: str, shared: Path, work: Path):
    """Apptainer in a privileged podman container, a SIF of ``image``, and a ``singularity`` command for the host.

    The container shares the host's network and sees ``shared`` at its own path (put recordings
    and output folders there), so SpikeInterface's singularity mode (spython calling
    ``singularity``) runs unchanged through the wrapper, which forwards the caller's
    ``APPTAINERENV_*`` variables. Yields ``(sif, folder holding the wrapper)``; ``work`` must be
    inside ``shared``.
    """
    name = f"dlsort-apptainer-{os.getpid()}-{work.name}"
    work.mkdir(parents=True, exist_ok=True)
    archive = work / "dlsort.tar"
    subprocess.run(["podman", "save", "--format", "docker-archive", "-o", str(archive), image],
                   check=True, capture_output=True)
    subprocess.run(["podman", "run", "--detach", "--rm", "--privileged", "--network", "host", "--name", name,
                    "--volume", f"{shared}:{shared}", runtime_image, "sleep", "infinity"],
                   check=True, capture_output=True)
    try:
        definition = shutil.copy(ROOT / "containers" / "apptainer.def", work)
        subprocess.run(["podman", "exec", name, "apptainer", "build", "--build-arg", "BOOTSTRAP=docker-archive",
                        "--build-arg", f"FROM={archive}", str(work / "dlsort.sif"), str(definition)],
                       check=True, capture_output=True)
        archive.unlink()
        wrapper = work / "bin" / "singularity"
        wrapper.parent.mkdir()
        wrapper.write_text(
            "#!/bin/sh\n"
            f"# singularity on the host: Apptainer inside the container {name}\n"
            "forward=\"\"\n"
            "for variable in $(env | sed -n 's/^\\(APPTAINERENV_[A-Za-z0-9_]*\\)=.*/\\1/p'); do\n"
            "    forward=\"$forward --env $variable\"\n"
            "done\n"
            f"exec podman exec -i $forward {name} singularity \"$@\"\n"
        )
        wrapper.chmod(0o755)
        yield work / "dlsort.sif", wrapper.parent
    finally:
        subprocess.run(["podman", "rm", "--force", "--time", "0", name], capture_output=True)
