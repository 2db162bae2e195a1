#!/usr/bin/env bash
# CMake flags for building llama-cpp-python (llama.cpp) on this machine: what `-march=native` would
# enable, minus AMX. Some virtual machines advertise AMX (cpuinfo amx_*) without enabling its state,
# and a native build then dies with SIGILL on its first batch; AVX-512 works there. The wheel is built
# from source on the machine that runs it (pip caches it per machine), so using this CPU's features
# is safe. Off x86_64, llama.cpp's own native detection is kept.
set -u
[ "$(uname -m)" = x86_64 ] || exit 0
flags=$(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null || true)
has() { [[ " $flags " == *" $1 "* ]]; }
onoff() { if has "$2"; then echo -n " -D$1=ON"; else echo -n " -D$1=OFF"; fi; }
echo -n "-DGGML_NATIVE=OFF"
onoff GGML_SSE42 sse4_2; onoff GGML_AVX avx; onoff GGML_AVX2 avx2; onoff GGML_FMA fma
onoff GGML_F16C f16c; onoff GGML_BMI2 bmi2; onoff GGML_AVX_VNNI avx_vnni
if has avx512f && has avx512bw && has avx512dq && has avx512vl && has avx512cd; then
    echo -n " -DGGML_AVX512=ON"
    onoff GGML_AVX512_VBMI avx512vbmi; onoff GGML_AVX512_VNNI avx512_vnni; onoff GGML_AVX512_BF16 avx512_bf16
fi
echo " -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
