#!/usr/bin/env bash
# The CUDA check in one call: the GPU tests, then the speed benchmark, on a machine with one GPU and no network.
#
# 1. Here (with network), in the repository root, once: fetch the wheels of what the GPU machine's image lacks
#    (fvcore, iopath and their small pure-Python needs yacs and termcolor, built with `pip wheel`; PyAV's binary
#    wheel for CPython 3.12) into .whl/, which .gitignore keeps out of git:
#        bash benchmarks/gpu_check.sh wheels
# 2. On the GPU machine, from the repository root, with .whl/ carried along (about 37 MiB); on this workplace's
#    device tool:
#        run(command="bash benchmarks/gpu_check.sh", carry=[".whl"], timeout_s=540)
#    It installs the wheels into /tmp/site (the image's own torch and Python stay: torch 2.11.0 as last listed,
#    with which the CPU test suite and this script's dry run pass, benchmarks/results/torch_versions.md), runs
#    `pytest -m gpu`, then benchmarks/bench_speed.py on CUDA, and leaves under $OUT (default ./gpu_check_out):
#        gpu_tests.log   the pytest output with the logged SDPA backends, sync counts and memory figures
#        speed_gpu.md    the benchmark's section for benchmarks/results/speed.md (append it there)
#        speed_gpu.json  the same rows, machine-readable
#        loader_gpu.md   the data loader's clips/s with 0, 8 and 15 workers (benchmarks/bench_loader.py)
#        gpu_check.log   everything, in order
#    Budget: 8 minutes at most (timeouts: the tests 180 s, the benchmark 240 s, the loader 45 s), about 6 expected.
# Dry run, to check the steps on a machine without a GPU before spending device time (the GPU tests skip, and the
# benchmark times the demo model on the CPU, into $OUT):
#        GPU_CHECK_DRY_RUN=1 PYTHON=.venv/bin/python bash benchmarks/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."

if [[ "${1:-}" == "wheels" ]]; then
    set -e
    PY=${PYTHON:-python3}
    mkdir -p .whl
    "$PY" -m pip wheel --no-deps -w .whl fvcore==0.1.5.post20221221 iopath==0.1.10 yacs==0.1.8 termcolor==3.3.0
    "$PY" -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d .whl av==18.1.0
    ls -la .whl
    exit 0
fi

PY=${PYTHON:-python3}
DRY_RUN=${GPU_CHECK_DRY_RUN:-0}
OUT=${OUT:-$PWD/gpu_check_out}
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu_check.log") 2>&1
tee_pid=$!
export PYTHONUNBUFFERED=1
started=$SECONDS

if ls .whl/*.whl >/dev/null 2>&1; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || { echo "installing the carried wheels failed"; exit 1; }
    export PYTHONPATH=/tmp/site:$PWD
else
    echo "no .whl/ folder: using the packages already installed"
    export PYTHONPATH=$PWD
fi
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv || true
"$PY" - "$DRY_RUN" <<'EOF' || exit 1
import sys
import av, fvcore, iopath, torch, slowfast_bmvit
print(f"python {sys.version.split()[0]}, torch {torch.__version__}, CUDA {torch.version.cuda}, "
      f"device {torch.cuda.get_device_name() if torch.cuda.is_available() else 'none'}, package {slowfast_bmvit.__file__}")
assert torch.cuda.is_available() or sys.argv[1] == "1", "no CUDA device visible"
EOF

echo "== pytest -m gpu ($((SECONDS - started)) s)"
timeout 180 "$PY" -m pytest -q -m gpu -p no:cacheprovider -o log_cli=true --log-cli-level=INFO -rA tests/test_gpu.py \
    2>&1 | tee "$OUT/gpu_tests.log"
tests_status=${PIPESTATUS[0]}

echo "== bench_speed.py ($((SECONDS - started)) s)"
# The matching share and the profile first, then the groups in order of importance; a group that would start after
# --time-budget seconds is skipped, and the JSON keeps every finished group if the timeout stops the run.
if [[ "$DRY_RUN" == "1" ]]; then
    bench=(--device cpu --iters 1 --warmup 1 --train-batch 2 --threads 1
           --rows demo:folded,sdpa,explicit:fp32:off:off demo:folded:fp32:off:on --loss-share 2)
else
    # The compiled group times training only: one compilation (on the CPU the demo model's three took 191 s, the
    # training step's alone 105 s, benchmarks/results/speed.md).
    bench=(--device cuda --iters 10 --warmup 3 --infer-batch 16 --train-batch auto --auto-start 8 --auto-limit 256
           --compiled-inference off --time-budget 170 --loss-share 8 --loss-share-steps 5
           --profile 15 --profile-batch 16
           --rows ava:folded,sdpa,explicit:bf16:off:off ava:folded:bf16:on:off ava:folded:bf16:off:on
                  two_stage:folded,sdpa:bf16:off:off demo:folded,sdpa:bf16:off:off)
fi
rm -f "$OUT/speed_gpu.md" "$OUT/speed_gpu.json"
timeout 240 "$PY" benchmarks/bench_speed.py "${bench[@]}" --out "$OUT/speed_gpu.md" --json "$OUT/speed_gpu.json"
bench_status=$?
# A group that fails is reported in the table and the exit status; a run stopped by the timeout writes no table, so
# it is rendered from the JSON kept after every group.
if [[ ! -s "$OUT/speed_gpu.md" && -s "$OUT/speed_gpu.json" ]]; then
    "$PY" benchmarks/bench_speed.py --from-json "$OUT/speed_gpu.json" --out "$OUT/speed_gpu.md"
fi

echo "== data loader ($((SECONDS - started)) s)"
# Can the CPUs of this machine decode clips as fast as the GPU trains on them? AVA-like 360x480 JPEG frames.
if [[ "$DRY_RUN" == "1" ]]; then
    loader=(--workers 0 --batches 2 --videos 8 --frame-size 240 320)
else
    loader=(--workers 0 8 15 --batches 10 --videos 36)
fi
timeout 45 "$PY" benchmarks/bench_loader.py --resize-modes square "${loader[@]}" 2>&1 | tee "$OUT/loader_gpu.md"

echo "== done in $((SECONDS - started)) s: pytest exit $tests_status, benchmark exit $bench_status"
status=$(( tests_status != 0 || bench_status != 0 ))
exec >&- 2>&-
wait "$tee_pid" 2>/dev/null  # every line in gpu_check.log before the machine is handed back
exit $status
