"""Objects in a Google Cloud Storage bucket, or in an emulator.

google-cloud-storage is the ``storage-gcs`` extra: it is imported when a
:class:`GcsStorage` is created, so ``import dtpyfw.storage`` works without it.

How each operation talks to GCS:

- ``put``: content up to ``chunk_size`` bytes goes in one multipart upload;
  anything larger goes through a resumable upload, ``chunk_size`` bytes per
  request, so memory stays at about one chunk whatever the object's size. The
  upload's answer carries the stored object, so ``put`` needs no second call.
- ``stream``/``download_to``: ranged reads of ``chunk_size`` bytes pinned to
  the object's generation; each range is retried on its own, so a dropped
  connection resumes where it stopped. ``download_to`` also checks size and
  MD5 before renaming the temp file over ``path``.
- ``list``: the JSON API listing, one page per request (each retried); it
  carries every field ``stat`` returns.
- ``copy``: the rewrite API (server side, any size); ``move`` is copy then
  delete.

Credentials: ``credentials_file`` or ``credentials_info`` (a service-account
key), else Application Default Credentials. ``anonymous: true`` sends none,
which an emulator needs; with ``endpoint`` set, requests and signed URLs go
there. When ``endpoint`` is unset, google-cloud-storage also honours
``STORAGE_EMULATOR_HOST``.

Signed URLs need credentials that can sign: a service-account key. Without
one (anonymous, or Compute Engine / user credentials) ``presigned_url``
raises NotSupported saying so. An emulator ignores signatures, so a
throwaway service-account key is enough to produce URLs that work there.

Retries: every call is retried under ``settings.retry`` on StorageUnavailable,
except a ``put`` of a one-shot stream; google-cloud-storage's own retries are
switched off so attempts are counted, and logged, in one place.

ETags: ``ObjectInfo.etag`` is the MD5 GCS computed (hex), which GCS gives for
every object except composite ones; those get GCS's own etag string.
"""

from __future__ import annotations

__all__ = ["GcsStorage"]

import base64
import binascii
import contextlib
import datetime
import functools
import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, BinaryIO, TypeVar, cast

from dtpyfw.core._extras import require
from dtpyfw.core.errors import (
    AccessDenied,
    NotSupported,
    ObjectNotFound,
    StorageError,
    StorageUnavailable,
)
from dtpyfw.storage._base import (
    DEFAULT_CHUNK_SIZE,
    BaseStorage,
    ObjectInfo,
    normalize_metadata,
    resolve_content_type,
    validate_key,
    validate_prefix,
)
from dtpyfw.storage._remote import Retrier, open_source, skip_unaddressable, write_verified
from dtpyfw.storage._settings import GcsStoreSettings

T = TypeVar("T")

#: The longest lifetime of a V4 signed URL (7 days).
MAX_SIGNED_SECONDS = 7 * 24 * 3600
SIGN_METHODS = ("GET", "PUT", "HEAD", "DELETE")
#: The project name used with anonymous credentials, which carry none.
ANONYMOUS_PROJECT = "dtpyfw-anonymous"


