#!/usr/bin/env bash
# DDP scaling on the GPUs of one machine: images/s of 1, 2, 4, ... processes (one GPU each, nccl),
# the same measurement as benchmarks/ddp_scaling.py on CPUs, at a fixed global batch.
#
#   bash benchmarks/gpu/ddp_scaling_gpu.sh                 # resnet50, global batch 256
#   ARCH=resnet20_cifar BATCH=512 bash benchmarks/gpu/ddp_scaling_gpu.sh
#
# Writes benchmarks/results/ddp_scaling_gpu.json. Needs CUDA; run from the repository root.
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-.venv/bin/python}
ARCH=${ARCH:-resnet50}
BATCH=${BATCH:-256}
STEPS=${STEPS:-20}
GPUS=$("$PYTHON" -c "import torch; print(torch.cuda.device_count())")
if [ "$GPUS" -lt 1 ]; then
    echo "no CUDA device: this benchmark needs GPUs (use benchmarks/ddp_scaling.py on CPUs)" >&2
    exit 1
fi
NPROC=(1)
n=2
while [ "$n" -le "$GPUS" ]; do NPROC+=("$n"); n=$((n * 2)); done
if [ "${NPROC[-1]}" -ne "$GPUS" ] && [ "$GPUS" -gt 1 ]; then NPROC+=("$GPUS"); fi
"$PYTHON" benchmarks/ddp_scaling.py --device cuda --arch "$ARCH" --batch "$BATCH" --steps "$STEPS" \
    --nproc "${NPROC[@]}" --repeats 1 --out benchmarks/results/ddp_scaling_gpu.json
