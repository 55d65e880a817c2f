"""`ModalVLLMProvider`: a vLLM OpenAI-compatible server with LoRA specialists and XGrammar.

Built for the server `deployment/modal/` runs, it works against any vLLM server (the
integration tests run one on CPU). The adapter goes in `model`, constraints in vLLM's
`structured_outputs` object; the removed `guided_*` fields are never sent, and every output is
checked anyway, because a server that ignores a field still answers 200.

A Modal app scaled to zero answers its first request only after a container starts and loads
the model, which takes minutes: before its first request the provider waits on `/health` under
its own startup deadline (`startup_timeout_s`), separate from the per-request timeout.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import urlsplit, urlunsplit

from pydantic import SecretStr

from hi_moe import constraints
from hi_moe.cost.meter import current_request
from hi_moe.errors import (
    AuthenticationError,
    BadResponse,
    ConfigError,
    HiMoeError,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    ProviderUnreachable,
    RequestRejected,
    UnknownAdapter,
)
from hi_moe.providers.base import ALL_CONSTRAINT_KINDS, Capabilities, Health, checkable_kinds
from hi_moe.providers.openai_compat import OpenAICompatibleProvider, error_param
from hi_moe.providers.readiness import Readiness, is_loopback, retrieve, unreachable
from hi_moe.providers.retry import RetryPolicy
from hi_moe.types import (
    Choice,
    CompletionRequest,
    Constraint,
    ConstraintKind,
    ConstraintVisitor,
    Grammar,
    JsonSchema,
    Regex,
)

if TYPE_CHECKING:
    from hi_moe.config import Settings

__all__ = ["ModalVLLMProvider", "VLLMProvider", "normalise_endpoint", "structured_outputs"]

log = logging.getLogger(__name__)

Secret = str | SecretStr | None
_HEALTH_PROBE_TIMEOUT_S = 10.0


def _reveal(secret: Secret) -> str | None:
    return secret.get_secret_value() if isinstance(secret, SecretStr) else secret


def normalise_endpoint(endpoint: str, *, allow_insecure_http: bool = False) -> str:
    """The server's base URL without a trailing `/v1`; plain http only to loopback."""
    url = urlsplit(endpoint.strip())
    if url.scheme not in ("http", "https") or not url.hostname:
        raise ConfigError(
            f"endpoint must be an http(s) URL, got {endpoint!r}", setting="HI_MOE_MODAL__ENDPOINT"
        )
    if url.scheme == "http" and not allow_insecure_http and not is_loopback(url.hostname):
        raise ConfigError(
            f"refusing plain http:// to {url.hostname}: keys would cross the network in clear; "
            "use https:// or set allow_insecure_http (HI_MOE_MODAL__ALLOW_INSECURE_HTTP)",
            setting="HI_MOE_MODAL__ALLOW_INSECURE_HTTP",
        )
    path = url.path.rstrip("/")
    path = path.removesuffix("/v1")
    return urlunsplit((url.scheme, url.netloc, path, "", ""))


def _served_models(body: object, provider: str) -> dict[str, str | None]:
    """/v1/models' answer as id → parent, or `BadResponse` for another shape."""
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list):
        raise BadResponse("malformed /v1/models answer: no data list", provider=provider)
    models: dict[str, str | None] = {}
    for entry in data:
        ident = entry.get("id") if isinstance(entry, dict) else None
        parent = entry.get("parent") if isinstance(entry, dict) else None
        if not isinstance(ident, str) or not (parent is None or isinstance(parent, str)):
            raise BadResponse(f"malformed /v1/models entry: {entry!r:.80}", provider=provider)
        models[ident] = parent
    return models


class _StructuredOutputs(ConstraintVisitor[dict[str, Any]]):
    """Each kind under its key in vLLM's `structured_outputs`."""

    def json_schema(self, constraint: JsonSchema) -> dict[str, Any]:
        return {"json": constraint.schema}

    def grammar(self, constraint: Grammar) -> dict[str, Any]:
        return {"grammar": constraint.ebnf}

    def regex(self, constraint: Regex) -> dict[str, Any]:
        return {"regex": constraint.pattern}

    def choice(self, constraint: Choice) -> dict[str, Any]:
        return {"choice": list(constraint.options)}


