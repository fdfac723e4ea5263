"""Where media and lineage land: a local directory (default) or s3://bucket/prefix via dagster-aws."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Protocol

from wan_pipeline.errors import StorageUnavailable

#: S3 error codes that mean "no such object" (HEAD answers a bare 404; GET names the key)
S3_NOT_FOUND = frozenset({"404", "NoSuchKey", "NotFound"})


class Storage(Protocol):
    root: str

    def uri(self, relpath: str) -> str: ...
    def put(self, relpath: str, data: bytes, content_type: str) -> str: ...
    def get(self, relpath: str) -> bytes: ...
    def size(self, relpath: str) -> int | None:
        """The stored file's size; None when it is surely not there. Raises StorageUnavailable when the
        storage could not answer (a failed check is not a missing file)."""
        ...

    def stamps(self, prefix: str) -> dict[str, str]:
        """A stamp for every file under `prefix` (relpath -> stamp), in one listing: the stamp changes whenever
        the file's content may have (local: size, mtime, inode; S3: size and ETag)."""
        ...

    def stamp(self, relpath: str) -> str | None:
        """One file's stamp, as `stamps` gives it; None when it is not there."""
        ...


class LocalStorage:
    def __init__(self, root: str | Path) -> None:
        self.root = str(Path(root).resolve())

    def path(self, relpath: str) -> Path:
        return Path(self.root) / relpath

    def uri(self, relpath: str) -> str:
        return str(self.path(relpath))

    def put(self, relpath: str, data: bytes, content_type: str) -> str:
        """Atomic: a reader (or a crash) never sees half a file under the final name."""
        target = self.path(relpath)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=target.suffix)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return str(target)

    def get(self, relpath: str) -> bytes:
        return self.path(relpath).read_bytes()

    def size(self, relpath: str) -> int | None:
        p = self.path(relpath)
        try:
            st = p.stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:  # permission denied, I/O error, a stale network mount...
            raise StorageUnavailable(
                code="storage_unavailable", message=f"could not check {p}: {exc.strerror or exc}"
            ) from exc
        return st.st_size if p.is_file() else None

    def stamps(self, prefix: str) -> dict[str, str]:
        found: dict[str, str] = {}
        skip = len(self.root.rstrip(os.sep)) + 1
        for folder, _, files in os.walk(self.path(prefix)):
            for name in files:
                path = os.path.join(folder, name)  # strings, not Path objects: one per stored file
                try:
                    st = os.stat(path)
                except OSError:
                    continue  # gone meanwhile: not stamped, so whoever needs it reads it
                found[path[skip:].replace(os.sep, "/")] = _local_stamp(st)
        return found

    def stamp(self, relpath: str) -> str | None:
        try:
            return _local_stamp(self.path(relpath).stat())
        except OSError:
            return None


class S3Storage:
    """S3 through a boto3 client (from dagster_aws.s3.S3Resource.get_client())."""

    def __init__(self, url: str, client: Any) -> None:
        without = url.removeprefix("s3://")
        self.bucket, _, prefix = without.partition("/")
        self.prefix = prefix.strip("/")
        self.root = url.rstrip("/")
        self.client = client

    def key(self, relpath: str) -> str:
        return f"{self.prefix}/{relpath}" if self.prefix else relpath

    def uri(self, relpath: str) -> str:
        return f"s3://{self.bucket}/{self.key(relpath)}"

    def put(self, relpath: str, data: bytes, content_type: str) -> str:
        self.client.put_object(Bucket=self.bucket, Key=self.key(relpath), Body=data, ContentType=content_type)
        return self.uri(relpath)

    def get(self, relpath: str) -> bytes:
        obj = self.client.get_object(Bucket=self.bucket, Key=self.key(relpath))
        return bytes(obj["Body"].read())

    def size(self, relpath: str) -> int | None:
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self.key(relpath))
        except Exception as exc:  # botocore raises ClientError, EndpointConnectionError, NoCredentialsError...
            response = getattr(exc, "response", None)
            code = str(((response or {}).get("Error") or {}).get("Code", "")) if isinstance(response, dict) else ""
            if code in S3_NOT_FOUND:
                return None
            # Auth, throttling, network: the object may well be there. Only the class and code are kept, so
            # no signed URL or key id from the exception text can reach a log.
            raise StorageUnavailable(
                code="storage_unavailable",
                message=f"could not check s3://{self.bucket}/{self.key(relpath)}: {type(exc).__name__} {code}".rstrip(),
            ) from exc
        return int(head["ContentLength"])

    def stamps(self, prefix: str) -> dict[str, str]:
        found: dict[str, str] = {}
        start = self.key(prefix)
        strip = len(self.prefix) + 1 if self.prefix else 0
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=start):
            for obj in page.get("Contents", []):
                found[str(obj["Key"])[strip:]] = f"{obj['Size']}:{obj['ETag']}"
        return found

    def stamp(self, relpath: str) -> str | None:
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self.key(relpath))
        except Exception:  # not there, or no answer: unstamped, so whoever needs the file reads it
            return None
        return f"{head['ContentLength']}:{head['ETag']}"

    def presign(self, relpath: str, expires_s: int = 24 * 3600) -> str:
        return str(
            self.client.generate_presigned_url(
                "get_object", Params={"Bucket": self.bucket, "Key": self.key(relpath)}, ExpiresIn=expires_s
            )
        )


def _local_stamp(st: os.stat_result) -> str:
    return f"{st.st_size}:{st.st_mtime_ns}:{st.st_ino}"


def relpath_of(storage: Storage, uri: str) -> str | None:
    """The path under `storage` that `uri` (as its `put` returned it) names, or None if it is elsewhere."""
    prefix = storage.root.rstrip("/") + "/"
    return uri[len(prefix) :] if uri.startswith(prefix) else None


def s3_client(endpoint_url: str | None = None, region: str | None = None) -> Any:
    """A boto3 S3 client through dagster-aws; credentials come from the standard AWS chain (env, profile),
    the endpoint from WAN_PIPELINE_S3_ENDPOINT_URL for S3-compatible stores."""
    from dagster_aws.s3 import S3Resource

    return S3Resource(
        endpoint_url=endpoint_url or os.environ.get("WAN_PIPELINE_S3_ENDPOINT_URL") or None,
        region_name=region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or None,
    ).get_client()


def open_storage(root: str, client: Any | None = None) -> Storage:
    if root.startswith("s3://"):
        return S3Storage(root, client if client is not None else s3_client())
    return LocalStorage(root)
