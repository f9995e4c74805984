#!/usr/bin/env bash
# Builds augur with the CUDA backend on the GPU machine (Ubuntu 24.04, no protobuf-c,
# jansson, oniguruma, utf8proc, libmicrohttpd or cmocka installed, no network): the Debian
# 12 packages carried in .debs/ (libonig5, libonig-dev, libmicrohttpd12, libmicrohttpd-dev
# and jq among them) are unpacked into /opt/pb and found through pkg-config there.
# Fetch them once on a Debian 12 machine (and pass .debs as carried files):
#   mkdir -p .debs && cd .debs && apt-get download libprotobuf-c1 libprotobuf-c-dev \
#     protobuf-c-compiler libprotoc32 libprotobuf32 libjansson4 libjansson-dev libcmocka0 \
#     libcmocka-dev libutf8proc2 libutf8proc-dev libzstd-dev libzstd1 zlib1g-dev libonig5 \
#     libonig-dev libmicrohttpd12 libmicrohttpd-dev jq libjq1
#   usage: bash tools/gpu/build.sh [BUILD_DIR]
# AUGUR_CUDA_EXTRA_FLAGS adds nvcc flags (for example -lineinfo, for ncu's source view).
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build-gpu}
for f in .debs/*.deb; do dpkg -x "$f" /opt/pb; done
# libmicrohttpd.pc names gnutls for static links only; the machine has the gnutls runtime
# that libmicrohttpd12 loads but no gnutls.pc, which pkg-config would otherwise demand.
sed -i '/^Requires.private:/d' /opt/pb/usr/lib/x86_64-linux-gnu/pkgconfig/libmicrohttpd.pc
export PKG_CONFIG_SYSROOT_DIR=/opt/pb
export PKG_CONFIG_LIBDIR=/opt/pb/usr/lib/x86_64-linux-gnu/pkgconfig:/opt/pb/usr/share/pkgconfig
export LD_LIBRARY_PATH=/opt/pb/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
export PATH=/opt/pb/usr/bin:/usr/local/cuda/bin:$PATH
# NCCL may live in the CUDA toolkit or in a Python wheel (nvidia-nccl).
nccl_lib=$(dirname "$(find / -name 'libnccl.so*' -not -path '*/proc/*' 2>/dev/null | head -n1)")
nccl_inc=$(dirname "$(find / -name nccl.h -not -path '*/proc/*' 2>/dev/null | head -n1)")
echo "build.sh: NCCL library in $nccl_lib, header in $nccl_inc" >&2
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 \
  -DCMAKE_CUDA_FLAGS="-gencode=arch=compute_90,code=sm_90 ${AUGUR_CUDA_EXTRA_FLAGS:-}" \
  -DNCCL_LIBRARY="$(ls "$nccl_lib"/libnccl.so* | head -n1)" -DNCCL_INCLUDE_DIR="$nccl_inc"
cmake --build "$build" -j "$(nproc)"