def structured_outputs(constraint: Constraint) -> dict[str, Any]:
    """vLLM's `structured_outputs` object for a constraint: exactly one key."""
    return _StructuredOutputs().visit(constraint)


class VLLMProvider(OpenAICompatibleProvider):
    """A vLLM OpenAI-compatible server, local or on Modal: base model plus LoRA adapters,
    every constraint kind enforced. `ModalVLLMProvider` is the same class under its old name,
    and `provider = "modal"` the same provider in configuration."""

    name = "vllm"
    capabilities = Capabilities(
        constraint_kinds=ALL_CONSTRAINT_KINDS, adapters=True, runtime_adapters=True, streaming=True
    )

    def __init__(
        self,
        endpoint: str,
        *,
        api_key: Secret = None,
        proxy_key: Secret = None,
        proxy_secret: Secret = None,
        base_model: str | None = None,
        http_client: Any | None = None,
        request_timeout_s: float = 120.0,
        startup_timeout_s: float = 900.0,
        retry: RetryPolicy | None = None,
        adapters_ttl_s: float = 30.0,
        allow_insecure_http: bool = False,
        trust_server_constraints: Iterable[ConstraintKind] = (),
    ) -> None:
        """
        Args:
            endpoint: the server's URL (with or without /v1).
            api_key: vLLM's `--api-key`, sent as `Authorization: Bearer`.
            proxy_key, proxy_secret: a Modal proxy-auth token, sent as `Modal-Key` and
                `Modal-Secret` (the app is deployed with `requires_proxy_auth=True`).
            base_model: the base model's served name; read from /v1/models when omitted.
            startup_timeout_s: how long to wait for a cold server's /health before giving up.
            adapters_ttl_s: how long the adapter list from /v1/models is trusted.
            trust_server_constraints: constraint kinds to send although their outputs cannot
                be checked here (EBNF grammars without the grammar extra). Without it such a
                request raises `UnsupportedConstraint`: an unchecked output is never returned
                unless you said the server may be trusted for it.
        """
        self.endpoint = normalise_endpoint(endpoint, allow_insecure_http=allow_insecure_http)
        key, secret = _reveal(proxy_key), _reveal(proxy_secret)
        if bool(key) != bool(secret):
            raise ConfigError(
                "Modal proxy auth needs both proxy_key and proxy_secret",
                setting="HI_MOE_MODAL__PROXY_SECRET" if key else "HI_MOE_MODAL__PROXY_KEY",
            )
        headers = {"Modal-Key": key, "Modal-Secret": secret} if key and secret else {}
        super().__init__(
            base_url=f"{self.endpoint}/v1",
            api_key=_reveal(api_key),
            headers=headers,
            http_client=http_client,
            request_timeout_s=request_timeout_s,
            retry=retry,
        )
        self._has_api_key = bool(_reveal(api_key))
        self._proxy_auth = bool(headers)
        self.base_model = base_model
        self.startup_timeout_s = startup_timeout_s
        self.adapters_ttl_s = adapters_ttl_s
        self._readiness = Readiness(self)
        self._models_task: asyncio.Task[dict[str, str | None]] | None = None
        # A call may first wait out a cold start, then retry: its worst case is both.
        self.deadline_s = startup_timeout_s + self.retry.deadline_s
        self._models_cache: tuple[float, dict[str, str | None]] | None = None
        self.trusted_kinds = frozenset(trust_server_constraints)
        self.capabilities = type(self).capabilities.model_copy(
            update={"constraint_kinds": checkable_kinds(ALL_CONSTRAINT_KINDS, self.trusted_kinds)}
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        modal = settings.modal
        return cls(
            settings.require("modal", "endpoint"),
            api_key=modal.api_key,
            proxy_key=modal.proxy_key,
            proxy_secret=modal.proxy_secret,
            base_model=modal.base_model,
            request_timeout_s=modal.request_timeout_s,
            startup_timeout_s=modal.startup_timeout_s,
            retry=RetryPolicy(max_attempts=modal.max_attempts, deadline_s=modal.retry_deadline_s),
            allow_insecure_http=modal.allow_insecure_http,
            trust_server_constraints=modal.trust_server_constraints,
        )

    def validate_constraint(self, constraint: Constraint) -> constraints.ConstraintReport:
        """vLLM's question: will XGrammar compile it (where the grammar extra is installed).
        Its report lists what XGrammar compiles but does not enforce."""
        return constraints.validate(constraint)

    def unsupported_hint(self, kind: ConstraintKind) -> str:
        return (
            f"its outputs cannot be checked here: {constraints.GRAMMAR_EXTRA_HINT}, or trust "
            f"the server for it with [modal] trust_server_constraints = [{kind!r}]"
        )

    def __repr__(self) -> str:
        return (
            f"VLLMProvider(endpoint={self.endpoint!r}, "
            f"api_key={'***' if self._has_api_key else None}, proxy_auth={self._proxy_auth})"
        )

    # -- readiness (cold starts) --------------------------------------------------------------

    async def _before_request(self, timeout_s: float | None = None) -> None:
        if not self._readiness.ready:
            await self.wait_until_ready(timeout_s)
            if (flight := current_request()) is not None:
                flight.cold_start_over()  # its time so far went on the cold start

    def _after_failure(self, error: HiMoeError) -> None:
        # A 502-504, a timeout or a lost connection may be an app that scaled to zero: the
        # next attempt waits for /health again (one shared wait) instead of failing on it.
        if isinstance(error, ProviderTimeout) or (
            isinstance(error, ProviderUnavailable) and error.status_code in (None, 502, 503, 504)
        ):
            self._readiness.ready = False

    async def wait_until_ready(self, timeout_s: float | None = None) -> None:
        """Wait for /health to answer 200. Called before requests; call it yourself to warm a
        cold app up ahead of time.

        All callers share one readiness task, bounded by the startup deadline (64 requests
        during a cold start cause one poll loop); each waits at most `timeout_s` and what its
        deadline leaves, then gets `ProviderNotReady`. Nothing listening on a loopback port,
        or a host that does not resolve, fails at once with `ProviderUnavailable`.
        """
        await self._readiness.wait(timeout_s)

    async def _probe(self, *, timeout_s: float, fail_fast: bool = False) -> Health:
        """One GET /health. With `fail_fast`, an endpoint that cannot be starting (nothing
        listens on its loopback port, its host does not resolve) raises instead of waiting."""
        started = time.perf_counter()
        try:
            await self._raw("GET", f"{self.endpoint}/health", timeout_s=timeout_s, cast_to=str)
        except AuthenticationError:
            raise  # waiting will not fix a wrong key
        except ProviderTimeout:
            return Health(provider=self.name, status="starting", detail="no answer yet")
        except ProviderError as error:
            if (why := unreachable(error, self.endpoint)) is not None:
                if fail_fast:
                    raise ProviderUnreachable(
                        f"{self.endpoint}: {why}", provider=self.name
                    ) from error
                return Health(provider=self.name, status="down", detail=why)
            status = "starting" if error.status_code in (502, 503, 504) else "down"
            return Health(provider=self.name, status=status, detail=error.message)
        return Health(provider=self.name, status="ok", latency_s=time.perf_counter() - started)

    async def health(self) -> Health:
        try:
            return await self._probe(timeout_s=_HEALTH_PROBE_TIMEOUT_S)
        except AuthenticationError as error:
            return Health(provider=self.name, status="down", detail=error.message)

    # -- models and adapters ------------------------------------------------------------------

    async def _models(
        self, *, fresh: bool = False, seconds_left: float | None = None
    ) -> dict[str, str | None]:
        """Served model ids → their parent (None for the base model), cached briefly. Inside
        a chat attempt (`seconds_left` given) one GET, retried by that attempt's loop; on its
        own (`adapters()`), under a retry loop of its own."""
        cached = self._models_cache
        if not fresh and cached is not None and time.monotonic() - cached[0] < self.adapters_ttl_s:
            return cached[1]

        async def fetch(left: float) -> dict[str, str | None]:
            await self._before_request(left)
            # One lookup in flight, shared: 64 first requests make one GET, not 64.
            loop = asyncio.get_running_loop()
            task = self._models_task
            if task is None or task.done() or task.get_loop() is not loop:
                task = self._models_task = loop.create_task(
                    self._fetch_models(min(left, self.request_timeout_s))
                )
                task.add_done_callback(retrieve)
            waiting = asyncio.timeout(left)
            try:
                async with waiting:
                    return await asyncio.shield(task)
            except TimeoutError:
                if not waiting.expired():
                    raise
                raise ProviderTimeout(
                    "no /v1/models answer within the call's deadline", provider=self.name
                ) from None

        if seconds_left is not None:
            models = await fetch(seconds_left)
        else:
            models = await self.retry.call(fetch, what=f"{self.name} list models")
        self._models_cache = (time.monotonic(), models)
        return models

    async def _fetch_models(self, timeout_s: float) -> dict[str, str | None]:
        try:
            body = await self._raw("GET", "/models", timeout_s=timeout_s)
        except HiMoeError as error:
            self._after_failure(error)
            raise
        return _served_models(body, self.name)

    async def adapters(self) -> list[str]:
        return [name for name, parent in (await self._models()).items() if parent is not None]

    async def _base(self, seconds_left: float | None = None) -> str:
        if self.base_model is None:
            models = await self._models(seconds_left=seconds_left)
            roots = [name for name, parent in models.items() if parent is None]
            if not roots:
                raise RequestRejected("the server lists no base model", provider=self.name)
            self.base_model = roots[0]
        return self.base_model

    async def _model_for(self, request: CompletionRequest, seconds_left: float) -> str:
        if request.adapter is None:
            return await self._base(seconds_left)
        for fresh in (False, True):  # a cache miss may be an adapter loaded since
            models = await self._models(fresh=fresh, seconds_left=seconds_left)
            if models.get(request.adapter, None) is not None:
                return request.adapter
        served = [name for name, parent in models.items() if parent is not None]
        raise UnknownAdapter(request.adapter, served, provider=self.name)

    def _constraint_fields(self, constraint: Constraint) -> dict[str, Any]:
        return {"structured_outputs": structured_outputs(constraint)}

    async def _translate(self, error: Exception, request: CompletionRequest) -> HiMoeError:
        import openai

        if (
            isinstance(error, openai.NotFoundError)
            and error_param(error) == "model"
            and request.adapter is not None
        ):
            # Unloaded between our check and the request: name what is there now.
            self._models_cache = None
            return UnknownAdapter(request.adapter, await self.adapters(), provider=self.name)
        return await super()._translate(error, request)

    async def load_adapter(self, name: str, path: str, *, replace: bool = False) -> None:
        """Load a LoRA adapter from a path on the server (vLLM runtime loading; the server
        needs VLLM_ALLOW_RUNTIME_LORA_UPDATING=True). `replace` reloads an existing name."""
        await self._before_request()
        await self._adapter_call(
            "/load_lora_adapter", {"lora_name": name, "lora_path": path, "load_inplace": replace}
        )

    async def unload_adapter(self, name: str) -> None:
        await self._before_request()
        try:
            await self._adapter_call("/unload_lora_adapter", {"lora_name": name})
        except RequestRejected as error:
            if error.status_code == 404:
                raise UnknownAdapter(name, await self.adapters(), provider=self.name) from error
            raise

    async def _adapter_call(self, path: str, body: dict[str, Any]) -> None:
        try:
            await self._raw("POST", path, body=body, timeout_s=self.request_timeout_s)
        except RequestRejected as error:
            if error.status_code == 404 and error.message == "Not Found":
                raise RequestRejected(
                    f"{self.endpoint} does not allow runtime adapter loading: start vLLM with "
                    "VLLM_ALLOW_RUNTIME_LORA_UPDATING=True",
                    provider=self.name,
                    status_code=404,
                ) from error
            raise
        finally:
            self._models_cache = None


ModalVLLMProvider = VLLMProvider
"""The provider's first name, kept: it was written for Modal, and serves any vLLM server."""
