"""LoRA training on Modal: QLoRA (4-bit base, LoRA on attention and MLP projections, trl SFT)
from JSONL in the data Volume into the adapters Volume, where the server picks it up.

    python deployment/modal/upload_data.py python.jsonl          # validated, then uploaded
    modal run deployment/modal/training.py --data python.jsonl --adapter python-lora

The trainer setup and the example format are `hi_moe.ops.training.train_lora` and
`hi_moe.pipeline.specialists.training_example`: the tests run the same code on CPU.
"""

from __future__ import annotations

import modal

from hi_moe.ops import deploy

config = deploy.deployment()

image = (
    modal.Image.from_registry(deploy.CUDA_IMAGE, add_python="3.11")
    .uv_pip_install(
        "torch==2.13.0",
        "transformers==5.19.0",
        "peft==0.21.2",
        "trl==1.16.0",
        "datasets==5.2.0",
        "bitsandbytes==0.50.2",
        "accelerate==1.15.0",
        "pydantic-settings>=2.6,<3",
        "tenacity>=9,<10",
        "jsonschema>=4.23,<5",
    )
    .add_local_python_source("hi_moe")
)

models = modal.Volume.from_name(deploy.MODELS_VOLUME, create_if_missing=True)
adapters = modal.Volume.from_name(deploy.ADAPTERS_VOLUME, create_if_missing=True)
data = modal.Volume.from_name(deploy.DATA_VOLUME, create_if_missing=True)

app = modal.App(deploy.TRAIN_APP_NAME, image=image)


@app.function(
    gpu=config.gpu,
    volumes={deploy.MODELS_DIR: models, deploy.ADAPTERS_DIR: adapters, deploy.DATA_DIR: data},
    timeout=6 * 3600,
)
def train(
    data_file: str,
    adapter: str,
    rank: int = 16,
    epochs: float = 1.0,
    learning_rate: float = 2e-4,
    max_steps: int = -1,
    base_model_dir: str = config.model_dir,
) -> str:
    """Train `adapter` from `/data/<data_file>`; write it to `/adapters/<adapter>`."""
    from hi_moe.ops.training import TrainConfig, load_examples, train_lora

    examples = load_examples(f"{deploy.DATA_DIR}/{data_file}")
    target = f"{deploy.ADAPTERS_DIR}/{adapter}"
    train_lora(
        base_model_dir,
        examples,
        target,
        TrainConfig(
            rank=rank,
            epochs=epochs,
            learning_rate=learning_rate,
            max_steps=max_steps,
            quantize_4bit=True,
        ),
    )
    adapters.commit()
    return target


@app.local_entrypoint()
def main(data: str, adapter: str, rank: int = 16, epochs: float = 1.0, lr: float = 2e-4) -> None:
    target = train.remote(data, adapter, rank=rank, epochs=epochs, learning_rate=lr)
    print(f"trained {adapter} into {target}. Serve it without a redeploy:")
    print(f"  hi-moe load-adapter {adapter} {target}    # with HI_MOE_PROVIDER=modal set")
    print("or let new containers pick it up (every adapter in the Volume is served at start).")
