"""What the Modal deployment runs, as data: modes, GPU, base model, names of volumes and secret.

`deployment/modal/*.py` read this (the library is added to their image), so the tests check the
same values the apps are built from. Environment variables choose: `HI_MOE_DEPLOY_MODE` (dev,
demo, prod), `HI_MOE_DEPLOY_MODEL`, `HI_MOE_DEPLOY_MODEL_REVISION`, `HI_MOE_DEPLOY_GPU`.
"""

from __future__ import annotations

import os
import re
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
_COMMIT = re.compile(r"[0-9a-f]{40}")


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
    model_revision: str | None = None
    """The model's commit on the hub (40 hex digits): what `download_model` fetches, so that
    the weights served are the ones tested, not whatever the branch points to that day."""
    startup_timeout_s: int = 1200
    """Container start plus model load; a 32B model from a Volume takes minutes."""
    max_model_len: int = 16384

    @property
    def model_dir(self) -> str:
        pinned = f"@{self.model_revision}" if self.model_revision else ""
        return f"{MODELS_DIR}/{self.model.replace('/', '--')}{pinned}"

    def pinned_revision(self) -> str:
        """The revision to download; ValueError saying how to pin one when it is not set."""
        if self.model_revision is None:
            raise ValueError(
                f"pin the revision of {self.model} before downloading it: set "
                "HI_MOE_DEPLOY_MODEL_REVISION to one of its commits (40 hex digits, listed "
                "under the model page's 'Files and versions' history)"
            )
        return self.model_revision


def deployment(env: Mapping[str, str] | None = None) -> Deployment:
    """The deployment the environment asks for; ValueError for an unknown mode."""
    env = os.environ if env is None else env
    mode = env.get("HI_MOE_DEPLOY_MODE", "dev")
    if mode not in MODES:
        raise ValueError(f"HI_MOE_DEPLOY_MODE must be one of {', '.join(MODES)}, got {mode!r}")
    settings = MODES[mode]  # type: ignore[index]
    model = env.get("HI_MOE_DEPLOY_MODEL", DEFAULT_MODEL)
    revision = env.get("HI_MOE_DEPLOY_MODEL_REVISION") or None
    if revision is not None and not _COMMIT.fullmatch(revision):
        raise ValueError(
            f"HI_MOE_DEPLOY_MODEL_REVISION must be a commit id (40 hex digits), not {revision!r}:"
            " a branch or tag can move"
        )
    return Deployment(
        mode=mode,  # type: ignore[arg-type]
        model=model,
        served_model_name=env.get("HI_MOE_DEPLOY_SERVED_NAME", model.rsplit("/", 1)[-1].lower()),
        gpu=env.get("HI_MOE_DEPLOY_GPU", settings.gpu),
        settings=settings,
        model_revision=revision,
    )
