"""Where frames are decoded: decode: nvdec where it cannot run (here: a model on the CPU) decodes
on the CPU, says why once, and writes exactly the rows decode: cpu writes; the model takes the
NVDEC reader's tensors as it takes the CPU reader's arrays (tests/gpu/test_nvdec_cuda.py runs
NVDEC itself)."""

import logging

import torch

from vidindex.index.engine import Engine
from vidindex.model import TINY_FRAME_SIZE
from vidindex.video import sample_frames

from .conftest import make_config
from .test_engine import COMPARED, table_rows


def test_nvdec_on_a_cpu_model_decodes_on_the_cpu_and_says_why_once(tiny_checkpoint, tiny_model, videos,
                                                                    tmp_path, caplog):
    uris = [videos["a"], videos["b"]]
    on_cpu = Engine(make_config(tiny_checkpoint, tmp_path / "cpu", decode="cpu"), model=tiny_model).index(uris)
    with caplog.at_level(logging.WARNING, logger="vidindex.index.engine"):
        asked = Engine(make_config(tiny_checkpoint, tmp_path / "nvdec", decode="nvdec"), model=tiny_model).index(uris)

    assert [r.status for r in asked] == ["done", "done"]
    assert [(r.frames, r.captions, r.snapshots) for r in asked] == [(r.frames, r.captions, r.snapshots)
                                                                    for r in on_cpu]
    for table in COMPARED:
        assert table_rows(tmp_path / "nvdec", table) == table_rows(tmp_path / "cpu", table), table
    why = [r.getMessage() for r in caplog.records if "decode: nvdec" in r.getMessage()]
    assert why == ["decode: nvdec is set, but the model runs on cpu, not on a CUDA GPU: decoding on the CPU"]


def test_streams_take_tensor_frames_as_they_take_arrays(tiny_model, videos):
    """NVDEC frames reach Stream.feed as the engine batches them: a list of uint8 tensors on the
    model's device per stream. They feed exactly as the CPU reader's arrays."""
    with sample_frames(videos["a"], fps=1, size=TINY_FRAME_SIZE, end=8) as frames:
        got = list(frames)
    times = [[t for t, _ in got]] * 2
    from_arrays = tiny_model.new_stream(batch=2).feed([[f for _, f in got]] * 2, times)
    tensors = [torch.from_numpy(f.copy()).to(tiny_model.device) for _, f in got]
    from_tensors = tiny_model.new_stream(batch=2).feed([tensors] * 2, times)
    assert torch.equal(from_tensors, from_arrays)
