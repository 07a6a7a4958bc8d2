"""Usage errors exit 2 with a message naming the input; a run that indexes nothing, or whose
sources name no video, exits 3; an empty source among others is a warning."""

from __future__ import annotations

import json

import pytest

from tests.run.conftest import index_args
from vidindex.cli.index import config_from_args
from vidindex.cli.main import build_parser, main
from vidindex.video.synthetic import write_video


@pytest.mark.parametrize("change, message", [
    (lambda a: a[:a.index("--db")] + a[a.index("--db") + 2:], "no database given"),
    (lambda a: a + ["--caption-every", "soon"], "caption_interval"),
    (lambda a: a + ["--frame-size", "50"], "frame_size must be a multiple of 28"),
    (lambda a: a + ["--streams-per-gpu", "0"], "streams_per_gpu"),
    (lambda a: a + ["--config", "/nonexistent/index.yaml"], "cannot read config file /nonexistent/index.yaml"),
    (lambda a: a + ["--question", "  "], "--question needs a non-empty text"),
    (lambda a: a + ["--model", "/nonexistent/tiny"], "model '/nonexistent/tiny' does not exist"),
])
def test_bad_flags_exit_2_naming_the_setting(tmp_path, tiny_model_dir, videos, capsys, change, message):
    args = change(index_args(tmp_path / "db", tiny_model_dir, videos["good1"]))
    assert main(args) == 2
    assert message in capsys.readouterr().err


def test_unreadable_sources_exit_2(tmp_path, tiny_model_dir, capsys):
    no_uri = tmp_path / "list.csv"
    no_uri.write_text("path,size\na.mp4,1\n")
    for source, message in [
        (str(no_uri), "has no 'uri' column (columns: path, size)"),
        (str(tmp_path / "missing.txt"), "manifest '" + str(tmp_path / "missing.txt") + "' does not exist"),
    ]:
        assert main(index_args(tmp_path / "db", tiny_model_dir, source)) == 2
        err = capsys.readouterr().err
        assert message in err and source in err


def test_sources_that_all_name_no_video_exit_3_naming_each(tmp_path, tiny_model_dir, capsys):
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "sub" / "notes.txt").write_text("not a video")
    empty_list = tmp_path / "list.txt"
    empty_list.write_text("# nothing yet\n")
    sources = [str(empty), str(tmp_path / "*.mkv"), str(empty_list)]
    assert main(index_args(tmp_path / "db", tiny_model_dir, *sources, extra=["--json"])) == 3
    out, err = capsys.readouterr()
    assert not out and err.startswith("vidindex index: error: no videos in any source: ")
    assert all(repr(source) in err for source in sources)


def test_an_empty_source_among_others_is_a_warning(ray_cluster, tmp_path, tiny_model_dir, capsys):
    """A real folder with a real video, an empty folder and a glob that matches nothing: the video is
    indexed, the run exits 0, and both empty sources are listed in the JSON and the text report."""
    videos, empty = tmp_path / "videos", tmp_path / "empty"
    videos.mkdir(), empty.mkdir()
    write_video(videos / "short.mp4", 10, fps=4, width=96, height=72, seed=4)
    sources = [str(empty), str(videos), str(tmp_path / "*.mkv")]
    args = index_args(tmp_path / "db", tiny_model_dir, *sources)
    assert main(args + ["--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["counts"] == {"done": 1, "failed": 0, "already_done": 0}
    assert report["empty_sources"] == [str(empty), str(tmp_path / "*.mkv")]
    assert main(args) == 0  # again, as text: the video is already indexed, the warnings stay
    text = capsys.readouterr().out
    assert "0 done, 0 failed, 1 already indexed" in text
    assert f"warning: no videos in {str(empty)!r}: skipped" in text
    assert f"warning: no videos in {str(tmp_path / '*.mkv')!r}: skipped" in text


def test_unknown_flag_is_an_argparse_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["index", "a.mp4", "--db", "x", "--speed", "11"])
    assert exit_info.value.code == 2
    assert "unrecognized arguments: --speed" in capsys.readouterr().err


def test_decode_flag_reaches_the_config_and_names_the_choices(tmp_path, capsys):
    args = build_parser().parse_args(["index", "a.mp4", "--db", str(tmp_path / "db"), "--decode", "nvdec"])
    assert config_from_args(args).decode == "nvdec"
    with pytest.raises(SystemExit) as exit_info:
        main(["index", "a.mp4", "--db", "x", "--decode", "gpu"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err  # Python 3.12 stopped quoting the choices
    assert "argument --decode: invalid choice: 'gpu'" in err and "nvdec" in err


def test_nothing_indexed_exits_3_on_cpu_actors(ray_cluster, tmp_path, tiny_model_dir, videos, capsys):
    """Only bad videos: the run finishes, lists both, and says nothing could be indexed (CPU actors)."""
    args = index_args(tmp_path / "db", tiny_model_dir, videos["broken"], videos["notvideo"], extra=["--gpus-per-actor", "0"])
    assert main(args) == 3
    captured = capsys.readouterr()
    assert "0 done, 2 failed" in captured.out
    assert "failed: " + videos["broken"] in captured.out and "NotAVideo" in captured.out
    assert "nothing could be indexed" in captured.err


def test_status_of_a_missing_database_exits_2(tmp_path, capsys):
    assert main(["status", "--db", str(tmp_path / "nope")]) == 2
    assert "no vidindex database at " + str(tmp_path / "nope") in capsys.readouterr().err
