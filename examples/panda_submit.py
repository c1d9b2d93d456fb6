#!/usr/bin/env python3
"""A PanDA-style job-definition script, as COMPASS production test scripts are written.

The only lines changed from the PanDA original are the imports (marked below) and the server
address: PanDA reads it from ``PANDA_URL``/``PANDA_URL_SSL``; here ``AILURO_SERVER`` or
``Client.baseURL`` does the same. Usage::

    AILURO_SERVER=127.0.0.1:50051 python examples/panda_submit.py LOCAL [N_JOBS]
"""

import sys
import time
import uuid

# was: from pandaserver.taskbuffer.JobSpec import JobSpec
#      from pandaserver.taskbuffer.FileSpec import FileSpec
#      import pandaserver.userinterface.Client as Client
from ailuro.compat.panda import Client, FileSpec, JobSpec

site = sys.argv[1] if len(sys.argv) > 1 else "LOCAL"
n_jobs = int(sys.argv[2]) if len(sys.argv) > 2 else 1

datasetName = f"panda.destDB.{uuid.uuid4()}"
destName = "local"

jobList = []
for i in range(n_jobs):
    job = JobSpec()
    job.jobDefinitionID = int(time.time()) % 10000
    job.jobName = f"{uuid.uuid4()}_{i}"
    job.transformation = "echo"
    job.destinationDBlock = datasetName
    job.destinationSE = destName
    job.currentPriority = 2000
    job.prodSourceLabel = "test"
    job.computingSite = site
    job.attemptNr = 1
    job.maxAttempt = 3
    job.sourceSite = site
    job.VO = "compass"
    job.coreCount = 1
    job.jobParameters = f"phast -u 1 -N 1000 mDST.{i:05d}.root"

    fileOLog = FileSpec()
    fileOLog.lfn = f"{job.jobName}.job.log.tgz"
    fileOLog.destinationDBlock = job.destinationDBlock
    fileOLog.destinationSE = job.destinationSE
    fileOLog.dataset = job.destinationDBlock
    fileOLog.type = "log"
    job.addFile(fileOLog)

    fileOut = FileSpec()
    fileOut.lfn = f"histos.{job.jobName}.root"
    fileOut.destinationDBlock = job.destinationDBlock
    fileOut.destinationSE = job.destinationSE
    fileOut.dataset = job.destinationDBlock
    fileOut.type = "output"
    job.addFile(fileOut)

    jobList.append(job)

s, o = Client.submitJobs(jobList)
print("status:", s)
if s != 0:
    print(o)
    sys.exit(1)
for x in o:
    print(f"PandaID={x[0]} jobName={x[1]}")

s, specs = Client.getJobStatus([x[0] for x in o])
for spec in specs:
    print(f"PandaID={spec.PandaID} jobStatus={spec.jobStatus} site={spec.computingSite}")
