"""PanDA-style numeric error codes used in ``JobError.code``.

Pilot codes follow PanDA's pilot error numbers where they exist, so operators who know PanDA read
them at a glance; dispatcher codes are Ailuro's own (PanDA's server uses separate small numbers
per component, which is what ``JobError.component`` expresses here).
"""

from __future__ import annotations

# --- pilot / payload / ddm (PanDA pilot error numbers) ---
STAGEIN_FAILED = 1099
"""Input file could not be staged in."""
STAGEOUT_FAILED = 1137
"""Output file could not be staged out."""
KILLED_BY_USER = 1144
"""The job was killed on request (user or operator)."""
PAYLOAD_FAILED = 1305
"""The payload exited with a non-zero code (the exit code is in metrics.exit_code)."""
MEMORY_EXCEEDED = 1212
"""The payload exceeded its memory limit (RSS)."""
PAYLOAD_OUT_OF_MEMORY = 1235
"""The payload was killed by the out-of-memory killer or failed to allocate."""
CHECKSUM_MISMATCH_STAGEIN = 1171
"""adler32 of a staged-in file differs from the catalog."""
CHECKSUM_MISMATCH_STAGEOUT = 1172
"""adler32 of a staged-out file differs at the destination."""
MAX_WALLTIME = 1213
"""The payload exceeded max_walltime_s."""
PILOT_SIGNALLED = 1201
"""The pilot was stopped by a signal (SIGTERM/SIGINT from the batch system) while the job ran."""
PILOT_SETUP_FAILED = 1008
"""The pilot could not set up the job (work directory, environment)."""

# --- dispatcher ---
LOST_HEARTBEAT = 100
"""No heartbeat within the lease: the pilot was lost."""
NOT_STARTED = 101
"""Sent to a pilot that never reported starting."""
NO_QUEUE = 102
"""Brokerage found no queue serving the job's VO and label."""

# --- ddm ---
FILE_LOST = 110
"""A file is missing on the storage that should hold it (a tape recall found nothing): declared
lost, not retried; its replica is marked bad and tasks apply their ``lost_inputs`` policy."""

RETRYABLE_CODES = frozenset(
    {
        LOST_HEARTBEAT,
        NOT_STARTED,
        STAGEIN_FAILED,
        STAGEOUT_FAILED,
        CHECKSUM_MISMATCH_STAGEIN,
        CHECKSUM_MISMATCH_STAGEOUT,
    }
)
"""Codes whose attempts are retried by default (up to max_attempt)."""
