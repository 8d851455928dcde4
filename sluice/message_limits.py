"""How big a gRPC message may be: derived from the request caps, never a round guess.

A server refuses a message over its receive limit from the length prefix, before reading
or parsing it (RESOURCE_EXHAUSTED): a caller cannot make the control plane hold 64 MiB
just to be told its source is over the cap. So each limit is what the largest legitimate
message can be, and a little more. Clients and servers read the same settings; clients
receive up to the largest legitimate response.
"""

from __future__ import annotations

from sluice.settings import Settings

KIB = 1024

# The request caps that are not settings (one name each; submit validation enforces them).
MAX_KEY_CHARS = 128  # idempotency_key, ordering_key
MAX_LABEL_KEY_CHARS = 63
MAX_LABEL_VALUE_CHARS = 256
MAX_ARG_CHARS = 4096
MAX_FILE_NAME_CHARS = 255
MAX_TEST_CASE_NAME_CHARS = 128
# A test case's tags, lengths and usage in a request or a result, with room.
TEST_CASE_FRAMING_BYTES = 128
# A character is at most this many bytes of UTF-8.
UTF8_MAX = 4
# Field tags, lengths and the little messages around them (Limits, timestamps), with room.
FRAMING_SLACK_BYTES = 64 * KIB

# What one report of a worker carries at most: the worker cuts its output into chunks of
# this size, and the compile step's output (already capped by the compile limits of
# languages.toml, 64 KiB by default) to this.
MAX_OUTPUT_CHUNK_BYTES = 256 * KIB
MAX_COMPILE_OUTPUT_BYTES = 1024 * KIB
# The part of one test case's stdout and stderr kept in its result (one report carries it);
# the job's max_output_bytes bounds all the cases' together.
MAX_TEST_CASE_OUTPUT_BYTES = MAX_OUTPUT_CHUNK_BYTES
# A result's detail, a language's description, a dead letter's reason: short strings.
REPORT_TEXT_SLACK_BYTES = 64 * KIB


def request_max_bytes(settings: Settings) -> int:
    """The largest legitimate SubmitJobRequest, which is the largest request of the API:
    every file and stdin at their caps, every argument, label and name at its longest. Test
    cases' stdin and expected output count against the stdin cap, and their arguments
    against the argument cap."""
    strings = (
        settings.max_args * MAX_ARG_CHARS
        + settings.max_labels * (MAX_LABEL_KEY_CHARS + MAX_LABEL_VALUE_CHARS)
        + settings.max_files * MAX_FILE_NAME_CHARS
        + settings.max_test_cases * MAX_TEST_CASE_NAME_CHARS
        + 2 * MAX_KEY_CHARS
    )
    return (settings.max_source_bytes + settings.max_stdin_bytes + UTF8_MAX * strings
            + settings.max_test_cases * TEST_CASE_FRAMING_BYTES + FRAMING_SLACK_BYTES)


def report_max_bytes() -> int:
    """The largest legitimate message to the worker gateway: an output chunk or a result
    (whose stdout and stderr the gateway fills from the chunks, not the worker)."""
    return max(MAX_OUTPUT_CHUNK_BYTES, MAX_COMPILE_OUTPUT_BYTES) + REPORT_TEXT_SLACK_BYTES


def response_max_bytes(settings: Settings) -> int:
    """The largest legitimate response: a Job whose result holds its whole output (stdout
    and stderr together at most max_max_output_bytes) and its compile output, or a worker's
    assignment (a request's files and stdin). ListJobs cuts its pages to fit."""
    return (settings.max_max_output_bytes + MAX_COMPILE_OUTPUT_BYTES
            + settings.max_test_cases * (UTF8_MAX * MAX_TEST_CASE_NAME_CHARS
                                         + TEST_CASE_FRAMING_BYTES)
            + request_max_bytes(settings))
