"""Objects in an S3 bucket, on AWS or any S3-compatible server (MinIO, Ceph, moto).

boto3 is the ``storage-s3`` extra: it is imported when an :class:`S3Storage`
is created, so ``import dtpyfw.storage`` works without it.

How each operation talks to S3:

- ``put``: content up to ``multipart_threshold`` bytes goes in one PutObject,
  whose answer (ETag, Last-Modified or else Date) completes the returned
  ``ObjectInfo``: no second request. Anything larger streams through boto3's
  transfer manager (``upload_fileobj`` with the store's ``TransferConfig``),
  which sends ``multipart_chunk_size`` parts, ``max_concurrency`` at a time;
  then one HeadObject returns what S3 stored. (AWS sends no Last-Modified on
  PutObject: there the returned ``updated`` is the answer's Date, which can be
  a second later than what ``stat`` reports.)
- ``get``/``stream``: one GetObject; ``stream`` reads its body in chunks.
- ``download_to``: one streamed GetObject for objects up to
  ``multipart_threshold``, else ``download_fileobj`` (concurrent ranged GETs);
  the size is checked before the temp file is renamed over ``path``.
- ``list``: ListObjectsV2, page by page, then one HeadObject per object
  (``max_concurrency`` in parallel), because a listing carries neither content
  type nor metadata and ``list`` promises the same info as ``stat``.
- ``delete``: HeadObject (S3 deletes missing keys silently; we raise
  ObjectNotFound), then DeleteObject. ``delete_many`` uses DeleteObjects, 1000
  keys per request.
- ``copy``: CopyObject up to 5 GiB, the transfer manager's multipart copy
  above; ``move`` is copy then delete (S3 has no rename).

Retries: every call is retried under ``settings.retry`` on StorageUnavailable
(connection failures, timeouts, 5xx, throttling), except a ``put`` of a one-shot
stream, which cannot be read twice. botocore's own retries are switched off so
attempts are counted, and logged, in one place.

ETags: the etag of a single-request upload is the MD5 of the content; S3 gives
a multipart upload an etag of the form ``<md5 of part md5s>-<parts>``. Compare
etags with each other, not with an MD5 you computed, for objects above the
multipart threshold.

Checksums: against AWS (no ``endpoint_url``) botocore's default integrity
checksums stay on. An S3-compatible server may not implement them and refuse
any request that carries one (s3proxy answers 501 NotImplemented; MinIO and
Ceph ask for Content-MD5), so with ``endpoint_url`` set checksums are sent only
where the API demands one, and DeleteObjects, which always demands one, gets
Content-MD5 instead of botocore's CRC32.

Metadata: S3 sends metadata as HTTP headers, so names are lower-cased by S3
and must be ASCII; values that are not printable ASCII are stored RFC 2047
encoded (``=?UTF-8?B?...?=``, as AWS itself does) and decoded on the way back.
"""

from __future__ import annotations

__all__ = ["S3Storage"]

import base64
import contextlib
import email.header
import email.utils
import functools
import hashlib
import os
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, TypeVar, cast

from dtpyfw.core._extras import require
from dtpyfw.core.errors import (
    AccessDenied,
    ObjectNotFound,
    StorageError,
    StorageUnavailable,
)
from dtpyfw.storage._base import (
    DEFAULT_CHUNK_SIZE,
    BaseStorage,
    ObjectInfo,
    normalize_metadata,
    open_temp,
    resolve_content_type,
    validate_key,
    validate_prefix,
)
from dtpyfw.storage._remote import (
    Retrier,
    open_source,
    skip_unaddressable,
    verify_download,
    write_verified,
)
from dtpyfw.storage._settings import S3StoreSettings

T = TypeVar("T")

#: The largest object CopyObject copies in one request.
MAX_SINGLE_COPY = 5 * 1024**3
#: Keys per DeleteObjects request (the S3 limit).
DELETE_BATCH = 1000
#: The longest lifetime of a SigV4 presigned URL (7 days).
MAX_PRESIGN_SECONDS = 7 * 24 * 3600
PRESIGN_METHODS = {
    "GET": "get_object",
    "PUT": "put_object",
    "HEAD": "head_object",
    "DELETE": "delete_object",
}

