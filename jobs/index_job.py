"""Ray job entrypoint: one index run, with the flags of `vidindex index`.

    ray job submit --address http://HEAD:8265 -- python jobs/index_job.py \
        s3://bucket/archive/ --db s3://bucket/index/db --parquet s3://bucket/index/parquet \
        --model hustvl/InfiniteVL-LongSFT

Inside a Ray job RAY_ADDRESS points at the job's cluster, so the run uses it. The exit code is
the CLI's: 0 finished (failed videos listed), 2 usage error, 3 nothing could be indexed.
"""

import sys

from vidindex.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["index", *sys.argv[1:]]))
