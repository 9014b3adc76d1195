#!/usr/bin/env bash
# The test suite against another torch release, in a virtual environment of its own (.venv stays as it is):
#     bash benchmarks/check_torch_version.sh 2.8.0 [VENV]        (VENV defaults to /tmp/venv-torch-2.8.0)
# Installs torch==VERSION beside everything else requirements-dev.txt pins, pyslowfast with --no-deps and this
# package in editable mode (an existing VENV is reused), then runs the default test suite, the slow tests, and
# tests/test_distributed.py 12 times: each of its runs of several processes ends in destroy_process_group, which
# can hang with some torch releases (a hung run is stopped after 60 s and counted; the default suite after 30 minutes
# and the slow tests after 15, and their summary then says so). Prints one Markdown row for
# benchmarks/results/torch_versions.md. PyPI's torch wheels for Linux are CUDA builds of several GB; the tests run
# on the CPU.
set -uo pipefail
cd "$(dirname "$0")/.."

VERSION=${1:?usage: bash benchmarks/check_torch_version.sh VERSION [VENV]}
VENV=${2:-/tmp/venv-torch-$VERSION}
PY=$VENV/bin/python
LOGS=$(mktemp -d)

if [[ ! -x $PY ]]; then
    python3 -m venv "$VENV" || exit 1
fi
grep -hv '^torch==\|^-r\|^#\|^$' requirements.txt requirements-dev.txt > "$LOGS/requirements.txt"
"$PY" -m pip install -q --disable-pip-version-check wheel setuptools "torch==$VERSION" -r "$LOGS/requirements.txt" \
    || { echo "installing torch==$VERSION failed"; exit 1; }
"$PY" -m pip install -q --disable-pip-version-check --no-deps pyslowfast==1.0 || exit 1
"$PY" -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e . || exit 1
installed=$("$PY" -c "import torch, sys; print(torch.__version__, sys.version.split()[0])")
echo "torch and python: $installed (logs in $LOGS)"

summary() {  # the last line of a pytest log without its warnings count, with the script's wall-clock seconds
    echo "$(tail -n 1 "$1" | sed 's/=//g; s/, [0-9]* warnings\?//; s/^ *//; s/ *$//') (wall ${2} s)"
}
started=$SECONDS
setsid timeout -k 10 1800 "$PY" -m pytest -q -p no:cacheprovider > "$LOGS/default.log" 2>&1
status=$?
if [[ $status -eq 124 || $status -eq 137 ]]; then echo "Terminated after 1800 s" >> "$LOGS/default.log"; fi
default=$(summary "$LOGS/default.log" $((SECONDS - started)))
echo "default suite: $default"
started=$SECONDS
setsid timeout -k 10 900 "$PY" -m pytest -q -p no:cacheprovider -m slow > "$LOGS/slow.log" 2>&1
status=$?
if [[ $status -eq 124 || $status -eq 137 ]]; then echo "Terminated after 900 s" >> "$LOGS/slow.log"; fi
slow=$(summary "$LOGS/slow.log" $((SECONDS - started)))
echo "slow tests: $slow"
finished=0
for run in $(seq 1 12); do
    # In a process group of its own, so that the workers a hung run leaves behind can be stopped with it.
    setsid timeout -k 5 60 "$PY" -m pytest -q -p no:cacheprovider tests/test_distributed.py \
        > "$LOGS/distributed_$run.log" 2>&1 &
    group=$!
    wait $group && finished=$((finished + 1))
    pkill -9 -g $group 2>/dev/null
done
echo "tests/test_distributed.py: $finished of 12 runs passed"
echo
echo "Machine: $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'), $(nproc) cores, Python ${installed#* }; date $(date +%F)."
echo "| ${installed% *} | $default | $slow | $finished / 12 |"
