"""Storage settings: one discriminated union on ``backend``, plus named stores.

``backend`` picks the model: ``local``, ``memory``, ``s3`` or ``gcs``. Keys that
belong to another backend are dropped before validation, so switching backend
from the environment (``DTPYFW_STORAGE__BACKEND=memory``) never makes the keys
of the backend you switched away from an error; keys no backend knows still are.
"""

from __future__ import annotations

__all__ = [
    "GcsStorageSettings",
    "GcsStoreSettings",
    "LocalStorageSettings",
    "LocalStoreSettings",
    "MemoryStorageSettings",
    "MemoryStoreSettings",
    "S3StorageSettings",
    "S3StoreSettings",
    "StorageSettings",
    "StoreSettings",
]

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    SecretStr,
    Tag,
    field_validator,
    model_validator,
)

from dtpyfw.core.retry import RetryPolicy

DEFAULT_BACKEND = "local"
BACKENDS = ("local", "memory", "s3", "gcs")

_MiB = 1024 * 1024
#: S3 refuses multipart parts below 5 MiB (except the last one).
S3_MIN_PART_SIZE = 5 * _MiB
#: GCS resumable uploads send chunks in multiples of 256 KiB.
GCS_CHUNK_MULTIPLE = 256 * 1024


class _Store(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _drop_other_backends_keys(cls, data: Any) -> Any:
        # Switching ``backend`` through the environment must not make the keys of the
        # backend you switched away from an error; keys no backend knows still are.
        if not isinstance(data, dict):
            return data
        own = set(cls.model_fields)
        others = _ALL_BACKEND_KEYS - own
        return {k: v for k, v in data.items() if k in own or k not in others}


class LocalStoreSettings(_Store):
    """Objects as files under ``root``; writes are atomic (temp file + rename)."""

    backend: Literal["local"] = Field(
        default="local", description="which implementation stores the objects"
    )
    root: Path = Field(default=Path(".var/storage"), description="directory holding the objects")


class MemoryStoreSettings(_Store):
    """Objects in process memory: for tests and throwaway runs."""

    backend: Literal["memory"] = Field(
        default="memory", description="which implementation stores the objects"
    )


class S3StoreSettings(_Store):
    """Objects in an S3 bucket: AWS, or any S3-compatible server through ``endpoint_url``."""

    backend: Literal["s3"] = Field(
        default="s3", description="which implementation stores the objects"
    )
    bucket: str = Field(min_length=3, max_length=63, description="bucket holding the objects")
    region: str | None = Field(
        default=None, description="AWS region (us-east-1); None uses the AWS default chain"
    )
    endpoint_url: str | None = Field(
        default=None,
        description="URL of an S3-compatible server (MinIO, Ceph, moto); None means AWS",
    )
    access_key_id: str | None = Field(
        default=None, description="access key; None uses the AWS default credential chain"
    )
    secret_access_key: SecretStr | None = Field(
        default=None, description="secret key that goes with access_key_id"
    )
    session_token: SecretStr | None = Field(
        default=None, description="session token of temporary credentials"
    )
    addressing_style: Literal["auto", "path", "virtual"] = Field(
        default="auto",
        description="bucket in the path or in the host name; most S3-compatible servers need path",
    )
    multipart_threshold: int = Field(
        default=8 * _MiB,
        ge=S3_MIN_PART_SIZE,
        description="bytes above which uploads go multipart (through boto3's transfer manager)",
    )
    multipart_chunk_size: int = Field(
        default=8 * _MiB,
        ge=S3_MIN_PART_SIZE,
        description="bytes per multipart part and per ranged download request",
    )
    max_concurrency: int = Field(
        default=4,
        ge=1,
        le=64,
        description="parts in flight per transfer; a streamed upload holds about "
        "max_concurrency x multipart_chunk_size bytes in memory",
    )
    connect_timeout: float = Field(default=5.0, gt=0, description="seconds to open a connection")
    read_timeout: float = Field(
        default=60.0, gt=0, description="seconds to wait for each read from the server"
    )
    retry: RetryPolicy = Field(
        default_factory=RetryPolicy,
        description="attempts and backoff for transient failures of idempotent operations",
    )
    tls_verify: bool = Field(default=True, description="verify the server's TLS certificate")
    ca_file: Path | None = Field(default=None, description="CA bundle to trust for TLS")
    create_bucket: bool = Field(
        default=False,
        description="create the bucket when it does not exist (development and tests)",
    )


class GcsStoreSettings(_Store):
    """Objects in a Google Cloud Storage bucket, or in an emulator through ``endpoint``."""

    backend: Literal["gcs"] = Field(
        default="gcs", description="which implementation stores the objects"
    )
    bucket: str = Field(min_length=3, max_length=222, description="bucket holding the objects")
    project: str | None = Field(
        default=None, description="project that owns the bucket; None takes the credentials'"
    )
    endpoint: str | None = Field(
        default=None,
        description="API endpoint URL, e.g. an emulator at http://127.0.0.1:9023; None means "
        "Google",
    )
    anonymous: bool = Field(
        default=False,
        description="send no credentials (for an emulator); credentials_* still sign URLs",
    )
    credentials_file: Path | None = Field(
        default=None,
        description="service-account JSON key file; None uses the default credential chain",
    )
    credentials_info: SecretStr | None = Field(
        default=None, description="service-account JSON key as text, instead of a file"
    )
    chunk_size: int = Field(
        default=8 * _MiB,
        ge=GCS_CHUNK_MULTIPLE,
        description="bytes per resumable-upload request and per ranged read (multiple of 256 KiB)",
    )
    connect_timeout: float = Field(default=5.0, gt=0, description="seconds to open a connection")
    read_timeout: float = Field(
        default=60.0, gt=0, description="seconds to wait for each read from the server"
    )
    retry: RetryPolicy = Field(
        default_factory=RetryPolicy,
        description="attempts and backoff for transient failures of idempotent operations",
    )
    create_bucket: bool = Field(
        default=False,
        description="create the bucket when it does not exist (development and tests)",
    )

    @field_validator("chunk_size")
    @classmethod
    def _whole_chunks(cls, value: int) -> int:
        if value % GCS_CHUNK_MULTIPLE:
            raise ValueError(f"must be a multiple of {GCS_CHUNK_MULTIPLE} (256 KiB)")
        return value


def _backend_of(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("backend", DEFAULT_BACKEND))
    return str(getattr(value, "backend", DEFAULT_BACKEND))


_UNKNOWN_BACKEND = Discriminator(
    _backend_of,
    custom_error_type="unknown_backend",
    custom_error_message=f"backend must be one of: {', '.join(BACKENDS)}",
)

StoreSettings = Annotated[
    Annotated[LocalStoreSettings, Tag("local")]
    | Annotated[MemoryStoreSettings, Tag("memory")]
    | Annotated[S3StoreSettings, Tag("s3")]
    | Annotated[GcsStoreSettings, Tag("gcs")],
    _UNKNOWN_BACKEND,
]


class _Stores(BaseModel):
    stores: dict[str, StoreSettings] = Field(
        default_factory=dict,
        description="extra named stores, each with its own backend (storage.stores.avatars)",
    )


class LocalStorageSettings(_Stores, LocalStoreSettings):
    """The ``storage`` section on local disk (the embedded default)."""


class MemoryStorageSettings(_Stores, MemoryStoreSettings):
    """The ``storage`` section in memory."""


class S3StorageSettings(_Stores, S3StoreSettings):
    """The ``storage`` section on S3 or an S3-compatible server."""


class GcsStorageSettings(_Stores, GcsStoreSettings):
    """The ``storage`` section on Google Cloud Storage."""


StorageSettings = Annotated[
    Annotated[LocalStorageSettings, Tag("local")]
    | Annotated[MemoryStorageSettings, Tag("memory")]
    | Annotated[S3StorageSettings, Tag("s3")]
    | Annotated[GcsStorageSettings, Tag("gcs")],
    _UNKNOWN_BACKEND,
]

_ALL_BACKEND_KEYS: frozenset[str] = frozenset(
    key
    for model in (LocalStoreSettings, MemoryStoreSettings, S3StoreSettings, GcsStoreSettings)
    for key in model.model_fields
)
