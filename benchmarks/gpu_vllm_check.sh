#!/usr/bin/env bash
# Backend vllm against real vLLM (one H100/H200; a few minutes): `sluice serve` with serving.backend=vllm on the
# offline SmolLM2-135M-Instruct, alias moves under load (LoRA, then full fine-tune), failed requests (must be 0),
# move times and the front door's overhead against a replica directly (benchmarks/gpu_vllm_check.py).
# Needs the [vllm] extra in the GPU machine's own environment (vLLM pins its own CUDA torch, which cannot sit
# beside this project's torch pin, so it is never installed here); carry wheels under .whl/ when the machine is
# offline. CI never runs this: it tests the same control plane against the built-in engine as the stand-in.
#   bash benchmarks/gpu_vllm_check.sh [--replicas 2] [--clients 8] [--seconds 15] [--json $OUT/vllm.json]
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
if [ -d .whl ]; then
  "$python" -m pip install --quiet --no-index --no-deps .whl/*.whl
fi
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
"$python" -c "import torch; assert torch.cuda.is_available(), 'no CUDA GPU'; print(torch.cuda.get_device_name(0))"
command -v vllm >/dev/null || { echo "vllm is not on PATH: pip install 'sluicegate[vllm]', or install vLLM in a venv of its own and put its bin/ first on PATH (the engines run as separate processes)" >&2; exit 2; }
exec "$python" benchmarks/gpu_vllm_check.py "$@"
