#!/usr/bin/env bash
# Build the wheel set the offline GPU host needs (Python 3.12, CUDA 13) into .whl/.
# The GPU host has no package registry: its image already holds NumPy, CuPy (cupy-cuda13x),
# cloudpickle, toolz, fsspec, PyYAML, rich, psutil, pandas, pytest, ...; this fetches the rest,
# one pinned version each (two versions of one package stop the whole install there).
# Usage: scripts/build-gpu-wheels.sh [DEST]   (default: .whl, ignored by git)
#        scripts/build-gpu-wheels.sh --ucx [DEST]   UCX for Dask (default: .whl-ucx): 53 MB more,
#        which with .whl passes the 64 MiB a device call carries, so it travels in a second call
set -euo pipefail
if [[ ${1:-} == --ucx ]]; then
  dest=${2:-.whl-ucx}
  pkgs=(distributed-ucxx-cu13==0.52.0 ucxx-cu13==0.52.0 libucxx-cu13==0.52.0 libucx-cu13==1.21.0
    # RMM: ucxx-cu13 requires rmm-cu13, libucxx-cu13 librmm-cu13; libucxx's loader imports
    # librmm and libucx together and, without librmm, loads neither (libucp.so.0 then not found)
    rmm-cu13==26.10.0 librmm-cu13==26.10.0 rapids-logger==0.3.0)
else
dest=${1:-.whl}
pkgs=(
  # scheduler: dask-cuda 26.10 pins dask/distributed 2026.7.1 through rapids-dask-dependency
  dask==2026.7.1 distributed==2026.7.1 dask-cuda==26.10.0 rapids-dask-dependency==26.10.0
  zict==3.0.0 tblib==3.2.2 partd==1.4.2 locket==1.0.0 tornado==6.6.1 sortedcontainers==2.4.0
  # storage
  zarr==3.4.2 numcodecs==0.17.1 donfig==0.8.1.post1 google-crc32c==1.9.0 msgspec==0.22.0
  # config
  pydantic==2.14.3 pydantic-core==2.50.4 annotated-types==0.8.0 typing-inspection==0.4.5
  typing-extensions==4.16.0
  # GPU: zstd through nvCOMP; GPU facts through NVML. Not RMM: the pipeline uses CuPy's pool,
  # `pip install .[cu13]` does not install it, and where it is installed distributed imports
  # it in every process (distributed.diagnostics.rmm: 0.14 s of the fork server's 1.5 s of
  # imports on the H200 host, 2026-11-30)
  nvidia-nvcomp-cu13==6.0.0.12 nvidia-libnvcomp-cu13==6.0.0.12
  nvidia-ml-py==13.615.71
)
fi
mkdir -p "$dest"
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
  --platform manylinux_2_5_x86_64 --platform any -d "$dest" "${pkgs[@]}"

du -sh "$dest"
