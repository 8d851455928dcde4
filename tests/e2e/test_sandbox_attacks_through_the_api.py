"""The sandbox's attacks, tried through the real platform (API, broker, worker)."""

from __future__ import annotations

import grpc
import pytest

from sluice.client import SluiceClient
from sluice.v1 import execution_service_pb2 as api
from sluice.v1 import job_pb2 as pb
from tests.conftest import python_job

C_MAIN = b'#include <stdio.h>\nint main(void) { puts("hi"); return 0; }\n'


@pytest.mark.parametrize(
    ("files", "field", "first"),
    [
        # gcc would read "@opts" as a file of options (-wrapper, -fplugin, -o elsewhere).
        ([pb.File(name="main.c", content=C_MAIN), pb.File(name="@opts", content=b"-v\n")],
         "files[1].name", "'@'"),
        ([pb.File(name="-omain.c", content=C_MAIN)], "files[0].name", "'-'"),
        ([pb.File(name="main.c", content=C_MAIN), pb.File(name="--help", content=b"")],
         "files[1].name", "'-'"),
    ],
)
async def test_a_file_named_like_an_option_is_refused(
    client: SluiceClient, files: list[pb.File], field: str, first: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await client.submit(api.SubmitJobRequest(language="c", files=files))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value.details()
    details = caught.value.details()
    assert field in details and first in details and "may not start with" in details, details


async def test_a_program_printing_a_bwrap_error_is_its_own_failure_and_not_retried(
    client: SluiceClient,
) -> None:
    line = "bwrap: Can't mount proc on /newroot/proc: Operation not permitted\n"
    source = f"import sys\nsys.stderr.write({line!r})\nsys.exit(1)\n"
    job = await client.submit(python_job(source))
    done = await client.wait(job.id)
    assert done.result.verdict == pb.VERDICT_RUNTIME_ERROR, done.result
    assert done.result.exit_code == 1 and done.result.detail == ""
    assert done.state == pb.JOB_STATE_FAILED
    assert done.attempt == 1  # one run: no retry as if the platform had failed
    assert done.result.stderr.startswith(b"bwrap: ")
