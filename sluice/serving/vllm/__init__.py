"""Backend vllm (``serving.backend: vllm``): ``sluice serve`` stays the front door and forwards
generation to ``vllm serve`` replicas that follow the registry aliases.

- :mod:`~sluice.serving.vllm.plan` — the decisions, as plain functions (what an alias move takes,
  which alias a request names);
- :mod:`~sluice.serving.vllm.router` — each alias's route, switched atomically, and the requests
  in flight on it (the drain);
- :mod:`~sluice.serving.vllm.replicas` — engine processes on loopback ports, health, restarts
  that re-load the adapters, shutdown;
- :mod:`~sluice.serving.vllm.follower` — follows the aliases and carries the moves out;
- :mod:`~sluice.serving.vllm.proxy` — the generation path (streaming passed through as it comes);
- :mod:`~sluice.serving.vllm.rollout` — canary and shadow routing (the built-in engine's split);
- :mod:`~sluice.serving.vllm.metrics` — ``/metrics`` merged with each replica's;
- :mod:`~sluice.serving.vllm.app` — the front door's app.

Any server that speaks vLLM's OpenAI endpoints, ``/health``, ``/metrics`` and
``/v1/load_lora_adapter`` / ``/v1/unload_lora_adapter`` fits ``serving.vllm_command``. CI has no
GPU, so the tests run this control plane against a stand-in: the built-in engine served the vLLM
way (``python -m sluice.serving.engine_server``). Real vLLM is checked only on a GPU machine, by
``benchmarks/gpu_vllm_check.sh`` (with the ``[vllm]`` extra installed).
"""