_NOT_FOUND = {"404", "NoSuchKey", "NotFound"}
_DENIED = {
    "403",
    "AccessDenied",
    "AllAccessDisabled",
    "AccountProblem",
    "ExpiredToken",
    "InvalidAccessKeyId",
    "InvalidToken",
    "SignatureDoesNotMatch",
}
_TRANSIENT = {
    "InternalError",
    "RequestTimeout",
    "ServiceUnavailable",
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
}
_ENCODED_WORD = re.compile(r"^=\?[^?]+\?[bBqQ]\?[^?]*\?=$")
_HEADER_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


class S3Storage(BaseStorage):
    """A :class:`~dtpyfw.storage.Storage` over one S3 bucket, built from settings.

    ``client`` replaces the boto3 client the settings would build (it must
    talk to the same bucket). ``close()`` releases its connection pool.
    """

    def __init__(self, settings: S3StoreSettings, *, client: Any = None) -> None:
        require("boto3", "storage-s3")
        self._botocore_errors = require("botocore.exceptions", "storage-s3")
        self._transfer_errors = require("s3transfer.exceptions", "storage-s3")
        self.settings = settings
        self.bucket = settings.bucket
        self.client: Any = client if client is not None else create_s3_client(settings)
        self.transfer_config: Any = transfer_config(settings)
        self._retrier = Retrier("s3", settings.retry)
        if settings.create_bucket:
            self._ensure_bucket()

    def __repr__(self) -> str:
        where = self.settings.endpoint_url or "aws"
        return f"S3Storage(bucket={self.bucket!r}, endpoint={where!r})"

    def close(self) -> None:
        """Close the client's connection pool; closing twice is harmless."""
        self.client.close()

    def __enter__(self) -> S3Storage:
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
        extra = _extra_args(key, content_type, cache_control, metadata)
        source = open_source(data, self.settings.multipart_threshold)
        small = source.small
        if small is not None:
            response = self._run(
                "put",
                key,
                lambda: self.client.put_object(Bucket=self.bucket, Key=key, Body=small, **extra),
            )
            return _put_info(key, len(small), extra, response)

        def upload() -> None:
            reader = source.reader()
            with source.caller_errors_first(), self._errors("put", key):
                self.client.upload_fileobj(
                    reader, self.bucket, key, ExtraArgs=extra, Config=self.transfer_config
                )

        self._retrier.run("put", key, upload, idempotent=source.rewindable)
        return self.stat(key)

    def delete(self, key: str) -> None:
        """Remove ``key``; a missing key raises ObjectNotFound."""
        self.stat(key)
        self._run("delete", key, lambda: self.client.delete_object(Bucket=self.bucket, Key=key))

    def delete_many(self, keys: Iterable[str]) -> int:
        """Remove the keys that exist (DeleteObjects, 1000 per request); return how many."""
        unique = list(dict.fromkeys(validate_key(key) for key in keys))
        found = _each(self.exists, unique, self.settings.max_concurrency)
        present = [key for key, there in zip(unique, found, strict=True) if there]
        for start in range(0, len(present), DELETE_BATCH):
            batch = present[start : start + DELETE_BATCH]
            request = {"Objects": [{"Key": key} for key in batch], "Quiet": True}
            response = self._run(
                "delete_many",
                batch[0],
                functools.partial(self.client.delete_objects, Bucket=self.bucket, Delete=request),
            )
            for error in response.get("Errors", []):
                raise self._client_error_from(
                    error.get("Code", ""), error.get("Message", ""), "delete", error.get("Key", "")
                )
        return len(present)

    def copy(self, src: str, dst: str) -> ObjectInfo:
        """Copy ``src`` with its metadata to ``dst`` (server side, replacing ``dst``)."""
        validate_key(dst)
        info = self.stat(src)
        if src == dst:
            return info
        source = {"Bucket": self.bucket, "Key": src}
        if info.size <= MAX_SINGLE_COPY:
            self._run(
                "copy",
                src,
                lambda: self.client.copy_object(
                    Bucket=self.bucket, Key=dst, CopySource=source, MetadataDirective="COPY"
                ),
            )
        else:
            extra = _extra_args(dst, info.content_type, info.cache_control, info.metadata)
            self._run(
                "copy",
                src,
                lambda: self.client.copy(
                    source, self.bucket, dst, ExtraArgs=extra, Config=self.transfer_config
                ),
            )
        return self.stat(dst)

    def move(self, src: str, dst: str) -> ObjectInfo:
        """Copy ``src`` to ``dst``, then delete ``src`` (S3 has no rename)."""
        validate_key(src)
        info = self.copy(src, dst)
        if src != dst:
            self._run("move", src, lambda: self.client.delete_object(Bucket=self.bucket, Key=src))
        return info

    # Reading

    def get(self, key: str) -> bytes:
        """The whole content of ``key``."""
        validate_key(key)

        def read() -> bytes:
            with self._errors("get", key):
                response = self.client.get_object(Bucket=self.bucket, Key=key)
                with contextlib.closing(response["Body"]) as body:
                    return cast(bytes, body.read())

        return self._retrier.run("get", key, read)

    def stream(self, key: str, chunk_size: int = DEFAULT_CHUNK_SIZE) -> Iterator[bytes]:
        """The content of ``key`` in chunks; a missing key raises here, not on iteration.

        The GetObject is sent by this call; iterate the result (or ``close()``
        it) to give its connection back. A connection lost part way raises
        StorageUnavailable from the iterator; ``download_to`` retries instead.
        """
        if chunk_size <= 0:
            raise ValueError(f"chunk_size must be positive, not {chunk_size}")
        validate_key(key)
        response = self._run(
            "stream", key, lambda: self.client.get_object(Bucket=self.bucket, Key=key)
        )
        return _BodyChunks(response["Body"], chunk_size, lambda: self._errors("stream", key))

    def exists(self, key: str) -> bool:
        """True when ``key`` holds an object (one HeadObject)."""
        try:
            self.stat(key)
        except ObjectNotFound:
            return False
        return True

    def stat(self, key: str) -> ObjectInfo:
        """Size, etag, content type, update time and metadata of ``key`` (HeadObject)."""
        validate_key(key)
        response = self._run(
            "stat", key, lambda: self.client.head_object(Bucket=self.bucket, Key=key)
        )
        return _info(key, response)

    def list(self, prefix: str = "", recursive: bool = True) -> Iterator[ObjectInfo]:
        """Objects under ``prefix`` in key order; see the module notes on its cost."""
        validate_prefix(prefix)
        return self._list(prefix, recursive)

    def download_to(self, key: str, path: str | os.PathLike[str]) -> None:
        """Write ``key`` to ``path`` atomically, retrying transient failures.

        Small objects are streamed by one GET; large ones are fetched by boto3's
        transfer manager in concurrent ranged GETs. Either way the size is
        checked before the temp file is renamed over ``path``.
        """
        validate_key(key)
        expected = self.stat(key)
        if expected.size <= self.settings.multipart_threshold:

            def fetch() -> None:
                write_verified(path, self.stream(key), expected=expected, check_md5=False)

        else:

            def fetch() -> None:
                self._download_large(key, Path(path), expected)

        self._retrier.run("download_to", key, fetch)

    def presigned_url(self, key: str, method: str = "GET", expires: int = 3600) -> str:
        """A SigV4 URL granting ``method`` (GET, PUT, HEAD, DELETE) on ``key``.

        ``expires`` is in seconds, at most 7 days. A PUT URL accepts any
        content type; the uploader's ``Content-Type`` header is what S3 stores.
        """
        validate_key(key)
        operation = PRESIGN_METHODS.get(method.upper())
        if operation is None:
            raise ValueError(f"method must be one of {', '.join(PRESIGN_METHODS)}, not {method!r}")
        if not 1 <= expires <= MAX_PRESIGN_SECONDS:
            raise ValueError(f"expires must be 1..{MAX_PRESIGN_SECONDS} seconds, not {expires}")
        with self._errors("presigned_url", key):
            return cast(
                str,
                self.client.generate_presigned_url(
                    operation, Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=expires
                ),
            )

    def ping(self) -> None:
        """HeadBucket, once: raise StorageUnavailable (or AccessDenied) unless it answers."""
        try:
            with self._errors("ping", ""):
                self.client.head_bucket(Bucket=self.bucket)
        except ObjectNotFound as exc:
            raise StorageUnavailable(f"S3 bucket {self.bucket!r} does not exist") from exc
        except AccessDenied:
            raise
        except StorageError as exc:
            if isinstance(exc, StorageUnavailable):
                raise
            raise StorageUnavailable(f"S3 bucket {self.bucket!r}: {exc}") from exc

    # Helpers

    def _run(self, operation: str, key: str, call: Callable[[], T]) -> T:
        """One idempotent S3 request with error translation and retries."""

        def attempt() -> T:
            with self._errors(operation, key):
                return call()

        return self._retrier.run(operation, key, attempt)

    def _list(self, prefix: str, recursive: bool) -> Iterator[ObjectInfo]:
        request: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
        if not recursive:
            request["Delimiter"] = "/"
        with ThreadPoolExecutor(
            max_workers=self.settings.max_concurrency, thread_name_prefix="dtpyfw-s3-list"
        ) as pool:
            while True:
                page = self._run(
                    "list",
                    prefix,
                    lambda: self.client.list_objects_v2(**request),
                )
                keys = [
                    item["Key"]
                    for item in page.get("Contents", [])
                    if not skip_unaddressable(item["Key"])
                ]
                for info in pool.map(self._stat_or_none, keys):
                    if info is not None:
                        yield info
                token = page.get("NextContinuationToken")
                if not page.get("IsTruncated") or not token:
                    return
                request["ContinuationToken"] = token

    def _stat_or_none(self, key: str) -> ObjectInfo | None:
        try:
            return self.stat(key)
        except ObjectNotFound:
            return None  # deleted while we listed

    def _download_large(self, key: str, target: Path, expected: ObjectInfo) -> None:
        fd, temp = open_temp(target.parent)
        try:
            with os.fdopen(fd, "wb") as file:
                with self._errors("download_to", key):
                    self.client.download_fileobj(
                        self.bucket, key, file, Config=self.transfer_config
                    )
                file.flush()
                os.fsync(file.fileno())
                # Parts land at their offsets, in any order: the file's size is what counts.
                size = os.fstat(file.fileno()).st_size
            verify_download(expected, size, None)
            os.replace(temp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise

    def _ensure_bucket(self) -> None:
        try:
            with self._errors("create_bucket", ""):
                self.client.head_bucket(Bucket=self.bucket)
            return
        except ObjectNotFound:
            pass
        request: dict[str, Any] = {"Bucket": self.bucket}
        region = self.settings.region
        if region and region != "us-east-1":
            request["CreateBucketConfiguration"] = {"LocationConstraint": region}
        try:
            with self._errors("create_bucket", ""):
                self.client.create_bucket(**request)
        except StorageError as exc:
            if "BucketAlreadyOwnedByYou" not in str(exc):
                raise

    @contextlib.contextmanager
    def _errors(self, operation: str, key: str) -> Iterator[None]:
        """Translate botocore / s3transfer exceptions into the StorageError tree, chained."""
        errors = self._botocore_errors
        try:
            yield
        except errors.ClientError as exc:
            details = exc.response.get("Error", {})
            code = str(details.get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if not code and status:
                code = str(status)
            error = self._client_error_from(
                code, str(details.get("Message", "")), operation, key, status
            )
            raise error from exc
        except (errors.NoCredentialsError, errors.PartialCredentialsError) as exc:
            raise AccessDenied(f"s3 {operation}: no usable AWS credentials ({exc})") from exc
        except errors.SSLError as exc:
            raise StorageError(
                f"s3 {operation}: TLS failed ({exc}); check ca_file / tls_verify"
            ) from exc
        except (
            errors.ConnectionError,
            errors.HTTPClientError,
            errors.IncompleteReadError,
            errors.ChecksumError,
            self._transfer_errors.RetriesExceededError,
        ) as exc:
            raise StorageUnavailable(
                f"s3 {operation} of {key!r} failed: {type(exc).__name__}: {exc}"
            ) from exc
        except errors.BotoCoreError as exc:
            raise StorageError(f"s3 {operation} of {key!r} failed: {exc}") from exc

    def _client_error_from(
        self, code: str, message: str, operation: str, key: str, status: int = 0
    ) -> StorageError:
        if code in _NOT_FOUND or (status == 404 and code != "NoSuchBucket"):
            return ObjectNotFound(f"object {key!r} does not exist")
        if code == "NoSuchBucket":
            return StorageError(f"S3 bucket {self.bucket!r} does not exist")
        detail = f"s3 {operation} of {key!r} failed: {code}: {message}".rstrip(": ")
        if code in _DENIED or status == 403:
            return AccessDenied(detail)
        if code in _TRANSIENT or status >= 500 or status == 429:
            return StorageUnavailable(detail)
        return StorageError(detail)


def _each(call: Callable[[str], T], keys: list[str], workers: int) -> list[T]:
    """``call`` on every key, ``workers`` at a time, results in key order."""
    if len(keys) <= 1:
        return [call(key) for key in keys]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dtpyfw-s3") as pool:
        return list(pool.map(call, keys))


def create_s3_client(settings: S3StoreSettings) -> Any:
    """A boto3 S3 client for ``settings`` (botocore's own retries off: see the module notes)."""
    boto3 = require("boto3", "storage-s3")
    config_module = require("botocore.config", "storage-s3")
    # An S3-compatible server may lack the flexible checksums botocore (>= 1.36) sends to
    # AWS by default, and refuse every request carrying one (s3proxy answers 501): send
    # checksums there only where the API demands one (see _content_md5_for_delete).
    compatible = settings.endpoint_url is not None
    checksums = "when_required" if compatible else "when_supported"
    config = config_module.Config(
        s3={"addressing_style": settings.addressing_style},
        connect_timeout=settings.connect_timeout,
        read_timeout=settings.read_timeout,
        retries={"mode": "standard", "total_max_attempts": 1},
        max_pool_connections=max(10, settings.max_concurrency * 2),
        signature_version="s3v4",
        request_checksum_calculation=checksums,
        response_checksum_validation=checksums,
    )
    verify: bool | str = settings.tls_verify
    if settings.tls_verify and settings.ca_file is not None:
        verify = str(settings.ca_file)
    client = _shared_session(boto3).client(
        "s3",
        region_name=settings.region,
        endpoint_url=settings.endpoint_url,
        aws_access_key_id=settings.access_key_id,
        aws_secret_access_key=_secret(settings.secret_access_key),
        aws_session_token=_secret(settings.session_token),
        verify=verify,
        config=config,
    )
    if compatible:
        client.meta.events.register("before-sign.s3.DeleteObjects", _content_md5_for_delete)
    return client


def _content_md5_for_delete(request: Any, **_: Any) -> None:
    """Give DeleteObjects the Content-MD5 header S3-compatible servers require.

    botocore >= 1.36 sends a CRC32 checksum instead, even with
    ``when_required``; MinIO, Ceph and s3proxy refuse that (MissingContentMD5,
    NotImplemented). AWS accepts either. Runs before signing, so the signature
    covers the header.
    """
    body = request.body.encode() if isinstance(request.body, str) else request.body
    if not isinstance(body, bytes):
        return  # never for DeleteObjects, whose body is its serialized XML
    for name in list(request.headers):
        if name.lower().startswith(("x-amz-checksum-", "x-amz-sdk-checksum-")):
            del request.headers[name]
    digest = hashlib.md5(body, usedforsecurity=False).digest()
    request.headers["Content-MD5"] = base64.b64encode(digest).decode()


_SESSION_LOCK = threading.Lock()
_SESSIONS: dict[int, Any] = {}


def _shared_session(boto3: Any) -> Any:
    """One boto3 Session per process: loading botocore's models costs ~100 ms per Session.

    Creating clients from a Session is not thread-safe, so this hands it out
    under a lock; the clients themselves are thread-safe.
    """
    with _SESSION_LOCK:
        session = _SESSIONS.get(os.getpid())
        if session is None:
            session = _SESSIONS[os.getpid()] = _LockedSession(boto3.session.Session())
        return session


class _LockedSession:
    def __init__(self, session: Any) -> None:
        self._session = session
        self._lock = threading.Lock()

    def client(self, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return self._session.client(*args, **kwargs)


def transfer_config(settings: S3StoreSettings) -> Any:
    """The ``boto3.s3.transfer.TransferConfig`` the store uploads and downloads with."""
    transfer = require("boto3.s3.transfer", "storage-s3")
    config = transfer.TransferConfig(
        multipart_threshold=settings.multipart_threshold,
        multipart_chunksize=settings.multipart_chunk_size,
        max_concurrency=settings.max_concurrency,
        num_download_attempts=1,  # retried by settings.retry, like every other call
    )
    # Bounds a streamed upload's memory: one part per thread.
    config.max_in_memory_upload_chunks = settings.max_concurrency
    return config


class _BodyChunks:
    """An iterator over a GetObject body that gives its connection back when done."""

    def __init__(
        self,
        body: Any,
        chunk_size: int,
        errors: Callable[[], contextlib.AbstractContextManager[None]],
    ) -> None:
        self._body = body
        self._chunk_size = chunk_size
        self._errors = errors
        self._closed = False

    def __iter__(self) -> _BodyChunks:
        return self

    def __next__(self) -> bytes:
        if self._closed:
            raise StopIteration
        try:
            with self._errors():
                chunk = self._body.read(self._chunk_size)
        except BaseException:
            self.close()
            raise
        if not chunk:
            self.close()
            raise StopIteration
        return cast(bytes, chunk)

    def close(self) -> None:
        """Release the HTTP connection; closing twice is harmless."""
        if not self._closed:
            self._closed = True
            self._body.close()

    def __del__(self) -> None:
        if not getattr(self, "_closed", True):
            with contextlib.suppress(Exception):
                self._body.close()


def _extra_args(
    key: str,
    content_type: str | None,
    cache_control: str | None,
    metadata: Mapping[str, str] | None,
) -> dict[str, Any]:
    extra: dict[str, Any] = {
        "ContentType": resolve_content_type(key, content_type),
        "Metadata": _encode_metadata(normalize_metadata(metadata)),
    }
    if cache_control is not None:
        extra["CacheControl"] = cache_control
    return extra


def _encode_metadata(metadata: dict[str, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in metadata.items():
        if not _HEADER_TOKEN.match(name):
            raise ValueError(
                f"S3 metadata names must be ASCII header tokens (letters, digits, '-'), "
                f"not {name!r}"
            )
        if value.isascii() and value.isprintable() and not _ENCODED_WORD.match(value):
            out[name] = value
        else:
            encoded = base64.b64encode(value.encode("utf-8")).decode("ascii")
            out[name] = f"=?UTF-8?B?{encoded}?="
    return out


def _decode_metadata(metadata: Mapping[str, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in metadata.items():
        out[name] = _decode_word(value) if _ENCODED_WORD.match(value) else value
    return out


def _decode_word(value: str) -> str:
    """An RFC 2047 encoded word decoded; left as stored when it does not decode."""
    try:
        return "".join(
            part.decode(charset or "ascii") if isinstance(part, bytes) else part
            for part, charset in email.header.decode_header(value)
        )
    except (ValueError, LookupError):
        return value


def _info(key: str, response: Mapping[str, Any]) -> ObjectInfo:
    return ObjectInfo(
        key=key,
        size=int(response.get("ContentLength", 0)),
        etag=str(response.get("ETag", "")).strip('"'),
        content_type=str(response.get("ContentType") or resolve_content_type(key, None)),
        updated=response["LastModified"],
        metadata=_decode_metadata(response.get("Metadata", {})),
        cache_control=response.get("CacheControl"),
    )


def _put_info(
    key: str, size: int, extra: Mapping[str, Any], response: Mapping[str, Any]
) -> ObjectInfo:
    """The ObjectInfo of a PutObject, from what was sent and what S3 answered."""
    headers = response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
    stamp = headers.get("last-modified") or headers.get("date")
    updated = email.utils.parsedate_to_datetime(stamp) if stamp else datetime.now(UTC)
    return ObjectInfo(
        key=key,
        size=size,
        etag=str(response.get("ETag", "")).strip('"'),
        content_type=extra["ContentType"],
        updated=updated,
        # S3 lower-cases metadata names, so stat() will too.
        metadata={
            name.lower(): value for name, value in _decode_metadata(extra["Metadata"]).items()
        },
        cache_control=extra.get("CacheControl"),
    )


def _secret(value: Any) -> str | None:
    return None if value is None else str(value.get_secret_value())
