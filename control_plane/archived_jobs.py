"""Jobs read back from the archive once retention has taken them out of the store: the one
place where a read of the archive becomes a gRPC answer, for the API and the operators'
AdminService alike."""

from __future__ import annotations

import re

import grpc

from control_plane import metrics
from control_plane.archive import ArchiveUnavailable, JobArchive
from sluice.observability import get_logger
from sluice.v1 import archive_pb2 as arc

log = get_logger(__name__)

# What a job id looks like: anything else is no job, and costs the archive no request.
JOB_ID = re.compile(r"[0-9a-f]{28}")


class ArchivedJobs:
    def __init__(self, archive: JobArchive | None) -> None:
        self._archive = archive

    @property
    def enabled(self) -> bool:
        return self._archive is not None

    async def read(self, job_id: str, tenant_id: str,
                   context: grpc.aio.ServicerContext) -> arc.ArchivedJob | None:
        """The tenant's job that the store no longer has, from the archive; None without an
        archive or when it has no such job. Aborts UNAVAILABLE when the archive does not
        answer: the job may be there, so NOT_FOUND would be a lie."""
        if self._archive is None or not JOB_ID.fullmatch(job_id):
            return None
        try:
            return await self._archive.get_job(tenant_id, job_id)
        except ArchiveUnavailable as exc:
            metrics.ARCHIVE_FAILURES.labels("get").inc()
            log.warning("archive_read_failed", tenant=tenant_id, job_id=job_id, error=str(exc))
            await context.abort(
                grpc.StatusCode.UNAVAILABLE,
                f"job {job_id!r} is not in the store and the archive (S3) did not answer;"
                " retry shortly")
        return None
