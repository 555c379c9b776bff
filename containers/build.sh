#!/usr/bin/env bash
# Build dlsort's container image from this checkout.
#
#   containers/build.sh [--flavour cpu|cuda] [--base IMAGE] [--tag NAME] [--engine podman|docker]
#                       [--extra-ca FILE]... [--python PYTHON] [--torch-index URL] [--no-cache]
#
# --torch-index (CUDA flavour): the index torch comes from, default PyPI (CUDA 13.0 builds for
# torch 2.13, which need an R580+ driver); e.g. https://download.pytorch.org/whl/cu126 for older drivers.
#
# The image is tagged as `run_sorter(..., docker_image=True)` looks it up (dlsort.containers.default_image):
# ghcr.io/dlsort/dlsort:<version>-cpu or :<version> (CUDA). The build context is a staging folder
# holding only pyproject.toml, the dlsort wheel, a wheelhouse (the CPU torch wheel and its
# dependencies, downloaded by PYTHON's pip) and the extra CA certificates, never the repository.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
flavour=cpu
base=docker.io/library/debian:bookworm-slim
engine="$(command -v podman || command -v docker || true)"
python=python3
tag=
extra_ca=()
cache=()
torch_index_option=
while [[ $# -gt 0 ]]; do
    case "$1" in
        --flavour) flavour="$2"; shift 2 ;;
        --base) base="$2"; shift 2 ;;
        --tag) tag="$2"; shift 2 ;;
        --engine) engine="$2"; shift 2 ;;
        --extra-ca) extra_ca+=("$2"); shift 2 ;;
        --python) python="$2"; shift 2 ;;
        --torch-index) torch_index_option="$2"; shift 2 ;;
        --no-cache) cache=(--no-cache); shift ;;  # rebuild every layer (to time a cold build)
        *) echo "build.sh: unknown argument $1 (see the header of $0)" >&2; exit 2 ;;
    esac
done
if [[ -z "$engine" ]]; then
    echo "build.sh: neither podman nor docker found; install one (see docs/containers.md)" >&2
    exit 1
fi
case "$flavour" in
    cpu) suffix=-cpu; torch_index= ;;
    cuda) suffix=; torch_index="${torch_index_option:-https://pypi.org/simple}" ;;
    *) echo "build.sh: --flavour must be cpu or cuda, not $flavour" >&2; exit 2 ;;
esac
if [[ "$flavour" == cpu && -n "$torch_index_option" ]]; then
    echo "build.sh: --torch-index is for the CUDA flavour; the CPU one takes torch from PYTHON's pip (PIP_INDEX_URL)" >&2
    exit 2
fi
version="$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' "$repo/dlsort/__init__.py")"
torch_version=2.13.0
repository="$(sed -n 's/^IMAGE_REPOSITORY = "\(.*\)"$/\1/p' "$repo/dlsort/containers.py")"
tag="${tag:-${repository}:${version}${suffix}}"

stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/dist" "$stage/wheelhouse" "$stage/extra-ca"
cp "$repo/pyproject.toml" "$repo/containers/entrypoint.sh" "$stage/"
for cert in "${extra_ca[@]}"; do
    cp "$cert" "$stage/extra-ca/$(basename "$cert" | sed 's/\.[^.]*$//').crt"
done
"$python" -m pip wheel --quiet --no-deps --wheel-dir "$stage/dist" "$repo"
if [[ "$flavour" == cpu ]]; then
    # Wheels for the base image's Python 3.11 (Debian bookworm). pip's own configuration decides
    # which torch build this is: check that it is the CPU one.
    "$python" -m pip download --quiet --python-version 3.11 --only-binary=:all: --dest "$stage/wheelhouse" \
        "torch==${torch_version}"
    if ! ls "$stage/wheelhouse" | grep -q "^torch-${torch_version}+cpu-"; then
        echo "build.sh: $python's pip downloaded $(ls "$stage/wheelhouse" | grep '^torch-') rather than the CPU" \
             "build; point it at PyTorch's CPU wheel index (PIP_INDEX_URL) and retry" >&2
        exit 1
    fi
fi
"$engine" build --network host "${cache[@]}" \
    --build-arg "BASE_IMAGE=$base" --build-arg "DLSORT_VERSION=$version" \
    --build-arg "TORCH_VERSION=$torch_version" --build-arg "TORCH_INDEX_URL=$torch_index" \
    --tag "$tag" --file "$repo/containers/Dockerfile" "$stage"
echo "build.sh: built $tag"
