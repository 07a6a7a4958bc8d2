"""Discovery of sources: files, folders, globs, fsspec URIs and manifests (text, CSV, Parquet)."""

from __future__ import annotations

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from vidindex.run.discover import EmptySource, SourceError, discover, read_manifest


@pytest.fixture
def tree(tmp_path):
    """a.mp4, b.mkv, sub/c.webm, notes.md (not a video)."""
    (tmp_path / "sub").mkdir()
    for name in ("a.mp4", "b.mkv", "sub/c.webm", "notes.md"):
        (tmp_path / name).write_bytes(b"x")
    return tmp_path


def test_folder_lists_video_files_recursively(tree):
    assert discover([str(tree)]).uris == [str(tree / "a.mp4"), str(tree / "b.mkv"), str(tree / "sub/c.webm")]


def test_glob_and_paths_in_order_without_repeats(tree):
    found = discover([str(tree / "b.mkv"), str(tree / "*.mp4"), str(tree / "a.mp4")])
    assert found.uris == [str(tree / "b.mkv"), str(tree / "a.mp4")]


def test_recursive_glob(tree):
    assert discover([str(tree / "**" / "*.webm")]).uris == [str(tree / "sub/c.webm")]


def test_missing_file_is_kept_for_the_engine_to_report(tree):
    assert discover([str(tree / "gone.mp4")]).uris == [str(tree / "gone.mp4")]  # becomes a failed row


def test_text_manifest_skips_comments_and_resolves_relative_entries(tree):
    manifest = tree / "sub" / "list.txt"
    manifest.write_text("# archive\n../a.mp4\n\n  c.webm  \ns3://bucket/talk.mp4\n/abs/d.mp4\n")
    assert discover([str(manifest)]).uris == [str(tree / "a.mp4"), str(tree / "sub/c.webm"), "s3://bucket/talk.mp4",
                                         "/abs/d.mp4"]


def test_csv_and_parquet_manifests_use_the_uri_column(tree):
    (tree / "list.csv").write_text("uri,title\na.mp4,first\nhttps://host/v.mp4,second\n")
    pq.write_table(pa.table({"id": [1, 2], "uri": ["b.mkv", None]}), tree / "list.parquet")
    assert discover([str(tree / "list.csv")]).uris == [str(tree / "a.mp4"), "https://host/v.mp4"]
    assert discover([str(tree / "list.parquet")]).uris == [str(tree / "b.mkv")]


def test_fsspec_uris_glob_and_prefix():
    fs = fsspec.filesystem("memory")
    for name in ("arch/2024/x.mp4", "arch/2024/y.mov", "arch/2025/z.mp4", "arch/readme.txt"):
        fs.pipe(f"/{name}", b"x")
    assert discover(["memory://arch/2024/*.mp4"]).uris == ["memory://arch/2024/x.mp4"]
    assert discover(["memory://arch"]).uris == ["memory://arch/2024/x.mp4", "memory://arch/2024/y.mov",
                                           "memory://arch/2025/z.mp4"]
    fs.pipe("/lists/all.txt", b"../arch/2025/z.mp4\n")
    assert read_manifest("memory://lists/all.txt") == ["memory://arch/2025/z.mp4"]


@pytest.mark.parametrize("content", ["", "# only a comment\n"])
def test_empty_manifest_is_an_empty_source(tree, content):
    (tree / "empty.txt").write_text(content)
    found = discover([str(tree / "empty.txt"), str(tree / "a.mp4")])
    assert (found.uris, found.empty_sources) == ([str(tree / "a.mp4")], [str(tree / "empty.txt")])


def test_empty_sources_are_skipped_and_listed(tree):
    (tree / "none").mkdir()
    sources = [str(tree / "none"), str(tree), str(tree / "*.avi")]
    found = discover(sources)
    assert found.uris == [str(tree / "a.mp4"), str(tree / "b.mkv"), str(tree / "sub/c.webm")]
    assert found.empty_sources == [str(tree / "none"), str(tree / "*.avi")]


def test_only_empty_sources_is_an_error_naming_each(tree):
    (tree / "none").mkdir()
    (tree / "empty.txt").write_text("")
    with pytest.raises(EmptySource) as error:
        discover([str(tree / "none"), str(tree / "*.avi"), str(tree / "empty.txt")])
    message = str(error.value)
    assert message.startswith("no videos in any source: no video files (.mp4, ")
    assert f"under {str(tree / 'none')!r}; no files match {str(tree / '*.avi')!r}; " in message
    assert message.endswith(f"manifest {str(tree / 'empty.txt')!r} lists no videos")


def test_unreadable_parquet_manifest_names_the_file(tree):
    (tree / "bad.parquet").write_text("not parquet")
    with pytest.raises(SourceError, match="bad.parquet' is not a readable Parquet file"):
        discover([str(tree / "bad.parquet")])


def test_no_sources_is_an_error():
    with pytest.raises(SourceError, match="no sources given"):
        discover([])


def test_unreadable_source_names_it():
    with pytest.raises(SourceError, match="cannot read 'nosuchfs://bucket/\\*.mp4'"):
        discover(["nosuchfs://bucket/*.mp4"])


def test_plan_indexes_a_file_named_twice_once(tmp_path, videos, monkeypatch):
    from vidindex.run.discover import plan_videos
    from vidindex.store import Store

    monkeypatch.chdir(videos["folder"])
    plan = plan_videos([videos["good1"], "./good1.mp4", "good2.mp4"], Store(tmp_path / "db"), "cfg")
    assert [(v.uri, v.state, v.duration_s) for v in plan.todo] == [(videos["good1"], "new", 60.0),
                                                                    ("good2.mp4", "new", 45.0)]
