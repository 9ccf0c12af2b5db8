"""A vLLM-shaped server over the built-in engine: the stand-in for ``vllm serve`` on machines
without a GPU (the vLLM backend's tests start it; real vLLM is checked only by the GPU script)::

    python -m sluice.serving.engine_server MODEL_DIR --port P [--host 127.0.0.1] [--enable-lora]
        [--max-loras N] [--served-model-name NAME] [--api-key KEY] [--max-num-seqs N]

It serves one local Hugging Face folder, no registry: ``/v1/chat/completions`` and
``/v1/completions`` (streaming too, vLLM's ``ignore_eos`` and ``min_tokens``), ``GET /v1/models``
(the model, then each loaded adapter with the model as ``parent``), ``GET /health`` (200 once the
model is loaded, 503 before), ``GET /metrics``, and with ``--enable-lora``
``POST /v1/load_lora_adapter`` ``{"lora_name", "lora_path"}`` and ``POST /v1/unload_lora_adapter``
``{"lora_name"}`` (200 ``Success: …`` text; 400 for a missing field, a name already loaded, more
than ``--max-loras``, or LoRA not enabled; 404 for unloading an unknown name). A request's ``model``
is the served name (default: MODEL_DIR as given, like vLLM) or a loaded adapter's name; anything
else is 404. Like vLLM it binds loopback by default and needs no key (``--api-key``: one is needed).

The routes, the generation path and the engine are ``sluice serve``'s own
(:func:`sluice.serving.app.assemble_app`); only where the model comes from differs
(:class:`LocalModel` instead of the alias watcher). The request log and feedback store go to a
temporary folder, removed at exit.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from sluice.serving.model_source import WatchStatus
from sluice.serving.server import ServingError, api_keys_for, bind, url_of


class LocalModel:
    """The engine server's model source: one local folder, loaded once on a thread of its own (the
    alias watcher's surface, so that the routes serve either)."""

    def __init__(self, *, engine, served, path: Path, name: str, enable_lora: bool,  # type: ignore[no-untyped-def]
                 on_served: Callable[[str, str | None], None]):
        self.engine, self.served, self.path, self.name, self.enable_lora = engine, served, path, name, enable_lora
        self.on_served = on_served
        self.status = WatchStatus()
        self._thread: threading.Thread | None = None

    @property
    def uri(self) -> str:
        return str(self.path)

    @property
    def model_name(self) -> str:
        return self.name

    def served_version(self, alias: str | None = None) -> str | None:
        return self.name if self.engine.model is not None else None

    def known(self) -> str:
        return ", ".join(repr(n) for n in sorted(self.served.names())) or f"nothing yet ({self.path} is loading)"

    def check_now(self, **_: object) -> str | None:
        return self.served_version()

    def start(self) -> LocalModel:
        self._thread = threading.Thread(target=self._load, name="sluice-engine-server-load", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 30) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def _load(self) -> None:
        from sluice.serving.adapters import Target, as_peft_model
        from sluice.serving.engine import load_model

        self.status.loading = self.name
        started = time.perf_counter()
        try:
            loaded = load_model(self.name, self.path)
            if self.enable_lora:
                loaded = as_peft_model(loaded)
            target = Target(version=self.name, root=str(self.path), model_version=self.name)
            self.served.install(loaded, base_name=self.name if self.enable_lora else None, base_fingerprint=None,
                                names={"base": {self.name: target}})
            self.on_served("local", self.name)
            logging.getLogger("sluice.serving").info("serving %s as %r (%.1f s to load)", self.path, self.name,
                                                     time.perf_counter() - started)
        except Exception as error:  # /health says why (503); the process stays up to say it
            self.status.last_error = f"cannot load {self.path}: {type(error).__name__}: {error}"
            logging.getLogger("sluice.serving").exception("cannot load %s", self.path)
        finally:
            self.status.loading = None  # last_check stays None: there is no alias to compare with


