"""LoRA training for the specialists: the data format, its validation, and the trainer setup.

`deployment/modal/training.py` runs `train_lora` on a GPU with a 4-bit base (QLoRA); the tests
run the same function on CPU on the tiny model without 4-bit (bitsandbytes needs a GPU).
Training data is JSON lines, one example per line, either `{"domain", "prompt", "answer"}`
(rendered with the domain's system prompt by `pipeline.specialists.training_example`, the format
the harness asks in) or already `{"messages": [...]}`.

Needs the `train` extra (torch, transformers, peft, trl).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hi_moe.pipeline.specialists import training_example

__all__ = [
    "LORA_TARGETS",
    "DataError",
    "TrainConfig",
    "load_examples",
    "parse_example",
    "train_lora",
    "validate_lines",
]

# Attention and MLP projections (Qwen2/Llama names): what QLoRA adapts.
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
_ROLES = {"system", "user", "assistant"}


class DataError(ValueError):
    """Training data that cannot be used; `problems` names each bad line by number."""

    def __init__(self, problems: list[str]) -> None:
        shown = "; ".join(problems[:10]) + (
            f"; and {len(problems) - 10} more" if len(problems) > 10 else ""
        )
        super().__init__(f"{len(problems)} bad line(s): {shown}")
        self.problems = problems


def parse_example(line: str) -> dict[str, list[dict[str, str]]]:
    """One JSONL line as a `messages` example; ValueError saying what is wrong."""
    try:
        data = json.loads(line)
    except json.JSONDecodeError as error:
        raise ValueError(f"not JSON ({error.msg})") from None
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    if "messages" in data:
        messages = data["messages"]
        if not isinstance(messages, list) or not messages:
            raise ValueError("messages must be a non-empty list")
        for index, message in enumerate(messages):
            if (
                not isinstance(message, dict)
                or message.get("role") not in _ROLES
                or not isinstance(message.get("content"), str)
            ):
                raise ValueError(f"messages[{index}] needs a role (system/user/assistant) and text")
        if messages[-1]["role"] != "assistant":
            raise ValueError("the last message must be the assistant's answer")
        return {"messages": [{"role": m["role"], "content": m["content"]} for m in messages]}
    missing = [key for key in ("domain", "prompt", "answer") if not isinstance(data.get(key), str)]
    if missing:
        raise ValueError(
            f"needs string fields domain, prompt, answer (missing: {', '.join(missing)})"
        )
    if not data["prompt"].strip() or not data["answer"].strip():
        raise ValueError("prompt and answer must not be empty")
    return training_example(data["domain"], data["prompt"], data["answer"])


def validate_lines(lines: Iterable[str]) -> tuple[list[dict[str, Any]], list[str]]:
    """Every example, and a problem per bad line ("line 3: not JSON ..."); blank lines skip."""
    examples: list[dict[str, Any]] = []
    problems: list[str] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            examples.append(parse_example(line))
        except ValueError as error:
            problems.append(f"line {number}: {error}")
    if not examples and not problems:
        problems.append("no examples")
    return examples, problems


def load_examples(path: str | Path) -> list[dict[str, Any]]:
    """Every example in a JSONL file, or `DataError` naming every bad line."""
    with Path(path).open(encoding="utf-8") as lines:
        examples, problems = validate_lines(lines)
    if problems:
        raise DataError([f"{path}: {p}" for p in problems])
    return examples


@dataclass(frozen=True)
class TrainConfig:
    rank: int = 16
    alpha: int | None = None
    """Defaults to twice the rank."""
    dropout: float = 0.05
    epochs: float = 1.0
    learning_rate: float = 2e-4
    max_steps: int = -1
    """Stop after this many optimiser steps (-1: run the epochs)."""
    batch_size: int = 1
    gradient_accumulation: int = 8
    max_length: int = 2048
    quantize_4bit: bool = True
    """QLoRA: load the base in 4-bit NF4 (needs a CUDA GPU and bitsandbytes)."""
    seed: int = 0


def train_lora(
    base_model: str | Path,
    examples: list[dict[str, Any]],
    output_dir: str | Path,
    config: TrainConfig | None = None,
) -> Path:
    """Train a LoRA adapter on `examples` and save it (adapter_config.json and weights) to
    `output_dir`, ready for vLLM's --lora-modules or runtime loading."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    config = config or TrainConfig()
    if not examples:
        raise DataError(["no examples"])
    gpu = torch.cuda.is_available()
    if config.quantize_4bit and not gpu:
        raise ValueError("4-bit (QLoRA) training needs a CUDA GPU: set quantize_4bit=False")
    load: dict[str, Any] = {"dtype": torch.bfloat16 if gpu else torch.float32}
    if config.quantize_4bit:
        from transformers import BitsAndBytesConfig

        load["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_compute_dtype=torch.bfloat16,
            bnb_4bit_use_double_quant=True,
        )
    tokenizer = AutoTokenizer.from_pretrained(base_model)
    model = AutoModelForCausalLM.from_pretrained(base_model, **load)
    names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    targets = [t for t in LORA_TARGETS if t in names]
    lora = LoraConfig(
        r=config.rank,
        lora_alpha=config.alpha or 2 * config.rank,
        lora_dropout=config.dropout,
        target_modules=targets,
        task_type="CAUSAL_LM",
    )
    output = Path(output_dir)
    scratch = tempfile.mkdtemp(prefix="hi-moe-train-")  # the trainer's files, not the adapter's
    args = SFTConfig(
        output_dir=scratch,
        num_train_epochs=config.epochs,
        max_steps=config.max_steps,
        learning_rate=config.learning_rate,
        per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.gradient_accumulation,
        max_length=config.max_length,
        lr_scheduler_type="cosine" if config.max_steps < 0 else "constant",
        bf16=gpu,
        use_cpu=not gpu,
        gradient_checkpointing=gpu,
        logging_steps=10,
        save_strategy="no",
        report_to=[],
        seed=config.seed,
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(examples),
        processing_class=tokenizer,
        peft_config=lora,
    )
    try:
        trainer.train()
        trainer.model.save_pretrained(output)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return output
