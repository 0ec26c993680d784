"""The recording stores: files under a directory, and a real S3-compatible server (moto)."""

import io
from pathlib import Path

import pytest
from pydantic import SecretStr

from callwatch.errors import NotFound, RecordingStoreUnavailable
from callwatch.recordings.store import FileStore, RecordingStore, S3Store, key_of, store_for
from callwatch.settings import Settings
from tests.conftest import S3Server

DATA = bytes(range(256)) * 1000  # 256,000 bytes: several chunks


@pytest.fixture(params=["files", "s3"])
def store(request: pytest.FixtureRequest, settings: Settings) -> RecordingStore:
    if request.param == "files":
        return store_for(settings)
    s3: S3Server = request.getfixturevalue("s3_server")
    return store_for(s3.settings(settings, prefix=f"store-{id(request)}"))


def test_settings_choose_the_store(settings: Settings, s3_server: S3Server) -> None:
    files = store_for(settings)
    elsewhere = store_for(settings.model_copy(update={"recordings_url": "file:///srv/rec"}))
    bucket = store_for(s3_server.settings(settings, prefix="a/b"))
    assert (type(files), files.root) == (FileStore, settings.data_dir / "recordings")
    assert (type(elsewhere), elsewhere.root) == (FileStore, Path("/srv/rec"))
    assert (type(bucket), bucket.bucket, bucket.prefix) == (S3Store, s3_server.bucket, "a/b/")
    assert store_for(settings) is files  # made once per process


def test_a_file_is_stored_and_read_back_by_range(store: RecordingStore) -> None:
    key = key_of("org_1", "call_1")
    store.put(key, io.BytesIO(DATA), "audio/wav")
    assert b"".join(store.open(key, 0, len(DATA) - 1)) == DATA
    assert b"".join(store.open(key, 1000, 1999)) == DATA[1000:2000]
    assert b"".join(store.open(key, len(DATA) - 1, len(DATA) - 1)) == DATA[-1:]


def test_a_file_put_again_is_replaced(store: RecordingStore) -> None:
    key = key_of("org_1", "call_2", dual=True)
    store.put(key, io.BytesIO(b"first version"), "audio/wav")
    store.put(key, io.BytesIO(b"second"), "audio/mpeg")
    assert b"".join(store.open(key, 0, 5)) == b"second"


def test_a_deleted_or_never_stored_file_is_not_found(store: RecordingStore) -> None:
    key = key_of("org_1", "call_3")
    store.put(key, io.BytesIO(b"x" * 10), "audio/wav")
    store.delete(key)
    with pytest.raises(NotFound):
        store.open(key, 0, 9)
    with pytest.raises(NotFound):
        store.open(key_of("org_1", "never"), 0, 9)
    store.delete(key_of("org_1", "never"))  # deleting what is not there is no error


def test_the_s3_object_has_the_content_type(s3_server: S3Server, settings: Settings) -> None:
    store = store_for(s3_server.settings(settings, prefix="typed"))
    store.put(key_of("org_1", "call_4"), io.BytesIO(b"ID3"), "audio/mpeg")
    found = s3_server.client().head_object(Bucket=s3_server.bucket, Key="typed/org_1/call_4")
    assert (found["ContentType"], found["ContentLength"]) == ("audio/mpeg", 3)


def test_an_unreachable_bucket_is_retryable_and_says_nothing_of_the_request(
    s3_server: S3Server, settings: Settings
) -> None:
    gone = s3_server.settings(settings).model_copy(
        update={
            "recordings_url": "s3://no-such-bucket/x",
            "recordings_access_key_id": SecretStr("other"),
        }
    )
    with pytest.raises(RecordingStoreUnavailable) as raised:
        store_for(gone).put(key_of("org_1", "call_5"), io.BytesIO(b"x"), "audio/wav")
    assert str(raised.value) == "recording store: S3 NoSuchBucket (PutObject)"


def test_keys_are_callwatch_ids_only(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="callwatch's ids"):
        key_of("../etc", "passwd")
    with pytest.raises(ValueError, match="not a recording key"):
        FileStore(tmp_path).open("../../etc/passwd", 0, 1)
