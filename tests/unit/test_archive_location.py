"""Where the archive puts things: SLUICE_ARCHIVE_URL parsed, and the documented keys."""

from __future__ import annotations

import pytest

from control_plane.archive import ArchiveLocation, JobArchive


def test_the_url_names_bucket_and_prefix() -> None:
    assert ArchiveLocation.parse("s3://sluice-archive/prod/jobs/") == ArchiveLocation(
        "sluice-archive", "prod/jobs")
    assert ArchiveLocation.parse("s3://sluice-archive") == ArchiveLocation("sluice-archive", "")


@pytest.mark.parametrize("url", ["", "sluice-archive/prod", "https://sluice-archive/prod",
                                 "s3://", "s3://Upper_Case/prod", "s3:/sluice-archive"])
def test_a_url_that_is_not_s3_bucket_prefix_is_refused_by_name(url: str) -> None:
    with pytest.raises(ValueError, match="SLUICE_ARCHIVE_URL"):
        ArchiveLocation.parse(url)


def test_keys_are_tenant_then_job_and_audit_ranges_that_sort() -> None:
    archive = JobArchive(ArchiveLocation("b", "prod"), s3=None)
    assert archive.job_key("t_0123456789abcdef", "01a2438abebaf1677f9ebf9a9706") == (
        "prod/t_0123456789abcdef/01a2438abebaf1677f9ebf9a9706.binpb")
    assert archive.audit_key(9, 10) == (
        "prod/audit/00000000000000000009-00000000000000000010.binpb")
    assert archive.audit_key(9, 10) < archive.audit_key(11, 12)
    assert JobArchive(ArchiveLocation("b", ""), s3=None).job_key("t_1", "j") == "t_1/j.binpb"
