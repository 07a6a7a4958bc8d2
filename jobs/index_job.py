"""Ray job entrypoint: one index run, with the flags of `vidindex index`.

    ray job submit --address http://HEAD:8265 -- python jobs/index_job.py \
        s3://bucket/archive/ --db s3://bucket/index/db --parquet s3://bucket/index/parquet \
        --model hustvl/InfiniteVL-LongSFT

Inside a Ray job RAY_ADDRESS points at the job's cluster, so the run uses it. The exit code is
the CLI's: 0 finished (failed videos listed), 2 usage error, 3 nothing could be indexed, 143
stopped by `ray job stop` (its SIGTERM: the run's actors end, committed work stays, the next run
resumes). `ray job stop` sends SIGKILL 3 s after the SIGTERM; a stop takes 2-5 s, so give it
time: --runtime-env-json '{"env_vars": {"RAY_JOB_STOP_WAIT_TIME_S": "30"}}'.
"""

import sys

from vidindex.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["index", *sys.argv[1:]]))
