"""`vidindex serve`: its parser and runner (the service itself is vidindex.serve)."""

from __future__ import annotations

import logging
import signal
import socket
import sys
import time

from vidindex.cli.output import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, error, format_table, one_line, print_json

DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 8000


def add_serve_parser(commands):
    from vidindex.serve.auth import TOKEN_ENV

    p = commands.add_parser(
        "serve", help="serve the index: JSON API, web page, warm model (Ray Serve)",
        description="Run the index as a Ray Serve application: a JSON API (OpenAPI at /docs) and a web page for "
                    "search, ask as of a time and ask-the-archive jobs, on model replicas that load and warm "
                    "the model once. Runs until Ctrl-C.")
    p.add_argument("--db", required=True, metavar="URI", help="the index database (local folder or s3://...)")
    p.add_argument("--model", metavar="PATH_OR_ID",
                   help="load the model from here instead of where the index's config says (the same weights, "
                        "e.g. a local copy of the hub checkpoint)")
    p.add_argument("--host", default=DEFAULT_HOST,
                   help=f"address to listen on (default {DEFAULT_HOST}; any other needs a token)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"HTTP port (default {DEFAULT_PORT})")
    p.add_argument("--ray-address", help="Ray cluster to run on (default: RAY_ADDRESS, else a local cluster)")
    p.add_argument("--token", help=f"token every request must carry (default: {TOKEN_ENV}); required with a "
                                   "non-loopback --host")
    p.add_argument("--replicas", type=int, default=1, help="model replicas (default 1; one GPU each on a GPU cluster)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help="model replicas on GPUs (cuda), CPUs, or GPUs when the cluster has them (auto)")
    p.add_argument("--json", action="store_true", help="print the service's address and models as JSON once ready")
    p.set_defaults(run=run_serve)
    return p


def run_serve(args) -> int:
    from vidindex.query.common import open_store
    from vidindex.query.errors import QueryError
    from vidindex.serve.auth import BindError, check_bind, token_from

    try:
        token = token_from(args.token)
        check_bind(args.host, token)
        if not 0 < args.port < 65536:
            raise BindError(f"--port {args.port}: not a TCP port")
        if args.replicas < 1:
            raise BindError(f"--replicas {args.replicas}: need at least 1")
        store = open_store(args.db)
    except (BindError, QueryError) as problem:
        return error("serve", str(problem), EXIT_USAGE)
    return _serve(args, token, store)


def _serve(args, token, store) -> int:
    import ray
    from ray import serve

    from vidindex.run.ray import ClusterError, connect
    from vidindex.serve.app import APP_NAME, application

    logging.getLogger("ray.serve").setLevel(logging.WARNING)  # the driver's own lines say what matters
    started_ray = False
    try:
        local = not (args.ray_address or _ray_address_in_env() or ray.is_initialized())
        if local and not _port_free(args.host, args.port):
            return error("serve", f"cannot listen on {args.host}:{args.port}: the port is in use (choose another "
                                  "with --port)", EXIT_FAILURE)
        started_ray = connect(args.ray_address)
        # After Ray's start, which installs its own SIGTERM handler (it would end the process
        # before the clean-up), and for SIGINT too in case the shell started this with it ignored.
        signal.signal(signal.SIGTERM, _interrupt)
        signal.signal(signal.SIGINT, _interrupt)
        serve.start(http_options={"host": args.host, "port": args.port})
        t = time.perf_counter()
        _say(args, f"starting {APP_NAME} on Ray Serve: loading and warming the model ...")
        app = application(store.uri, token=token, model=args.model, device=args.device, replicas=args.replicas)
        serve.run(app, name=APP_NAME, route_prefix="/", blocking=False)
        info = serve.get_deployment_handle("Asker", app_name=APP_NAME).info.remote().result()
        _ready(args, store, info, token is not None, time.perf_counter() - t)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        _say(args, "stopping")
        return EXIT_OK
    except ClusterError as problem:
        return error("serve", str(problem), EXIT_FAILURE)
    except Exception as problem:  # noqa: BLE001 - Serve reports a replica that failed to start with its traceback
        return error("serve", f"the service did not start: {_why_not_started(problem)}", EXIT_FAILURE)
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second Ctrl-C or TERM does not cut the clean-up short
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            _stop(started_ray)
        finally:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.default_int_handler)


def _ready(args, store, info: dict, has_token: bool, seconds: float) -> None:
    url = f"http://{_url_host(args.host)}:{args.port}/"
    models = ", ".join(f"{m['model']} ({m['dtype']}, {m['device']}, {m['seconds']:.1f} s)" for m in info["models"])
    if args.json:
        print_json({"url": url, "docs": url + "docs", "db": store.uri, "token": has_token,
                    "replicas": args.replicas, "device": info["device"], "models": info["models"],
                    "started_s": round(seconds, 3)})
        sys.stdout.flush()
        return
    rows = [["page", url + ("   (open it once with ?token=YOUR_TOKEN)" if has_token else "")],
            ["API docs", url + "docs"],
            ["index", f"{store.uri}  ({store.count('videos')} videos, {store.count('captions')} captions)"],
            ["model", f"{args.replicas} replica(s) on {info['device']}: {models or 'none yet (no video indexed)'}"],
            ["ready in", f"{seconds:.1f} s"]]
    print(format_table(None, rows))
    print("Ctrl-C stops the service.", flush=True)


def _say(args, text: str) -> None:
    if not args.json:
        print(text, flush=True)


def _stop(started_ray: bool) -> None:
    import ray
    from ray import serve

    from vidindex.serve.app import APP_NAME

    if not ray.is_initialized():
        return
    try:
        if started_ray:
            serve.shutdown()
        else:
            serve.delete(APP_NAME)  # the cluster and its Serve stay up for others
    finally:
        if started_ray:
            ray.shutdown()


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _ray_address_in_env() -> bool:
    import os

    return bool(os.environ.get("RAY_ADDRESS"))


def _port_free(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", "::"):
        return socket.gethostname()
    return f"[{host}]" if ":" in host else host


def _why_not_started(problem: BaseException) -> str:
    """The error of the deployment that failed (its replica's constructor raised), else the
    error's own last line."""
    from ray import serve

    from vidindex.serve.app import APP_NAME

    try:
        app = serve.status().applications.get(APP_NAME)
        failed = [(name, d.message) for name, d in (app.deployments if app else {}).items()
                  if d.message and str(getattr(d.status, "value", d.status)) != "HEALTHY"]
    except Exception:  # noqa: BLE001 - the status is a better message, not a required one
        failed = []
    if failed:
        name, message = failed[0]
        return f"{name}: {_last_error_line(message)}"
    return _last_error_line(problem)


def _last_error_line(problem: BaseException | str) -> str:
    """The last "SomeError: message" line of an error whose text holds a remote traceback."""
    lines = [line.strip() for line in str(problem).splitlines() if line.strip()]
    for line in reversed(lines):
        if not line.startswith(("File ", "^", "~")) and ":" in line and line.split(":", 1)[0].replace(".", "").isidentifier():
            return one_line(line)
    return one_line(lines[-1] if lines else type(problem).__name__)
