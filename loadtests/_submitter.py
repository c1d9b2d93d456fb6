"""The lifecycle benchmark's submitter process (:mod:`loadtests.bench`): SubmitJobs batches,
paced (``--rate``), bounded ahead of completions (``--submit-ahead``) or as fast as accepted.

Moved out of :mod:`loadtests.bench` so that module stays near 600 lines.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import deque
from typing import TYPE_CHECKING, Any

import grpc

from ailuro.credentials import aio_interceptors, resolve_token
from ailuro.v1 import job_pb2, submission_pb2, submission_pb2_grpc
from loadtests import _box

if TYPE_CHECKING:
    from loadtests.bench import LifecycleConfig

QUEUE = "LOCAL"
"""The queue the benchmark's jobs go to and its pilots serve."""


def named_jobs(template: job_pb2.Job, n: int, prefix: str) -> list[job_pb2.Job]:
    """``n`` copies of ``template`` named ``bench.<prefix>.<i>``."""
    jobs = []
    for i in range(n):
        job = job_pb2.Job()
        job.CopyFrom(template)
        job.job_name = f"bench.{prefix}.{i}"
        jobs.append(job)
    return jobs


async def submit(addresses: list[str], cfg: LifecycleConfig, done: Any) -> dict[str, Any]:
    """Submit ``cfg.jobs`` jobs in batches from ``cfg.submitters`` workers; ``done`` is the pilots'
    shared count of finished jobs (the bound of ``cfg.submit_ahead``). The ids, times and loop lag."""
    template = job_pb2.Job(transformation="/bin/true", job_parameters="--events 1000", computing_site=QUEUE)
    sizes = deque(min(cfg.batch, cfg.jobs - i) for i in range(0, cfg.jobs, cfg.batch))
    channels = [grpc.aio.insecure_channel(a, interceptors=aio_interceptors(resolve_token())) for a in addresses]
    stubs = [submission_pb2_grpc.SubmissionServiceStub(c) for c in channels]
    ids: list[int] = []
    probe = _box.LagProbe()
    probe.start()
    t0 = time.time()
    queued = 0  # jobs handed to a worker so far (for pacing)

    async def worker(w: int) -> None:
        nonlocal queued
        k = 0
        while sizes:
            n = sizes.popleft()
            if cfg.rate:  # in the database SUBMIT_LEAD_S before the pilots reach the batch's first job, no sooner
                # (this slept until two seconds before its *last* job was due: at 300 jobs/s a
                # 500-job batch was sent 0.3 s before its first job, and the queue ran dry whenever
                # a submission took longer; pilots' requests then waited parked for it). The pilots
                # start asking SUBMIT_LEAD_S after t0, so job k is due at t0 + SUBMIT_LEAD_S + k / rate.
                first, queued = queued, queued + n
                await asyncio.sleep(max(0.0, t0 + first / cfg.rate - time.time()))
            elif cfg.submit_ahead:  # a closed loop with submission alongside: a bounded backlog
                # (a batch larger than the bound goes once nothing is outstanding)
                while queued - done.value + n > max(cfg.submit_ahead, n):
                    await asyncio.sleep(0.01)
                queued += n
            jobs = named_jobs(template, n, f"{w}.{k}")
            req = submission_pb2.SubmitJobsRequest(request_id=uuid.uuid4().hex, jobs=jobs)
            resp = await stubs[(w + k) % len(stubs)].SubmitJobs(req, timeout=120)
            ids.extend(resp.panda_ids)
            k += 1

    try:
        await asyncio.gather(*(worker(w) for w in range(cfg.submitters)))
    finally:
        for c in channels:
            await c.close()
    return {"ids": ids, "t0": t0, "t1": time.time(), "probe": probe.stop()}


def submit_process(addresses: list[str], cfg: LifecycleConfig, done: Any, out: Any) -> None:
    """The submitter process's body: :func:`submit`'s result (or its error) goes to ``out``."""
    try:
        out.put(asyncio.run(submit(addresses, cfg, done)))
    except BaseException as exc:  # reported to the parent, which stops the run
        out.put({"error": f"submitter: {exc!r}"})
