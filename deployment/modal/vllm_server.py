"""The vLLM server on Modal: a base model plus every LoRA adapter in the adapters Volume, with
XGrammar structured outputs, behind Modal's proxy auth and vLLM's API key.

    modal run deployment/modal/vllm_server.py::download_model   # once: weights to the Volume
    modal deploy deployment/modal/vllm_server.py                # HI_MOE_DEPLOY_MODE=dev|demo|prod

The command line comes from `hi_moe.ops.serving.vllm_command`, the one the local CPU server and the
integration tests run. See README.md here for set-up, costs, modes, adapters and key rotation.
"""

from __future__ import annotations

import os
import subprocess

import modal

from hi_moe.ops import deploy
from hi_moe.ops.serving import ServeOptions, find_adapters, redact, server_env, vllm_command

config = deploy.deployment()
mode = config.settings

image = (
    modal.Image.from_registry(deploy.CUDA_IMAGE, add_python="3.11")
    .uv_pip_install(
        f"vllm=={deploy.VLLM_VERSION}",
        "huggingface-hub==2.4.0",
        "pydantic-settings>=2.6,<3",
        "tenacity>=9,<10",
        "typer>=0.15",
        "rich>=13",
        "jsonschema>=4.23,<5",
    )
    .env({"VLLM_NO_USAGE_STATS": "1"})
    .add_local_python_source("hi_moe")
)

models = modal.Volume.from_name(deploy.MODELS_VOLUME, create_if_missing=True)
adapters = modal.Volume.from_name(deploy.ADAPTERS_VOLUME, create_if_missing=True)
cache = modal.Volume.from_name(deploy.CACHE_VOLUME, create_if_missing=True)
api_key = modal.Secret.from_name(deploy.API_KEY_SECRET, required_keys=["VLLM_API_KEY"])

app = modal.App(deploy.APP_NAME, image=image)


def server_options(adapters_dir: str = deploy.ADAPTERS_DIR, key: str | None = None) -> ServeOptions:
    """What `serve` starts: every adapter directory in the Volume, served under its name."""
    from pydantic import SecretStr

    return ServeOptions(
        model=config.model_dir,
        served_model_name=config.served_model_name,
        adapters=find_adapters(adapters_dir),
        host="0.0.0.0",
        port=deploy.PORT,
        api_key=SecretStr(key) if key else None,
        max_model_len=config.max_model_len,
        gpu_memory_utilization=0.90,
        # Room to load adapters at runtime without a restart.
        max_loras=max(len(find_adapters(adapters_dir)), 4),
    )


@app.function(volumes={deploy.MODELS_DIR: models}, timeout=3600)
def download_model() -> str:
    """Fetch the base model, at its pinned revision, into the models Volume once, so
    containers never download it."""
    from huggingface_hub import snapshot_download

    target = config.model_dir
    snapshot_download(config.model, revision=config.pinned_revision(), local_dir=target)
    models.commit()
    return target


@app.function(
    gpu=config.gpu,
    volumes={deploy.MODELS_DIR: models, deploy.ADAPTERS_DIR: adapters, deploy.CACHE_DIR: cache},
    secrets=[api_key],
    scaledown_window=mode.scaledown_s,
    min_containers=mode.min_containers,
    max_containers=mode.max_containers,
    timeout=24 * 3600,
)
@modal.concurrent(max_inputs=mode.max_inputs)
@modal.web_server(
    port=deploy.PORT, startup_timeout=config.startup_timeout_s, requires_proxy_auth=True
)
def serve() -> None:
    """Start vLLM; Modal routes requests to it once its port answers."""
    adapters.reload()  # adapters trained or uploaded since this container's image was built
    command = vllm_command(server_options(key=os.environ["VLLM_API_KEY"]), python="python")
    print("starting:", " ".join(redact(command)))
    subprocess.Popen(command, env=server_env(cpu=False))
