"""Real servers the tests start on 127.0.0.1 and stop by PID: PostgreSQL and SeaweedFS (S3).

Each one is private to the test session: its own data directory in a temp dir, its own free ports,
never a server that was already running. conftest.py turns them into fixtures.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

S3_ACCESS, S3_SECRET = "wanpipelinetest", "wanpipelinetestsecret"
S3_BUCKET = "wan-test"
WEED = shutil.which("weed") or str(Path(sys.executable).parent / "weed")


def free_port() -> int:
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port < 55000:  # SeaweedFS puts each gRPC port at port + 10000
            return port


def stop_pid(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, wait_s: float = 30) -> None:
    """Stops the process group we started (by its PID), escalating to SIGKILL if it lingers."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


# -- PostgreSQL ---------------------------------------------------------------------------------------


def postgres_bin() -> Path:
    """The newest installed PostgreSQL's bin dir (Debian: /usr/lib/postgresql/N/bin); .ci/run installs it."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name))
    if found:
        return found[-1].parent
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).parent
    raise RuntimeError("PostgreSQL is not installed: run `apt-get install -y postgresql` (.ci/run does it)")


class PostgresCluster:
    """A throwaway cluster: initdb in a temp dir, `postgres` on 127.0.0.1:<free port>, trust auth.

    initdb refuses to run as root, so as root the cluster runs as the `postgres` system user.
    """

    def __init__(self) -> None:
        self.bin = postgres_bin()
        self.root = Path(tempfile.mkdtemp(prefix="wan-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.user = "postgres" if os.geteuid() == 0 else None
        if self.user is not None:
            shutil.chown(self.root, self.user, self.user)
        self.proc: subprocess.Popen[bytes] | None = None
        self._counter = 0

    def start(self) -> None:
        subprocess.run(
            [str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8"],
            user=self.user, check=True, capture_output=True,
        )
        log = (self.root / "postgres.log").open("wb")
        self.proc = subprocess.Popen(
            [str(self.bin / "postgres"), "-D", str(self.data), "-p", str(self.port), "-k", str(self.root),
             "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "max_connections=200"],
            user=self.user, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + 60
        while subprocess.run([str(self.bin / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
                             capture_output=True, check=False).returncode != 0:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL did not start: {(self.root / 'postgres.log').read_text()[-2000:]}")
            time.sleep(0.1)

    def url(self, db: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{db}"

    def create_database(self, prefix: str = "t") -> str:
        """A fresh, empty database; returns its URL."""
        import psycopg2

        self._counter += 1
        name = f"{prefix}_{os.getpid()}_{self._counter}"
        conn = psycopg2.connect(self.url())
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{name}"')
        finally:
            conn.close()
        return self.url(name)

    def stop(self) -> None:
        if self.proc is not None:
            stop_pid(self.proc, signal.SIGINT)  # "fast" shutdown: disconnects clients, then exits
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def postgres_cluster() -> Iterator[PostgresCluster]:
    cluster = PostgresCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


# -- SeaweedFS (S3 with real signature checking) --------------------------------------------------------


@contextlib.contextmanager
def seaweedfs(root: Path) -> Iterator[str]:
    """`weed mini` bound to 127.0.0.1; yields its S3 endpoint URL."""
    config = root / "s3.json"
    config.write_text(json.dumps({"identities": [{"name": "admin", "credentials": [
        {"accessKey": S3_ACCESS, "secretKey": S3_SECRET}], "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
    s3_port = free_port()
    args = [WEED, "mini", f"-dir={root / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-s3.config={config}",
            "-admin.ui=false", f"-s3.port={s3_port}", f"-master.port={free_port()}",
            f"-volume.port={free_port()}", f"-filer.port={free_port()}"]
    (root / "data").mkdir()
    with (root / "weed.log").open("wb") as log:
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    endpoint = f"http://127.0.0.1:{s3_port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(endpoint, timeout=1)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"SeaweedFS did not start: {(root / 'weed.log').read_text()[-2000:]}") from None
                time.sleep(0.3)
        yield endpoint
    finally:
        stop_pid(proc, signal.SIGTERM, wait_s=15)


def ensure_bucket(endpoint: str, bucket: str = S3_BUCKET) -> None:
    """Creates the bucket, waiting for the filer behind the S3 gateway (it answers before it can create)."""
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id=S3_ACCESS, aws_secret_access_key=S3_SECRET)
    deadline = time.monotonic() + 30
    while True:
        try:
            existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
            if bucket not in existing:
                client.create_bucket(Bucket=bucket)
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def s3_environ(endpoint: str) -> dict[str, str]:
    """What a process needs to reach the test S3 store (DESIGN §11: the endpoint plus the AWS variables)."""
    return {"AWS_ACCESS_KEY_ID": S3_ACCESS, "AWS_SECRET_ACCESS_KEY": S3_SECRET, "AWS_REGION": "us-east-1",
            "WAN_PIPELINE_S3_ENDPOINT_URL": endpoint}


def s3_keys(endpoint: str, prefix: str, bucket: str = S3_BUCKET) -> list[str]:
    """Every object key under `prefix` in the test bucket."""
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id=S3_ACCESS, aws_secret_access_key=S3_SECRET)
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]
