"""The status codes a dispatcher may answer to any request a client can build (README: Security model).

Written down once; the property tests, the fuzzer and the README refer to this set. A request
that is wrong gets a code that says so and names the field; a request the server cannot serve
*right now* gets a retryable code. INTERNAL and UNKNOWN are bugs, whatever the input.
"""

from __future__ import annotations

import grpc

ANSWERS: frozenset[grpc.StatusCode] = frozenset(
    {
        grpc.StatusCode.OK,
        grpc.StatusCode.INVALID_ARGUMENT,  # malformed request; the field is named
        grpc.StatusCode.NOT_FOUND,  # an id that does not exist
        grpc.StatusCode.ALREADY_EXISTS,  # a request_id reused for different jobs
        grpc.StatusCode.FAILED_PRECONDITION,  # well-formed but not allowed in the current state
        grpc.StatusCode.OUT_OF_RANGE,  # a position past the end (a page, an event id)
        grpc.StatusCode.RESOURCE_EXHAUSTED,  # a limit: message size, streams, pending messages
        grpc.StatusCode.PERMISSION_DENIED,  # the identity may not do this
        grpc.StatusCode.UNAUTHENTICATED,  # no usable identity
    }
)
"""What any call may end with while the database is up."""

STREAM_ANSWERS: frozenset[grpc.StatusCode] = ANSWERS | {grpc.StatusCode.DEADLINE_EXCEEDED}
"""Server streams that never end by themselves (WatchJobs) also end at the caller's deadline."""

OUTAGE_ANSWERS: frozenset[grpc.StatusCode] = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})
"""What clients see (besides the above) while the database is down: both are safe to retry."""

NEVER: frozenset[grpc.StatusCode] = frozenset({grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN})
"""Bugs, whatever the input."""
