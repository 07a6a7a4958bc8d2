"""CLI subcommands over vidindex.query: `vidindex search`, `vidindex ask`, `vidindex ask-archive`.

For each: add_<name>_parser(subparsers) adds it (and sets `run` to run_<name>), and
run_<name>(args) -> exit code runs it. Output is a readable table by default and JSON with
--json. An error ends with one line on stderr, "vidindex <name>: error: ...", and the exit codes
of vidindex.cli.output: 2 for a usage error (bad time, filter, video id, database path), 1 for a runtime
failure (storage, model, a missing or damaged snapshot blob, an unreadable video; ask-archive:
any video whose snapshot could not be used, or no answer at all).
"""

from __future__ import annotations

from vidindex.cli.output import (EXIT_FAILURE, EXIT_OK, EXIT_USAGE, clean, error, file_name, format_table, one_line,
                                 plural, print_json, short)
from vidindex.timefmt import format_time

DEFAULT_LIMIT = 10


# ---- parsers


def add_search_parser(subparsers):
    from vidindex.query.common import DEFAULT_ASK_QUESTION
    from vidindex.query.search import MODES

    p = subparsers.add_parser("search", help="find moments by words, meaning, or both",
                              description="Search captions (and answers) of an index.")
    p.add_argument("query", help="what to look for")
    _db(p)
    p.add_argument("--mode", choices=MODES, default="hybrid", help="fts (BM25), vector, or hybrid (default: RRF of both)")
    p.add_argument("--video", help="only this video (video_id or URI)")
    p.add_argument("--config", help="only this index config_id")
    p.add_argument("--from", dest="t_from", metavar="T", help="from this time (seconds or HH:MM:SS)")
    p.add_argument("--to", dest="t_to", metavar="T", help="up to this time (seconds or HH:MM:SS)")
    p.add_argument("--where", metavar="SQL", help="SQL predicate on the captions table, e.g. \"t_end_ms > 60000\"")
    p.add_argument("--limit", type=int, default=DEFAULT_LIMIT, help=f"hits to show (default {DEFAULT_LIMIT})")
    p.add_argument("--answers", action="store_true", help="search the answers table too (matched by words)")
    p.add_argument("--ask-question", default=DEFAULT_ASK_QUESTION, help="question put in each hit's ask line")
    _json(p)
    p.set_defaults(run=run_search)
    return p


def add_ask_parser(subparsers):
    p = subparsers.add_parser("ask", help="ask a video a question as of a time",
                              description="Answer a question as of time T from the nearest snapshot.")
    p.add_argument("video", help="video_id (or the URI it was indexed from)")
    p.add_argument("question")
    p.add_argument("--at", required=True, metavar="T", help="seconds, HH:MM:SS, or 'end'")
    _db(p)
    p.add_argument("--config", help="index config_id, when the video is indexed under several")
    p.add_argument("--device", default="auto", help="auto (GPU if any), cpu, cuda, cuda:1, ...")
    p.add_argument("--max-new-tokens", type=int, help="answer length limit (default: the index config's)")
    _json(p)
    p.set_defaults(run=run_ask)
    return p


def add_ask_archive_parser(subparsers):
    from vidindex.query.archive import DEFAULT_BATCH_SIZE

    p = subparsers.add_parser("ask-archive", help="ask one question of many videos from their snapshots",
                              description="Ask a new question of every matching video from its saved state; "
                                          "answers are stored in the answers table.")
    p.add_argument("question")
    _db(p)
    p.add_argument("--where", metavar="SQL", help="SQL predicate on the videos table, e.g. \"uri LIKE '%%cam3%%'\"")
    p.add_argument("--at", default="end", metavar="end|T",
                   help="end (default), or T: each video's latest snapshot at or before T (no replay)")
    p.add_argument("--no-ray", action="store_true", help="answer in this process instead of on Ray actors")
    p.add_argument("--actors", type=int, help="Ray actors (default: one per GPU, or 2 on CPU)")
    p.add_argument("--ray-address", help="Ray cluster address (default: RAY_ADDRESS, else a local cluster)")
    p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help="snapshots asked per batch")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--force", action="store_true", help="ask again even where an answer is stored")
    _json(p)
    p.set_defaults(run=run_ask_archive)
    return p


def _db(p):
    p.add_argument("--db", required=True, metavar="URI", help="the index database (local folder or s3://...)")


def _json(p):
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


# ---- runners


