"""The archive: finished jobs and old audit records as objects in S3 (or any S3-compatible
store), written and read through boto3.

boto3 blocks, so every call (and the encoding of the message it carries) runs on a thread,
never on the event loop. botocore retries each request itself (standard mode: throttling,
5xx and connection errors, with backoff); what still fails is ArchiveUnavailable, and the
caller decides: the retention sweep leaves the job in the store for the next sweep, a read
answers UNAVAILABLE.

Objects (docs/operations.md, protos/sluice/v1/archive.proto):
    PREFIX/<tenant_id>/<job_id>.binpb                 sluice.v1.ArchivedJob
    PREFIX/audit/<first seq>-<last seq>.binpb         sluice.v1.ArchivedAuditBatch
The tenant in a job's key is what keeps tenants apart: a caller's read names its own tenant,
so another tenant's job id finds no object. Tenant ids are "t_<hex>", never "audit".
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import Any

import boto3
import botocore.config
import botocore.exceptions

from sluice.v1 import archive_pb2 as arc

# Attempts per request, the first included (botocore's standard mode backs off between them).
MAX_ATTEMPTS = 5
CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 30.0
# Requests at once (the sweep's writers and the API's readers together).
MAX_CONNECTIONS = 16
CONTENT_TYPE = "application/x-protobuf"
SUFFIX = ".binpb"
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


class ArchiveUnavailable(Exception):
    """The archive did not take or give an object (after botocore's retries)."""


@dataclass(frozen=True)
class ArchiveLocation:
    bucket: str
    prefix: str  # without a trailing "/"; may be empty

    @classmethod
    def parse(cls, url: str) -> ArchiveLocation:
        scheme, sep, rest = url.partition("://")
        bucket, _, prefix = rest.partition("/")
        if scheme != "s3" or not sep or not _BUCKET.fullmatch(bucket):
            raise ValueError(f"SLUICE_ARCHIVE_URL={url!r}: expected s3://BUCKET/PREFIX "
                             "(a bucket name of 3-63 lowercase letters, digits, '.' or '-')")
        return cls(bucket, prefix.strip("/"))

    def key(self, *parts: str) -> str:
        return "/".join(part for part in (self.prefix, *parts) if part)


def _missing(exc: botocore.exceptions.ClientError) -> bool:
    # Only an answer that the key is absent: a missing bucket or a refusal is the archive
    # not working, not an unknown job.
    return exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404")


class JobArchive:
    def __init__(self, location: ArchiveLocation, s3: Any) -> None:
        self.location = location
        self._s3 = s3

    @classmethod
    async def open(cls, url: str, endpoint_url: str = "") -> JobArchive:
        """A client for SLUICE_ARCHIVE_URL; credentials and region from boto3's usual chain
        (environment, shared files, instance or pod role). Nothing is sent yet."""
        location = ArchiveLocation.parse(url)
        config = botocore.config.Config(
            retries={"mode": "standard", "max_attempts": MAX_ATTEMPTS},
            connect_timeout=CONNECT_TIMEOUT_S, read_timeout=READ_TIMEOUT_S,
            max_pool_connections=MAX_CONNECTIONS,
        )

        def client() -> Any:
            # Its own session: boto3's default one is shared and not safe to make clients
            # from on several threads. Making one reads files: a thread, not the loop.
            return boto3.session.Session().client(
                "s3", endpoint_url=endpoint_url or None, config=config)

        return cls(location, await asyncio.to_thread(client))

    def job_key(self, tenant_id: str, job_id: str) -> str:
        return self.location.key(tenant_id, job_id + SUFFIX)

    def audit_key(self, first_seq: int, last_seq: int) -> str:
        return self.location.key("audit", f"{first_seq:020d}-{last_seq:020d}{SUFFIX}")

    async def put_job(self, archived: arc.ArchivedJob) -> str:
        """Writes the job's object; returns its key once the archive has confirmed it."""
        key = self.job_key(archived.tenant_id, archived.job.id)
        await asyncio.to_thread(self._put, key, archived)
        return key

    async def put_audit(self, batch: arc.ArchivedAuditBatch) -> str:
        key = self.audit_key(batch.events[0].seq, batch.events[-1].seq)
        await asyncio.to_thread(self._put, key, batch)
        return key

    def _put(self, key: str, message: arc.ArchivedJob | arc.ArchivedAuditBatch) -> None:
        try:
            self._s3.put_object(Bucket=self.location.bucket, Key=key,
                                Body=message.SerializeToString(), ContentType=CONTENT_TYPE)
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise ArchiveUnavailable(f"writing s3://{self.location.bucket}/{key}: {exc}"
                                     ) from exc

    async def get_job(self, tenant_id: str, job_id: str) -> arc.ArchivedJob | None:
        """The tenant's archived job, or None when the archive has no such object."""
        return await asyncio.to_thread(self._get_job, tenant_id, job_id)

    def _get_job(self, tenant_id: str, job_id: str) -> arc.ArchivedJob | None:
        key = self.job_key(tenant_id, job_id)
        try:
            reply = self._s3.get_object(Bucket=self.location.bucket, Key=key)
            body = reply["Body"].read()
        except botocore.exceptions.ClientError as exc:
            if _missing(exc):
                return None
            raise ArchiveUnavailable(f"reading s3://{self.location.bucket}/{key}: {exc}"
                                     ) from exc
        except botocore.exceptions.BotoCoreError as exc:
            raise ArchiveUnavailable(f"reading s3://{self.location.bucket}/{key}: {exc}"
                                     ) from exc
        archived = arc.ArchivedJob.FromString(body)
        # The key says whose it is; the object must agree (one written by hand, or moved).
        if archived.tenant_id != tenant_id or archived.job.id != job_id:
            return None
        return archived