def build_app(model_dir: Path, *, name: str, enable_lora: bool, max_loras: int, state_dir: Path,
              host: str = "127.0.0.1", api_keys: list[str] | None = None, max_batch_size: int = 8):  # type: ignore[no-untyped-def]
    """The FastAPI app serving ``model_dir`` under ``name`` (the engine starts with its lifespan)."""
    from sluice.core.config import RegistryConfig, ServingConfig, SluiceConfig
    from sluice.core.request_log import REQUEST_LOG
    from sluice.serving.adapters import ServedModels
    from sluice.serving.app import assemble_app, new_engine
    from sluice.serving.feedback import FeedbackStore
    from sluice.serving.state import ServingState
    from sluice.serving.telemetry import RequestLog, Telemetry

    if not (model_dir / "config.json").is_file():
        raise ServingError(f"{model_dir} is not a Hugging Face model folder (no config.json)")
    # vLLM bounds a request by the model's context only; the engine still checks that
    serving = ServingConfig(host=host, state_dir=state_dir, max_adapters=max_loras, max_batch_size=max_batch_size,
                            max_tokens_limit=1 << 20, max_prompt_tokens=1 << 20, default_max_tokens=256,
                            max_body_bytes=16 << 20)
    config = SluiceConfig(registry=RegistryConfig(model_name=name), serving=serving)
    telemetry = Telemetry(name, "local")
    engine = new_engine(config, telemetry)
    served = ServedModels(engine, max_loras)
    telemetry.adapters.set_function(served.loaded_count)
    source = LocalModel(engine=engine, served=served, path=model_dir, name=name, enable_lora=enable_lora,
                        on_served=telemetry.alias_served)
    state = ServingState(config=config, engine=engine, watcher=source, served=served,  # type: ignore[arg-type]
                         telemetry=telemetry, feedback=FeedbackStore(state_dir / "feedback.db"),
                         request_log=RequestLog(state_dir / REQUEST_LOG),
                         api_keys=api_keys_for(host, api_keys or []))
    return assemble_app(state, lora_routes=enable_lora)  # vLLM answers them 404 without --enable-lora


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m sluice.serving.engine_server",
                                     description="A vLLM-shaped OpenAI server over Sluicegate's built-in engine.")
    parser.add_argument("model", help="a local Hugging Face model folder")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--served-model-name", default=None, help="the model's name (default: MODEL as given)")
    parser.add_argument("--enable-lora", action="store_true", help="serve LoRA adapters over the model")
    parser.add_argument("--max-loras", type=int, default=8, help="most adapters loaded at once")
    parser.add_argument("--max-num-seqs", type=int, default=8, help="most requests decoded together")
    parser.add_argument("--api-key", default=None, help="clients must send 'Authorization: Bearer <key>'")
    parser.add_argument("--log-level", default="warning")
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # vLLM flags the stand-in has no use for (e.g. --dtype): said, not fatal
        print(f"engine_server: ignoring {' '.join(unknown)}", file=sys.stderr)
    return args


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    args = parse_args(argv)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see sluice.serving.app.create_app
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with tempfile.TemporaryDirectory(prefix="sluice-engine-server-") as state_dir:
        try:
            app = build_app(Path(args.model).expanduser(), name=args.served_model_name or args.model,
                            enable_lora=args.enable_lora, max_loras=args.max_loras, state_dir=Path(state_dir),
                            host=args.host, api_keys=[args.api_key] if args.api_key else None,
                            max_batch_size=args.max_num_seqs)
            sock = bind(args.host, args.port)
        except ServingError as error:
            print(f"engine_server: {error}", file=sys.stderr)
            raise SystemExit(2) from None
        print(f"engine_server: serving {args.model} at {url_of(args.host, sock.getsockname()[1])}/v1", flush=True)
        server = uvicorn.Server(uvicorn.Config(app, log_level=args.log_level, access_log=False, lifespan="on",
                                               timeout_keep_alive=30))
        # uvicorn shuts down gracefully on SIGTERM, then raises it again under the handler found before
        # it started: this one exits cleanly, so that the temporary folder is removed
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        with contextlib.suppress(KeyboardInterrupt):
            server.run(sockets=[sock])


if __name__ == "__main__":
    main()