def run_search(args) -> int:
    from vidindex.query.search import search

    def work():
        return search(args.db, args.query, mode=args.mode, video_id=args.video, config_id=args.config,
                      t_from=args.t_from, t_to=args.t_to, where=args.where, limit=args.limit,
                      include_answers=args.answers, ask_question=args.ask_question)

    return _run("search", args, work, _print_search)


def run_ask(args) -> int:
    from vidindex.query.ask import ask_at

    def work():
        return ask_at(args.db, args.video, args.at, args.question, config_id=args.config, device=args.device,
                      max_new_tokens=args.max_new_tokens)

    return _run("ask", args, work, _print_ask)


def run_ask_archive(args) -> int:
    from vidindex.query.archive import ask_archive

    def work():
        return ask_archive(args.db, args.question, where=args.where, at=args.at,
                           use_ray=False if args.no_ray else None, num_actors=args.actors,
                           batch_size=args.batch_size, device=args.device, force=args.force,
                           ray_address=args.ray_address)

    def exit_code(result) -> int:
        return EXIT_FAILURE if result.errors or not result.answers else EXIT_OK

    return _run("ask-archive", args, work, _print_archive, exit_code)


def _run(name, args, work, printer, exit_code=lambda result: EXIT_OK) -> int:
    from vidindex.config import ConfigError
    from vidindex.model import ModelError
    from vidindex.query.errors import QueryError, UnreadableIndexData
    from vidindex.run.ray import ClusterError
    from vidindex.store import StoreError
    from vidindex.video import VideoError

    try:
        result = work()
    except (QueryError, StoreError, ConfigError, ModelError, VideoError, ClusterError) as problem:
        usage = isinstance(problem, (QueryError, ConfigError)) and not isinstance(problem, UnreadableIndexData)
        return error(name, str(problem), EXIT_USAGE if usage else EXIT_FAILURE)
    if args.json:
        print_json(result.to_dict())
    else:
        printer(result)
    return exit_code(result)


# ---- human output


def _print_search(result) -> None:
    hits = result.hits
    print(f"{plural(len(hits), 'hit')} for {result.query!r} ({result.mode}) in {result.db}")
    if not hits:
        print("(nothing matched: try another mode, fewer filters, or other words)")
        return
    rows = [[str(i), f"{h.score:.4f}", file_name(h.uri or h.video_id), format_time(h.t_start), format_time(h.t_end),
             h.source, short(h.text, 60)] for i, h in enumerate(hits, 1)]
    lines = format_table(["#", "score", "video", "from", "to", "kind", "text"], rows).splitlines()
    print("\n".join(lines[:2]))  # the header and its rule
    for line, hit in zip(lines[2:], hits):
        print(line)
        print(f"    $ {hit.ask_command}")


def _print_ask(result) -> None:
    a = result.as_of
    t = a.timings
    print(f"Q: {clean(result.question)}")
    print(f"A: {clean(result.answer) or '(empty answer)'}")
    print()
    rows = [
        ["video", f"{a.video_id}  {a.uri}"],
        ["as of", format_time(a.as_of) + ("" if a.at is None or a.at == a.as_of else f"  (asked at {format_time(a.at)})")],
        ["snapshot", "none before this time: watched from the start" if a.snapshot_t is None
         else f"{format_time(a.snapshot_t)}  {a.snapshot_uri}"],
        ["replayed", plural(a.frames_replayed, "frame")
         + ("" if a.last_frame_t is None else f", last frame at {format_time(a.last_frame_t)}")],
        ["timings", "  ".join(f"{k.removesuffix('_s').replace('_', ' ')} {v:.3f} s" for k, v in t.items())],
        ["device", result.device],
    ]
    if a.note:
        rows.append(["note", a.note])
    print(format_table(None, rows))


def _print_archive(result) -> None:
    new = sum(not a.cached for a in result.answers)
    print(f"Q: {clean(result.question)}  (question_id {result.question_id}, "
          f"as of {'the end' if result.at is None else format_time(result.at)})")
    if result.answers:
        rows = [[file_name(a.uri), a.video_id, format_time(a.t), "earlier" if a.cached else "now", short(a.answer, 70)]
                for a in result.answers]
        print(format_table(["video", "video_id", "as of", "asked", "answer"], rows))
    print(f"{plural(len(result.answers), 'answer')}: {new} new, "
          f"{len(result.answers) - new} stored earlier; {plural(result.written, 'row')} "
          f"written; ran on {result.ran_on} in {result.timings.get('total_s', 0.0):.2f} s")
    for title, items in (("skipped", result.skipped), ("errors", result.errors)):
        if items:
            print(f"{title}:")
            for item in items:
                print(f"  {file_name(item.uri)} ({item.video_id}): {one_line(item.reason)}")

