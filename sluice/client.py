"""A small client of the public API, for the CLI, the benchmarks and the tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import grpc

from sluice.grpc_channels import open_channel
from sluice.settings import Settings, get_settings
from sluice.v1 import execution_service_pb2 as api
from sluice.v1 import execution_service_pb2_grpc as api_grpc
from sluice.v1 import job_pb2 as pb

# What `sluice up` leaves on the same machine (relative to where it ran): the local
# tenant's plain key for `sluice run`, the local operator's admin key for the operator
# commands.
LOCAL_KEY_FILE = Path(".sluice") / "local.key"
ADMIN_KEY_FILE = Path(".sluice") / "admin.key"
# How long a watcher waits before it reconnects after the API went away.
RECONNECT_DELAY_S = 0.5


def bearer(api_key: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {api_key}"),)


def read_key_file(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def local_api_key() -> str | None:
    return read_key_file(LOCAL_KEY_FILE)


async def resumable_watch(watch: Callable[..., grpc.aio.UnaryStreamCall], job_id: str,
                          metadata: tuple[tuple[str, str], ...], after_seq: int = 0, *,
                          reconnect: bool = True, reach_first: bool = False
                          ) -> AsyncIterator[pb.JobEvent]:
    """Every event of a WatchJob stub method (the tenant's or an operator's) after
    after_seq, once each, resuming by seq if the stream drops. With reach_first, an API
    that cannot be reached before the first event is an error, not a wait."""
    last = after_seq
    reached = False
    while True:
        call = watch(api.WatchJobRequest(job_id=job_id, after_seq=last), metadata=metadata)
        try:
            async for event in call:
                reached = True
                last = event.seq
                yield event
            return
        except grpc.aio.AioRpcError as exc:
            if (not reconnect or exc.code() != grpc.StatusCode.UNAVAILABLE
                    or (reach_first and not reached)):
                raise
            await asyncio.sleep(RECONNECT_DELAY_S)


class Attachment:
    """One AttachJob call: an interactive job's stdin goes up as it is sent, its events come
    down as WatchJob would stream them."""

    def __init__(self, call: grpc.aio.StreamStreamCall) -> None:
        self.call = call

    async def send(self, data: bytes) -> None:
        await self.call.write(api.AttachJobRequest(stdin=data))

    async def close_stdin(self) -> None:
        await self.call.write(api.AttachJobRequest(close_stdin=True))

    async def next_event(self) -> pb.JobEvent | None:
        """The next event; None once the job's terminal event was read."""
        event = await self.call.read()
        return None if event is grpc.aio.EOF else event

    async def events(self) -> AsyncIterator[pb.JobEvent]:
        while (event := await self.next_event()) is not None:
            yield event

    def detach(self) -> None:
        """Leaves the job running; attaching again (with after_seq) resumes."""
        self.call.cancel()


class SluiceClient:
    def __init__(self, target: str, api_key: str, *, settings: Settings | None = None) -> None:
        """settings: where TLS comes from (SLUICE_TLS_CA_FILE); default this process's."""
        self._channel = open_channel(target, settings or get_settings())
        self.stub = api_grpc.ExecutionServiceStub(self._channel)
        self.metadata = bearer(api_key)

    async def __aenter__(self) -> SluiceClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close()

    async def submit(self, request: api.SubmitJobRequest, deadline_s: float = 10) -> pb.Job:
        response = await self.stub.SubmitJob(request, metadata=self.metadata,
                                             timeout=deadline_s)
        return response.job

    async def get(self, job_id: str) -> pb.Job:
        return await self.stub.GetJob(api.GetJobRequest(job_id=job_id), metadata=self.metadata,
                                      timeout=10)

    async def cancel(self, job_id: str) -> pb.Job:
        return await self.stub.CancelJob(api.CancelJobRequest(job_id=job_id),
                                         metadata=self.metadata, timeout=10)

    async def languages(self) -> list[pb.Language]:
        response = await self.stub.ListLanguages(api.ListLanguagesRequest(),
                                                 metadata=self.metadata, timeout=10)
        return list(response.languages)

    async def watch(self, job_id: str, after_seq: int = 0, *,
                    reconnect: bool = True) -> AsyncIterator[pb.JobEvent]:
        """Every event after after_seq, once each, resuming by seq if the stream drops."""
        async for event in resumable_watch(self.stub.WatchJob, job_id, self.metadata,
                                           after_seq, reconnect=reconnect):
            yield event

    async def attach(self, job_id: str, after_seq: int = 0) -> Attachment:
        call = self.stub.AttachJob(metadata=self.metadata)
        await call.write(api.AttachJobRequest(job_id=job_id, after_seq=after_seq))
        return Attachment(call)

    async def result(self, job_id: str, within_s: float = 60) -> pb.Result:
        """The job's result, taken from its watch stream (no GetJob afterwards). A job that
        ends without running (cancelled while queued, dead-lettered) has an empty Result."""
        result = pb.Result()
        async with asyncio.timeout(within_s):
            async for event in self.watch(job_id):
                if event.HasField("result"):
                    result = event.result
        return result

    async def wait(self, job_id: str, within_s: float = 60) -> pb.Job:
        async with asyncio.timeout(within_s):
            async for _ in self.watch(job_id):
                pass
        return await self.get(job_id)
