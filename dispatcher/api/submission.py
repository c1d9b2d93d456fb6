"""gRPC servicer of SubmissionService: unpack, call the service layer with the identity, pack."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from ailuro.v1 import job_pb2, submission_pb2, submission_pb2_grpc
from dispatcher.api.errors import identity_of, streaming, unary
from dispatcher.services.debug import DebugService
from dispatcher.services.events import EventTail
from dispatcher.services.hub import PilotHub
from dispatcher.services.logs import JobLogService
from dispatcher.services.submission import SubmissionService


class SubmissionServicer(submission_pb2_grpc.SubmissionServiceServicer):
    """Thin adapter over :class:`SubmissionService`."""

    def __init__(
        self, service: SubmissionService, hub: PilotHub, events: EventTail, logs: JobLogService, debug: DebugService
    ) -> None:
        self.service = service
        self.debug = debug
        self.hub = hub
        self.events = events
        self.logs = logs

    @unary
    async def SubmitJobs(
        self, request: submission_pb2.SubmitJobsRequest, context: grpc.aio.ServicerContext
    ) -> submission_pb2.SubmitJobsResponse:
        ids, replayed = await self.service.submit(request, identity_of(context))
        return submission_pb2.SubmitJobsResponse(panda_ids=ids, replayed=replayed)

    @unary
    async def KillJobs(
        self, request: submission_pb2.KillJobsRequest, context: grpc.aio.ServicerContext
    ) -> submission_pb2.KillJobsResponse:
        # commands for pilots streaming here are taken in the kill's own transaction
        results, commands, taken = await self.service.kill(request, identity_of(context), local=self.hub.streams_here)
        self.hub.deliver_commands(taken)
        await self.hub.push_commands(commands)
        return submission_pb2.KillJobsResponse(results=results)

    @unary
    async def RetryJobs(
        self, request: submission_pb2.RetryJobsRequest, context: grpc.aio.ServicerContext
    ) -> submission_pb2.RetryJobsResponse:
        ids = await self.service.retry(request, identity_of(context))
        return submission_pb2.RetryJobsResponse(new_panda_ids=ids)

    @unary
    async def GetJobs(
        self, request: submission_pb2.GetJobsRequest, context: grpc.aio.ServicerContext
    ) -> submission_pb2.GetJobsResponse:
        return submission_pb2.GetJobsResponse(jobs=await self.service.get_jobs(request, identity_of(context)))

    @unary
    async def ListJobs(
        self, request: submission_pb2.ListJobsRequest, context: grpc.aio.ServicerContext
    ) -> submission_pb2.ListJobsResponse:
        return await self.service.list_jobs(request, identity_of(context))

    @streaming
    async def WatchJobs(
        self, request: submission_pb2.WatchJobsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[job_pb2.JobEvent]:
        async for event in self.events.watch(request, identity_of(context)):
            yield event

    @unary
    async def GetJobEvents(
        self, request: submission_pb2.GetJobEventsRequest, context: grpc.aio.ServicerContext
    ) -> submission_pb2.GetJobEventsResponse:
        return submission_pb2.GetJobEventsResponse(events=await self.service.job_events(request, identity_of(context)))

    @unary
    async def ListQueues(
        self, request: submission_pb2.ListQueuesRequest, context: grpc.aio.ServicerContext
    ) -> submission_pb2.ListQueuesResponse:
        return submission_pb2.ListQueuesResponse(queues=await self.service.list_queues(identity_of(context)))

    @streaming
    async def GetJobLog(
        self, request: submission_pb2.GetJobLogRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[submission_pb2.JobLogChunk]:
        async for chunk in self.logs.stream(request, identity_of(context)):
            yield chunk

    @unary
    async def DebugJob(
        self, request: submission_pb2.DebugJobRequest, context: grpc.aio.ServicerContext
    ) -> submission_pb2.DebugJobResponse:
        return await self.debug.debug_job(request, identity_of(context))
