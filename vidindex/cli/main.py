"""The `vidindex` command: the parser of every subcommand and the dispatch to its runner.

Exit codes (vidindex.cli.output): 0 the command finished (an index run may list failed videos);
1 a runtime failure (cluster or storage); 2 a usage error (bad flag, config value or source);
3 an index run could not index any of the videos it was given (and none was indexed before),
or its sources named no video at all; 130 / 143 stopped by SIGINT (Ctrl-C) / SIGTERM (an index
run keeps what it committed, and a re-run resumes the rest).
"""

from __future__ import annotations

import argparse
import sys

from vidindex.cli.demo import add_demo_parser
from vidindex.cli.index import add_index_parser, add_status_parser
from vidindex.cli.maintain import add_maintain_parser
from vidindex.cli.output import EXIT_INTERRUPTED, EXIT_USAGE
from vidindex.cli.query import add_ask_archive_parser, add_ask_parser, add_search_parser
from vidindex.cli.serve import add_serve_parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return args.run(args)
    except KeyboardInterrupt:
        print("interrupted: committed work is kept; run the same command again to resume", file=sys.stderr)
        return EXIT_INTERRUPTED


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vidindex", description="Index archives of long videos with InfiniteVL: captions, answers and "
                                     "resumable model-state snapshots in LanceDB and Parquet.")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    # Each adds its subcommand and sets run=<its runner>.
    for add in (add_index_parser, add_status_parser, add_demo_parser, add_search_parser, add_ask_parser,
                add_ask_archive_parser, add_serve_parser, add_maintain_parser):
        add(commands)
    return parser
