#!/usr/bin/env bash
# Build llama-cpp-python once into a project-owned wheel folder, with portable CPU flags.
#
# Why not a plain `pip install`: with GGML_NATIVE (the default) ggml enables AMX on CPUs that
# have it, and its AMX matmul segfaults on this machine class (llama.cpp issue 20824); a
# -march=native wheel would also crash with SIGILL on an older CPU. AVX2+FMA+F16C runs on any
# x86-64 from the last decade. pip's own wheel cache does not key on CMAKE_ARGS, so the wheel
# lives in our folder, named by its flags.
set -euo pipefail
version="$1"; pip="$2"
dir="${VOICE_AGENT_WHEELS:-$HOME/.cache/voice-agent/wheels}/llama-avx2"
if ls "$dir"/llama_cpp_python-"$version"-*.whl >/dev/null 2>&1; then
    echo "$dir"; exit 0
fi
mkdir -p "$dir"
echo "building llama-cpp-python $version from source (about 8 minutes, once)" >&2
CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF" \
    $pip wheel --no-cache-dir --no-deps -w "$dir.tmp" "llama-cpp-python==$version" >&2
mv "$dir.tmp"/llama_cpp_python-*.whl "$dir"/ && rmdir "$dir.tmp"
echo "$dir"