class GcsStorage(BaseStorage):
    """A :class:`~dtpyfw.storage.Storage` over one GCS bucket, built from settings.

    ``client`` replaces the ``google.cloud.storage.Client`` the settings would
    build. ``close()`` releases its HTTP session.
    """

    def __init__(self, settings: GcsStoreSettings, *, client: Any = None) -> None:
        require("google.cloud.storage", "storage-gcs")
        self._api_errors = require("google.api_core.exceptions", "storage-gcs")
        self._auth_errors = require("google.auth.exceptions", "storage-gcs")
        self._media_errors = require("google.cloud.storage.exceptions", "storage-gcs")
        self._http_errors = require("requests.exceptions", "storage-gcs")
        self.settings = settings
        # With anonymous requests the key only signs URLs: parse it (~50 ms) on first use.
        self._signer: tuple[Any, str | None] | None = None
        if client is None:
            credentials, project = (None, None) if settings.anonymous else self._credentials()
            with self._errors("connect", ""):
                client = create_gcs_client(settings, credentials, project)
        self.client: Any = client
        self._bucket: Any = client.bucket(settings.bucket)
        self._timeout = (settings.connect_timeout, settings.read_timeout)
        self._retrier = Retrier("gcs", settings.retry)
        if settings.create_bucket:
            self._ensure_bucket()

    def __repr__(self) -> str:
        where = self.settings.endpoint or "google"
        return f"GcsStorage(bucket={self.settings.bucket!r}, endpoint={where!r})"

    def close(self) -> None:
        """Close the client's HTTP session; closing twice is harmless."""
        close = getattr(self.client, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> GcsStorage:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # Writing

    def put(
        self,
        key: str,
        data: bytes | BinaryIO,
        *,
        content_type: str | None = None,
        cache_control: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> ObjectInfo:
        """Store ``data`` under ``key``; see :meth:`Storage.put` and the module notes."""
        validate_key(key)
        meta = normalize_metadata(metadata)
        kind = resolve_content_type(key, content_type)
        source = open_source(data, self.settings.chunk_size)

        def upload() -> Any:
            blob = self._bucket.blob(key, chunk_size=self.settings.chunk_size)
            blob.content_type = kind
            blob.cache_control = cache_control
            blob.metadata = meta or None
            common = {"content_type": kind, "retry": None, "timeout": self._timeout}
            if source.small is not None:
                with self._errors("put", key):
                    blob.upload_from_string(source.small, **common)
                return blob
            reader = source.reader()
            with source.caller_errors_first(), self._errors("put", key):
                blob.upload_from_file(reader, **common)
            return blob

        blob = self._retrier.run("put", key, upload, idempotent=source.rewindable)
        return self._info(blob)

    def delete(self, key: str) -> None:
        """Remove ``key``; a missing key raises ObjectNotFound."""
        validate_key(key)
        attempts = 0

        def remove() -> None:
            nonlocal attempts
            attempts += 1
            try:
                with self._errors("delete", key):
                    self._bucket.blob(key).delete(retry=None, timeout=self._timeout)
            except ObjectNotFound:
                # A retry after a lost answer finds the object already gone: that is success.
                if attempts == 1:
                    raise

        self._retrier.run("delete", key, remove)

    def copy(self, src: str, dst: str) -> ObjectInfo:
        """Copy ``src`` with its metadata to ``dst`` (rewrite API, server side)."""
        validate_key(src)
        validate_key(dst)
        if src == dst:
            return self.stat(src)
        source = self._bucket.blob(src)

        def rewrite() -> Any:
            target = self._bucket.blob(dst)
            token = None
            with self._errors("copy", src):
                while True:
                    token, _, _ = target.rewrite(
                        source, token=token, retry=None, timeout=self._timeout
                    )
                    if token is None:
                        return target

        return self._info(self._retrier.run("copy", src, rewrite))

    def move(self, src: str, dst: str) -> ObjectInfo:
        """Copy ``src`` to ``dst``, then delete ``src``."""
        info = self.copy(src, dst)
        if src != dst:
            self.delete(src)
        return info

    # Reading

    def get(self, key: str) -> bytes:
        """The whole content of ``key`` (checksum-validated by the library)."""
        validate_key(key)
        blob = self._bucket.blob(key)
        return cast(
            bytes,
            self._run(
                "get", key, lambda: blob.download_as_bytes(retry=None, timeout=self._timeout)
            ),
        )

    def stream(self, key: str, chunk_size: int = DEFAULT_CHUNK_SIZE) -> Iterator[bytes]:
        """The content of ``key`` in chunks; a missing key raises here, not on iteration."""
        if chunk_size <= 0:
            raise ValueError(f"chunk_size must be positive, not {chunk_size}")
        blob = self._get_blob(key)
        return self._ranges(key, blob, chunk_size)

    def exists(self, key: str) -> bool:
        """True when ``key`` holds an object."""
        try:
            self.stat(key)
        except ObjectNotFound:
            return False
        return True

    def stat(self, key: str) -> ObjectInfo:
        """Size, MD5, content type, update time and metadata of ``key``."""
        return self._info(self._get_blob(key))

    def list(self, prefix: str = "", recursive: bool = True) -> Iterator[ObjectInfo]:
        """Objects under ``prefix`` in key order; see :meth:`Storage.list`."""
        validate_prefix(prefix)
        return self._list(prefix, recursive)

    def download_to(self, key: str, path: str | os.PathLike[str]) -> None:
        """Write ``key`` to ``path`` atomically; size and MD5 are checked before the rename."""
        validate_key(key)
        expected = self.stat(key)

        def fetch() -> None:
            write_verified(
                path,
                self.stream(key),
                expected=expected,
                check_md5=len(expected.etag) == 32,
            )

        self._retrier.run("download_to", key, fetch)

    def presigned_url(self, key: str, method: str = "GET", expires: int = 3600) -> str:
        """A V4 signed URL granting ``method`` (GET, PUT, HEAD, DELETE) on ``key``.

        Needs a service-account key (``credentials_file`` / ``credentials_info``);
        without one this raises NotSupported.
        """
        validate_key(key)
        method = method.upper()
        if method not in SIGN_METHODS:
            raise ValueError(f"method must be one of {', '.join(SIGN_METHODS)}, not {method!r}")
        if not 1 <= expires <= MAX_SIGNED_SECONDS:
            raise ValueError(f"expires must be 1..{MAX_SIGNED_SECONDS} seconds, not {expires}")
        credentials, _ = self._credentials()
        if credentials is None or not hasattr(credentials, "sign_bytes"):
            raise NotSupported(
                "GcsStorage cannot sign URLs without a service-account key: set "
                "storage.credentials_file or storage.credentials_info"
            )
        options: dict[str, Any] = {}
        if self.settings.endpoint:
            options["api_access_endpoint"] = self.settings.endpoint
        try:
            return cast(
                str,
                self._bucket.blob(key).generate_signed_url(
                    version="v4",
                    expiration=datetime.timedelta(seconds=expires),
                    method=method,
                    credentials=credentials,
                    **options,
                ),
            )
        except (AttributeError, self._auth_errors.TransportError) as exc:
            raise NotSupported(f"GcsStorage could not sign a URL for {key!r}: {exc}") from exc

    def ping(self) -> None:
        """List one object, once: raise StorageUnavailable (or AccessDenied) unless it answers."""
        try:
            with self._errors("ping", ""):
                pages = self.client.list_blobs(
                    self._bucket, max_results=1, retry=None, timeout=self._timeout
                ).pages
                next(pages, None)
        except ObjectNotFound as exc:
            raise StorageUnavailable(f"GCS bucket {self.settings.bucket!r} does not exist") from exc
        except (AccessDenied, StorageUnavailable):
            raise
        except StorageError as exc:
            raise StorageUnavailable(f"GCS bucket {self.settings.bucket!r}: {exc}") from exc

    # Helpers

    def _credentials(self) -> tuple[Any, str | None]:
        if self._signer is None:
            self._signer = _load_credentials(self.settings)
        return self._signer

    def _run(self, operation: str, key: str, call: Callable[[], T]) -> T:
        """One idempotent GCS request with error translation and retries."""

        def attempt() -> T:
            with self._errors(operation, key):
                return call()

        return self._retrier.run(operation, key, attempt)

    def _get_blob(self, key: str) -> Any:
        validate_key(key)
        blob = self._run(
            "stat", key, lambda: self._bucket.get_blob(key, retry=None, timeout=self._timeout)
        )
        if blob is None:
            raise ObjectNotFound(f"object {key!r} does not exist")
        return blob

    def _ranges(self, key: str, blob: Any, chunk_size: int) -> Iterator[bytes]:
        """The object's bytes by ranged reads pinned to ``blob``'s generation."""
        size, generation = int(blob.size or 0), blob.generation
        fetch = max(chunk_size, self.settings.chunk_size)
        offset = 0
        while offset < size:
            end = min(offset + fetch, size) - 1

            def read(start: int = offset, stop: int = end) -> bytes:
                return cast(
                    bytes,
                    blob.download_as_bytes(
                        start=start,
                        end=stop,
                        if_generation_match=generation,
                        checksum=None,
                        retry=None,
                        timeout=self._timeout,
                    ),
                )

            data = self._run("stream", key, read)
            if not data:
                raise StorageUnavailable(f"gcs stream of {key!r} ended early at byte {offset}")
            for start in range(0, len(data), chunk_size):
                yield data[start : start + chunk_size]
            offset += len(data)

    def _list(self, prefix: str, recursive: bool) -> Iterator[ObjectInfo]:
        token: str | None = None
        while True:
            blobs, token = self._run(
                "list", prefix, functools.partial(self._page, prefix, recursive, token)
            )
            for blob in blobs:
                if not skip_unaddressable(blob.name):
                    yield self._info(blob)
            if not token:
                return

    def _page(self, prefix: str, recursive: bool, token: str | None) -> tuple[Sequence[Any], Any]:
        """One page of the listing from ``token`` (a fresh iterator, so it can be retried)."""
        iterator = self.client.list_blobs(
            self._bucket,
            prefix=prefix or None,
            delimiter=None if recursive else "/",
            page_token=token,
            retry=None,
            timeout=self._timeout,
        )
        page = next(iterator.pages, None)
        return (tuple(page) if page is not None else ()), iterator.next_page_token

    def _info(self, blob: Any) -> ObjectInfo:
        return ObjectInfo(
            key=blob.name,
            size=int(blob.size or 0),
            etag=_md5_hex(blob.md5_hash) or str(blob.etag or ""),
            content_type=blob.content_type or resolve_content_type(blob.name, None),
            updated=blob.updated,
            metadata=dict(blob.metadata or {}),
            cache_control=blob.cache_control,
        )

    def _ensure_bucket(self) -> None:
        try:
            self.ping()
            return
        except StorageUnavailable as exc:
            if "does not exist" not in str(exc):
                raise
        project = self.client.project
        with self._errors("create_bucket", ""), contextlib.suppress(self._api_errors.Conflict):
            self.client.create_bucket(
                self.settings.bucket, project=project, retry=None, timeout=self._timeout
            )

    @contextlib.contextmanager
    def _errors(self, operation: str, key: str) -> Iterator[None]:
        """Translate google-cloud / requests exceptions into the StorageError tree, chained."""
        api, auth, media, http = (
            self._api_errors,
            self._auth_errors,
            self._media_errors,
            self._http_errors,
        )
        detail = f"gcs {operation} of {key!r} failed"
        try:
            yield
        except api.NotFound as exc:
            raise ObjectNotFound(f"object {key!r} does not exist") from exc
        except (api.Forbidden, api.Unauthorized) as exc:
            raise AccessDenied(f"{detail}: {exc.message}") from exc
        except (
            api.TooManyRequests,
            api.InternalServerError,
            api.BadGateway,
            api.ServiceUnavailable,
            api.GatewayTimeout,
            api.RetryError,
        ) as exc:
            raise StorageUnavailable(f"{detail}: {exc}") from exc
        except api.GoogleAPICallError as exc:
            raise StorageError(f"{detail}: {exc}") from exc
        except auth.DefaultCredentialsError as exc:
            raise AccessDenied(
                f"gcs: no Google credentials found ({exc}); set storage.credentials_file, "
                "storage.credentials_info or storage.anonymous"
            ) from exc
        except (auth.TransportError, auth.RefreshError) as exc:
            raise AccessDenied(f"{detail}: credentials could not be refreshed: {exc}") from exc
        except media.DataCorruption as exc:
            raise StorageUnavailable(f"{detail}: corrupted in transit: {exc}") from exc
        except media.InvalidResponse as exc:
            raise _from_status(exc, detail, key) from exc
        except http.SSLError as exc:
            raise StorageError(f"{detail}: TLS failed: {exc}") from exc
        except (http.ConnectionError, http.Timeout, http.ChunkedEncodingError) as exc:
            raise StorageUnavailable(f"{detail}: {type(exc).__name__}: {exc}") from exc


def create_gcs_client(
    settings: GcsStoreSettings, credentials: Any = None, project: str | None = None
) -> Any:
    """A ``google.cloud.storage.Client`` for ``settings``."""
    storage = require("google.cloud.storage", "storage-gcs")
    options = {"api_endpoint": settings.endpoint} if settings.endpoint else None
    if settings.anonymous:
        anonymous = require("google.auth.credentials", "storage-gcs").AnonymousCredentials()
        return storage.Client(
            project=settings.project or project or ANONYMOUS_PROJECT,
            credentials=anonymous,
            client_options=options,
        )
    return storage.Client(
        project=settings.project or project, credentials=credentials, client_options=options
    )


def _load_credentials(settings: GcsStoreSettings) -> tuple[Any, str | None]:
    """Service-account credentials (and their project) from the settings' key, or (None, None).

    Only service-account keys are accepted here (google-auth's advice for keys
    from configuration); other kinds come through Application Default Credentials.
    """
    if settings.credentials_info is None and settings.credentials_file is None:
        return None, None
    service_account = require("google.oauth2.service_account", "storage-gcs")
    auth_errors = require("google.auth.exceptions", "storage-gcs")
    scopes = ["https://www.googleapis.com/auth/devstorage.read_write"]
    try:
        if settings.credentials_info is not None:
            info = json.loads(settings.credentials_info.get_secret_value())
            credentials = service_account.Credentials.from_service_account_info(info, scopes=scopes)
        else:
            credentials = service_account.Credentials.from_service_account_file(
                str(settings.credentials_file), scopes=scopes
            )
    except (ValueError, KeyError, OSError, auth_errors.GoogleAuthError) as exc:
        # Never the key itself: only what is wrong with it.
        raise AccessDenied(
            f"gcs: the service-account key cannot be used ({type(exc).__name__}: {exc})"
        ) from exc
    return credentials, credentials.project_id


def _from_status(exc: Any, detail: str, key: str) -> StorageError:
    status = int(getattr(getattr(exc, "response", None), "status_code", 0) or 0)
    if status == 404:
        return ObjectNotFound(f"object {key!r} does not exist")
    if status in (401, 403):
        return AccessDenied(f"{detail}: {exc}")
    if status == 429 or status >= 500:
        return StorageUnavailable(f"{detail}: {exc}")
    return StorageError(f"{detail}: {exc}")


def _md5_hex(value: str | None) -> str:
    if not value:
        return ""
    try:
        return base64.b64decode(value, validate=True).hex()
    except (binascii.Error, ValueError):
        return ""
