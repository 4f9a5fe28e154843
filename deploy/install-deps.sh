#!/usr/bin/env bash
# Installs stackproc's build and test dependencies from Debian 12 (bookworm) packages.
# Idempotent: when every package is already installed it returns without touching apt.
#   deploy/install-deps.sh            build + test dependencies (default)
#   deploy/install-deps.sh --build    only what building stackprocd and stackproc needs
#   deploy/install-deps.sh --runtime  only the shared libraries the binaries need
set -euo pipefail

compile_pkgs=(
  build-essential cmake ninja-build pkg-config
  libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc
  libabsl-dev libtbb-dev libopencv-dev libtiff-dev libzstd-dev libdeflate-dev libisal-dev zlib1g-dev
  libblosc-dev nlohmann-json3-dev libpng-dev libcpp-httplib-dev
  prometheus-cpp-dev libsqlite3-dev
)
test_pkgs=(
  ccache libgtest-dev libgmock-dev libbenchmark-dev
  python3 python3-venv python3-numpy python3-tifffile python3-opencv python3-grpcio python3-yaml
  python3-zarr python3-numcodecs python3-protobuf python3-pytest python3-tqdm snakemake
  python3-scipy python3-skimage python3-pywt
  slurmctld slurmd slurm-client munge iproute2
  libtiff-tools openssl clang libclang-rt-14-dev chromium imagej xvfb xauth
)
runtime_pkgs=(
  libgrpc++1.51 libprotobuf32 libtbb12 libopencv-core406 libopencv-imgproc406 libtiff6
  libdeflate0 libisal2 libzstd1 libblosc1 libprometheus-cpp-core1.0 libprometheus-cpp-pull1.0
  libsqlite3-0 libpng16-16 libcpp-httplib0.11
)

case "${1:-}" in
  "")
    pkgs=("${compile_pkgs[@]}" "${test_pkgs[@]}")
    # node and npm run zarrita (the tests' Zarr v3 reader, from the npm registry): Debian's
    # packages unless a node with its npm is already installed (NodeSource's bundles npm).
    command -v node >/dev/null && command -v npm >/dev/null || pkgs+=(nodejs npm)
    ;;
  --build) pkgs=("${compile_pkgs[@]}") ;;
  --runtime) pkgs=("${runtime_pkgs[@]}") ;;
  *) echo "usage: install-deps.sh [--build | --runtime]" >&2; exit 2 ;;
esac

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#pkgs[@]} packages present"
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
sudo=""
[[ $(id -u) -ne 0 ]] && sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-deps: done"
