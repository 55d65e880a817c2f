"""A real vLLM server for the integration tests: a tiny model built here, two LoRA adapters,
started through `hi_moe.ops.serving` (the command line Modal runs) and stopped by its pid."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydantic import SecretStr

from hi_moe.ops.serving import LocalServer, ServeOptions, free_port
from hi_moe.ops.tiny import TinyModel, build_tiny_model
from hi_moe.providers.modal_vllm import ModalVLLMProvider

API_KEY = "integration-test-key-7c1e"
BASE_MODEL = "tiny-base"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything under tests/integration/ is an integration test, marked or not, so that
    `-m "not integration"` leaves only the fast offline tests."""
    here = Path(__file__).parent
    for item in items:
        if item.path.is_relative_to(here):
            item.add_marker(pytest.mark.integration)


def require(module: str, extra: str) -> None:
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"needs the {extra} extra ({module}): pip install 'hi-moe[{extra}]'")


@dataclass(frozen=True)
class VLLMServer:
    url: str
    api_key: str
    pid: int
    tiny: TinyModel
    log_path: Path


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    require("peft", "train")
    return build_tiny_model(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="session")
def vllm_server(
    tiny_model: TinyModel, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[VLLMServer]:
    require("vllm", "server")
    options = ServeOptions.from_directories(
        tiny_model.model_dir,
        tiny_model.adapters_dir,
        served_model_name=BASE_MODEL,
        port=free_port(),
        api_key=SecretStr(API_KEY),
        dtype="float32",
        max_model_len=2048,
    )
    log_path = tmp_path_factory.mktemp("vllm") / "server.log"
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    from hi_moe.ops.serving import server_env

    with LocalServer(options, log_path=log_path, env=server_env(base=env)) as server:
        assert server.pid is not None
        yield VLLMServer(server.url, API_KEY, server.pid, tiny_model, log_path)


@pytest.fixture
async def provider(vllm_server: VLLMServer) -> AsyncIterator[ModalVLLMProvider]:
    async with ModalVLLMProvider(
        vllm_server.url, api_key=vllm_server.api_key, request_timeout_s=30.0
    ) as chosen:
        yield chosen
