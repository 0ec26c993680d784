"""Where archived recordings are kept: files under a directory, or an S3-compatible bucket.

`CALLWATCH_RECORDINGS_URL` chooses (settings.py): unset, files under DATA_DIR/recordings;
`file:///path`, files there; `s3://bucket/prefix`, objects in that bucket through boto3. A key
is `{org_id}/{call_id}` (`.dual` for a separate dual-channel file): callwatch's own ids only.
"""

import os
import re
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from callwatch.errors import NotFound, RecordingStoreUnavailable
from callwatch.settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

CHUNK = 64 * 1024
_KEY = re.compile(r"[A-Za-z0-9_-]{1,80}/[A-Za-z0-9_-]{1,80}(\.dual)?")
_MISSING = frozenset({"NoSuchKey", "404", "NotFound"})


def key_of(org_id: str, call_id: str, *, dual: bool = False) -> str:
    key = f"{org_id}/{call_id}{'.dual' if dual else ''}"
    if not _KEY.fullmatch(key):
        raise ValueError("a recording key is made of callwatch's ids")
    return key


class RecordingStore(Protocol):
    def put(self, key: str, file: IO[bytes], content_type: str) -> None:
        """Store the file (read from its start) under `key`, replacing any file there."""
        ...

    def open(self, key: str, start: int, end: int) -> Iterator[bytes]:
        """Bytes `start` to `end` (inclusive) of the file, in chunks; NotFound if none."""
        ...

    def delete(self, key: str) -> None:
        """Remove the file if it is there."""
        ...


class FileStore:
    """Files under a directory; each written beside its place, then renamed into it."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        if not _KEY.fullmatch(key):
            raise ValueError("not a recording key")
        return self.root / key

    def put(self, key: str, file: IO[bytes], content_type: str) -> None:
        path = self._path(key)
        written: Path | None = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=path.parent, prefix=".", delete=False) as out:
                written = Path(out.name)
                file.seek(0)
                shutil.copyfileobj(file, out, CHUNK)
                out.flush()
                os.fsync(out.fileno())
            os.replace(written, path)  # a reader sees the old file or the new, never a part
        except OSError as exc:
            if written is not None:
                written.unlink(missing_ok=True)
            raise RecordingStoreUnavailable(f"recording store: {exc.strerror}") from exc

    def open(self, key: str, start: int, end: int) -> Iterator[bytes]:
        try:
            handle = self._path(key).open("rb")
        except FileNotFoundError:
            raise NotFound("the archived recording is not in the store") from None
        except OSError as exc:
            raise RecordingStoreUnavailable(f"recording store: {exc.strerror}") from exc
        return _read_range(handle, start, end)

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)


def _read_range(handle: IO[bytes], start: int, end: int) -> Iterator[bytes]:
    with handle:
        handle.seek(start)
        left = end - start + 1
        while left > 0:
            chunk = handle.read(min(CHUNK, left))
            if not chunk:
                return
            left -= len(chunk)
            yield chunk


class S3Store:
    """Objects in an S3-compatible bucket, under a prefix."""

    def __init__(self, client: "S3Client", bucket: str, prefix: str) -> None:
        self.client, self.bucket = client, bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""

    def _key(self, key: str) -> str:
        if not _KEY.fullmatch(key):
            raise ValueError("not a recording key")
        return self.prefix + key

    def put(self, key: str, file: IO[bytes], content_type: str) -> None:
        file.seek(0)
        try:  # multipart for a large file, as boto3's transfer manager chooses
            self.client.upload_fileobj(
                file, self.bucket, self._key(key), ExtraArgs={"ContentType": content_type}
            )
        except (BotoCoreError, ClientError) as exc:
            raise RecordingStoreUnavailable(f"recording store: {_why(exc)}") from exc

    def open(self, key: str, start: int, end: int) -> Iterator[bytes]:
        try:
            found = self.client.get_object(
                Bucket=self.bucket, Key=self._key(key), Range=f"bytes={start}-{end}"
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in _MISSING:
                raise NotFound("the archived recording is not in the store") from None
            raise RecordingStoreUnavailable(f"recording store: {_why(exc)}") from exc
        except BotoCoreError as exc:
            raise RecordingStoreUnavailable(f"recording store: {_why(exc)}") from exc
        return _chunks(found["Body"])

    def delete(self, key: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self._key(key))
        except (BotoCoreError, ClientError) as exc:
            raise RecordingStoreUnavailable(f"recording store: {_why(exc)}") from exc


def _chunks(body: Any) -> Iterator[bytes]:
    try:
        yield from body.iter_chunks(CHUNK)
    finally:
        body.close()


def _why(exc: Exception) -> str:
    """What failed, without the request (its URL may hold a signature)."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"S3 {error.get('Code', 'error')} ({exc.operation_name})"
    return type(exc).__name__


_stores: dict[tuple[Any, ...], RecordingStore] = {}
_lock = threading.Lock()


def store_for(settings: Settings) -> RecordingStore:
    """The process's store for these settings, made once (a boto3 client is thread-safe)."""
    secret = settings.recordings_secret_access_key
    access = settings.recordings_access_key_id
    identity = (
        settings.recordings_url,
        str(settings.data_dir),
        settings.recordings_endpoint_url,
        settings.recordings_region,
        access.get_secret_value() if access else None,
        secret.get_secret_value() if secret else None,
    )
    with _lock:
        if identity not in _stores:
            _stores[identity] = _make(settings)
        return _stores[identity]


def _make(settings: Settings) -> RecordingStore:
    url = settings.recordings_url
    if url is None:
        return FileStore(settings.data_dir / "recordings")
    if url.startswith("file://"):
        return FileStore(Path(url.removeprefix("file://")))
    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    access = settings.recordings_access_key_id
    secret = settings.recordings_secret_access_key
    client = boto3.session.Session().client(
        "s3",
        endpoint_url=settings.recordings_endpoint_url,
        region_name=settings.recordings_region,
        aws_access_key_id=access.get_secret_value() if access else None,
        aws_secret_access_key=secret.get_secret_value() if secret else None,
        config=Config(retries={"max_attempts": 3, "mode": "standard"}),
    )
    return S3Store(client, bucket, prefix)
