"""A harness built on hi_moe: the provider comes from configuration, the pipeline does the rest.

    python examples/harness.py "Write a function that merges two sorted lists"

With nothing configured this runs offline on the mock provider, and says so. Point it at a
vLLM server with
    export HI_MOE_PROVIDER=vllm HI_MOE_MODAL__ENDPOINT=http://127.0.0.1:8000
(`hi-moe serve-local --tiny` starts one here) or at your Modal deployment's URL.
"""

from __future__ import annotations

import asyncio
import sys

from hi_moe import Settings, load_provider
from hi_moe.pipeline import Event, ProgressMonitor, Task
from hi_moe.providers import MockProvider


def show(event: Event) -> None:
    if event.kind in ("planned", "step_finished", "step_failed", "fell_back", "run_finished"):
        where = f" [{event.step_id}]" if event.step_id else ""
        print(f"{event.kind}{where} {event.detail}", file=sys.stderr)


async def main(prompt: str) -> int:
    settings = Settings.load()  # HI_MOE_* variables, then hi_moe.toml
    async with load_provider(settings) as provider:
        if isinstance(provider, MockProvider):
            print(MockProvider.notice, file=sys.stderr)
        monitor = ProgressMonitor(provider, settings.pipeline, on_event=show)
        result = await monitor.run(Task(prompt=prompt))
    print(result.answer if result.answer is not None else f"failed: {result.reason}")
    for step in result.steps.values():
        print(f"  {step.step_id}: {step.adapter or 'base model'}, {step.usage.total_tokens} tokens")
    return 0 if result.status == "succeeded" else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main(" ".join(sys.argv[1:]) or "Reverse the words in a sentence.")))
