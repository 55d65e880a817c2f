"""What the Modal deployment runs, as data: modes, GPU, base model, names of volumes and secret.

`deployment/modal/*.py` read this (the library is added to their image), so the tests check the
same values the apps are built from. Environment variables choose: `HI_MOE_DEPLOY_MODE` (dev,
demo, prod), `HI_MOE_DEPLOY_MODEL`, `HI_MOE_DEPLOY_GPU`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, TypeAlias

__all__ = ["MODES", "Deployment", "Mode", "deployment"]

Mode: TypeAlias = Literal["dev", "demo", "prod"]

VLLM_VERSION = "0.32.0"
CUDA_IMAGE = "nvidia/cuda:12.8.1-devel-ubuntu22.04"
DEFAULT_MODEL = "Qwen/QwQ-32B-AWQ"
APP_NAME = "hi-moe-vllm"
TRAIN_APP_NAME = "hi-moe-train"
MODELS_VOLUME = "hi-moe-models"
ADAPTERS_VOLUME = "hi-moe-adapters"
DATA_VOLUME = "hi-moe-data"
CACHE_VOLUME = "hi-moe-vllm-cache"
API_KEY_SECRET = "hi-moe-vllm-api-key"
"""A Modal Secret holding VLLM_API_KEY."""
MODELS_DIR = "/models"
ADAPTERS_DIR = "/adapters"
DATA_DIR = "/data"
CACHE_DIR = "/root/.cache/vllm"
PORT = 8000


@dataclass(frozen=True)
class ModeSettings:
    gpu: str
    scaledown_s: int
    """Idle seconds before a container stops (then the app scales to zero)."""
    min_containers: int
    max_containers: int
    max_inputs: int
    """Requests one container takes at once: vLLM batches them."""


MODES: Mapping[Mode, ModeSettings] = {
    # Cheap while building: small GPU, quick to scale to zero, one container.
    "dev": ModeSettings("A100-40GB", scaledown_s=120, min_containers=0, max_containers=1,
                        max_inputs=16),
    # For showing: stays warm a while between requests.
    "demo": ModeSettings("A100-80GB", scaledown_s=600, min_containers=0, max_containers=2,
                         max_inputs=32),
    # Serving: one container always warm (no cold starts), scales out with load.
    "prod": ModeSettings("A100-80GB", scaledown_s=900, min_containers=1, max_containers=8,
                         max_inputs=64),
}  # fmt: skip


@dataclass(frozen=True)
class Deployment:
    mode: Mode
    model: str
    served_model_name: str
    gpu: str
    settings: ModeSettings
    startup_timeout_s: int = 1200
    """Container start plus model load; a 32B model from a Volume takes minutes."""
    max_model_len: int = 16384

    @property
    def model_dir(self) -> str:
        return f"{MODELS_DIR}/{self.model.replace('/', '--')}"


def deployment(env: Mapping[str, str] | None = None) -> Deployment:
    """The deployment the environment asks for; ValueError for an unknown mode."""
    env = os.environ if env is None else env
    mode = env.get("HI_MOE_DEPLOY_MODE", "dev")
    if mode not in MODES:
        raise ValueError(f"HI_MOE_DEPLOY_MODE must be one of {', '.join(MODES)}, got {mode!r}")
    settings = MODES[mode]  # type: ignore[index]
    model = env.get("HI_MOE_DEPLOY_MODEL", DEFAULT_MODEL)
    return Deployment(
        mode=mode,  # type: ignore[arg-type]
        model=model,
        served_model_name=env.get("HI_MOE_DEPLOY_SERVED_NAME", model.rsplit("/", 1)[-1].lower()),
        gpu=env.get("HI_MOE_DEPLOY_GPU", settings.gpu),
        settings=settings,
    )
