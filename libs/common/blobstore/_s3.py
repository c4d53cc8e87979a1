"""A blob store in an S3 bucket: production's (AWS S3, or a compatible server such as
SeaweedFS or MinIO at ``DOCUMIND_S3_ENDPOINT_URL``).

Client: obstore (Rust's ``object_store`` crate): one wheel without Python
dependencies, fully typed, with connection pooling, retries, timeouts and bulk
deletes built in (boto3 brings botocore's tens of megabytes and no types). What it
cannot do is create a bucket: the bucket must exist (compose's SeaweedFS creates it on
first use by its admin identity).

Its calls run in a worker thread each, blocking on obstore's own runtime, rather than
through obstore's ``*_async`` methods: those finish by waking the event loop from a
Rust thread, which aborts the process (SIGABRT) when the interpreter is exiting at that
moment, as a short-lived process such as the sweep does (seen in about 1 run of 20).

A blob's content type is the object's ``Content-Type``. Requests are retried twice
with a short backoff, within ``s3_timeout_s``, so an upload fails fast with 503
rather than hang on a store that is down.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import TYPE_CHECKING, TypeVar

from obstore.exceptions import PermissionDeniedError, UnauthenticatedError
from obstore.store import S3Store

from libs.common.blobstore._base import Blob, BlobInfo, check_key, check_prefix
from libs.common.errors import BlobStoreRefused, BlobStoreUnavailable

if TYPE_CHECKING:
    from obstore import Attributes
    from obstore.store import S3Config

T = TypeVar("T")
DEFAULT_CONTENT_TYPE = "application/octet-stream"
# Bulk deletes: what one DeleteObjects request may name.
_DELETE_BATCH = 1000


class S3BlobStore:
    kind = "s3"

    def __init__(
        self,
        bucket: str,
        *,
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        timeout_s: float = 60.0,
        connect_timeout_s: float = 5.0,
    ) -> None:
        self.bucket = bucket
        self.endpoint_url = endpoint_url
        config: S3Config = {"region": region}
        if endpoint_url:
            # Path-style requests (http://host:port/bucket/key): what compatible servers serve.
            config |= {"endpoint": endpoint_url, "virtual_hosted_style_request": False}
        if access_key_id is not None:
            config["access_key_id"] = access_key_id
        if secret_access_key is not None:
            config["secret_access_key"] = secret_access_key
        self._store = S3Store(
            bucket,
            config=config,
            client_options={
                "allow_http": bool(endpoint_url and endpoint_url.startswith("http://")),
                "timeout": timedelta(seconds=timeout_s),
                "connect_timeout": timedelta(seconds=connect_timeout_s),
            },
            retry_config={
                "max_retries": 2,
                "backoff": {
                    "init_backoff": timedelta(milliseconds=100),
                    "max_backoff": timedelta(seconds=1),
                    "base": 2,
                },
                "retry_timeout": timedelta(seconds=timeout_s),
            },
        )

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        check_key(key)
        attributes: Attributes = {"Content-Type": content_type}
        await self._call(lambda: self._store.put(key, data, attributes=attributes), key, missing="put")

    async def get(self, key: str) -> Blob | None:
        check_key(key)

        def read() -> Blob:
            result = self._store.get(key)
            data = result.bytes()
            content_type = str(result.attributes.get("Content-Type") or DEFAULT_CONTENT_TYPE)
            return Blob(bytes(data), content_type)

        return await self._call(read, key, missing=None)

    async def delete(self, key: str) -> None:
        check_key(key)
        await self._call(lambda: self._store.delete(key), key, missing=None)

    async def delete_prefix(self, prefix: str) -> int:
        if not check_prefix(prefix):
            raise ValueError("delete_prefix needs a prefix: a tenant's, a document's")
        keys = [info.key async for info in self.list(prefix)]
        for start in range(0, len(keys), _DELETE_BATCH):
            batch = keys[start : start + _DELETE_BATCH]
            await self._call(functools.partial(self._store.delete, batch), prefix, missing=None)
        return len(keys)

    async def list(self, prefix: str = "") -> AsyncIterator[BlobInfo]:
        check_prefix(prefix)
        stream = self._store.list(prefix.rstrip("/") or None)
        while True:
            # A batch at a time (obstore's chunks of 50), in key order.
            batch = await self._call(lambda: next(stream, None), prefix or "/", missing=None)
            if batch is None:
                return
            for meta in batch:
                yield BlobInfo(meta["path"], meta["size"], meta["last_modified"].timestamp())

    async def _call(self, call: Callable[[], T], key: str, *, missing: str | None) -> T | None:
        """``call``'s result, run in a worker thread; None when nothing is at ``key`` (unless
        ``missing`` names the call: then the bucket is missing); the store's errors as ours."""
        where = f"S3 bucket '{self.bucket}'" + (f" at {self.endpoint_url}" if self.endpoint_url else "")
        try:
            return await asyncio.to_thread(call)
        except FileNotFoundError as exc:
            if missing is None:
                return None
            raise BlobStoreRefused(
                f"{where}: not found on {missing} of {key}: does the bucket exist?"
            ) from exc
        except (PermissionDeniedError, UnauthenticatedError, PermissionError) as exc:
            raise BlobStoreRefused(
                f"{where} refused access ({key}): check DOCUMIND_S3_* credentials"
            ) from exc
        except Exception as exc:  # obstore's other errors: unreachable, timed out, 5xx
            raise BlobStoreUnavailable(f"{where} is unavailable ({key}): {_first_line(exc)}") from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__
