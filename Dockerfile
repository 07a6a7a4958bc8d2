# The vidindex image for the Ray head, GPU workers and job submitters of k8s/.
# Not built or tested by CI (no Docker engine there): see docs/kubernetes.md.
#   docker build -t vidindex:0.1.0 .     # the tag the manifests in k8s/ use (= project version)
# The base image's Ray must equal rayVersion in k8s/*.yaml (a test checks it).
FROM rayproject/ray:2.60.0-py311-gpu

# Relative entrypoints (`python jobs/index_job.py`) resolve here: the manifests start Ray in
# this folder (workingDir) and Ray job drivers inherit that cwd.
WORKDIR /home/ray/vidindex

# CUDA build of PyTorch first, so the project's `torch` requirement does not pull another one.
RUN pip install --no-cache-dir torch --index-url https://download.pytorch.org/whl/cu128

# Only what the package and jobs need (no tests, bench, docs).
COPY --chown=ray:users pyproject.toml README.md ./
COPY --chown=ray:users vidindex/ vidindex/
COPY --chown=ray:users jobs/ jobs/

RUN pip install --no-cache-dir -e ".[gpu,s3,gcs]"
