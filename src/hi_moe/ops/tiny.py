"""Build a tiny random Qwen2 chat model and LoRA adapters for it, offline, in seconds.

For trying the stack without a model hub or a GPU, and for the integration tests: vLLM serves
the result like any Hugging Face model directory. The model is random, so its text is noise,
but it is real noise: each adapter really changes the output, and grammar-constrained decoding
really has to steer it.

Needs the `train` extra (torch, transformers, tokenizers, peft).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["TINY_ADAPTERS", "TinyModel", "build_tiny_model"]

TINY_ADAPTERS = ("python-lora", "math-lora")
VOCAB_SIZE = 2048
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
# ChatML, as Qwen2 uses; `add_generation_prompt` opens the assistant turn.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
# Head size 32: vLLM's CPU attention supports head sizes 32, 64, 80, ... but not 16.
MODEL_SHAPE = {
    "hidden_size": 128,
    "intermediate_size": 256,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 2048,  # room for the pipeline's prompts; rotary: no weights
}
LORA_RANK = 8
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]


@dataclass(frozen=True)
class TinyModel:
    model_dir: Path
    adapters_dir: Path
    adapters: tuple[str, ...]


def _corpus() -> Iterable[str]:
    """Local text to train the tokenizer on: Python's own standard library sources, plus the
    JSON and arithmetic the tests ask for. Nothing is downloaded."""
    stdlib = Path(json.__file__).resolve().parent.parent
    for name in (
        "json/__init__.py",
        "json/decoder.py",
        "textwrap.py",
        "string.py",
        "heapq.py",
        "bisect.py",
        "fractions.py",
        "statistics.py",
        "functools.py",
        "random.py",
    ):
        path = stdlib / name
        if path.is_file():
            yield path.read_text(encoding="utf-8", errors="replace")
    yield '{"answer": 42, "steps": ["add", "multiply"], "ok": true, "value": null}\n' * 20
    yield " ".join(f"{a} + {b} = {a + b}." for a in range(30) for b in range(10))


def _build_tokenizer(model_dir: Path) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_corpus(), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        model_max_length=MODEL_SHAPE["max_position_embeddings"],
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(model_dir)


def build_tiny_model(
    directory: str | Path, *, adapters: Iterable[str] = TINY_ADAPTERS, seed: int = 0
) -> TinyModel:
    """Write `model/` (a Hugging Face Qwen2 directory) and `adapters/<name>/` under
    `directory`. Deterministic for a seed. Reuses what an earlier call with the same
    arguments wrote."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    root = Path(directory)
    model_dir, adapters_dir = root / "model", root / "adapters"
    names = tuple(adapters)
    marker = root / "tiny.json"
    recipe = {"seed": seed, "adapters": list(names), "shape": MODEL_SHAPE, "python": sys.version}
    if marker.is_file() and json.loads(marker.read_text()) == recipe:
        return TinyModel(model_dir, adapters_dir, names)

    model_dir.mkdir(parents=True, exist_ok=True)
    _build_tokenizer(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=VOCAB_SIZE,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        torch_dtype="float32",
        **MODEL_SHAPE,
    )
    model = Qwen2ForCausalLM(config)
    model.save_pretrained(model_dir)

    for index, name in enumerate(names):
        # Random (not zero) LoRA weights, a different seed each: every adapter changes outputs.
        torch.manual_seed(seed + 1000 * (index + 1))
        lora = LoraConfig(
            r=LORA_RANK, lora_alpha=2 * LORA_RANK, target_modules=LORA_TARGETS,
            init_lora_weights=False, task_type="CAUSAL_LM",
        )  # fmt: skip
        peft_model = get_peft_model(Qwen2ForCausalLM.from_pretrained(model_dir), lora)
        peft_model.save_pretrained(adapters_dir / name)
    marker.write_text(json.dumps(recipe))
    return TinyModel(model_dir, adapters_dir, names)
