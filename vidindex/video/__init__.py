"""Video input: URI -> probe (VideoInfo, video_id) -> sampled, timestamped, resized RGB frames.

    info = probe("s3://bucket/talk.mp4")
    with sample_frames(info.uri, fps=1.0, size=448, start=resume_t) as frames:
        for t, frame in frames:      # t: float seconds, frame: uint8 [448, 448, 3] RGB
            ...

Every problem with a video raises a subclass of VideoError naming the URI. On a CUDA GPU,
vidindex.video.nvdec.sample_frames_nvdec decodes on NVDEC and yields the same frames as uint8
tensors there (kept out of this package's imports: it needs torch).
"""

from vidindex.video.errors import (BadDimensions, CorruptVideo, DecodeTimeout, EmptyVideoFile,
                                   NotAVideo, NoVideoStream, UnsupportedCodec, VideoError,
                                   VideoNotFound, VideoPermissionError, VideoReadError,
                                   VideoTruncated, ZeroDurationVideo)
from vidindex.video.prefetch import FrameStream
from vidindex.video.probe import VideoInfo, probe, video_id_for
from vidindex.video.sampling import FrameSelector
from vidindex.video.stream import sample_frames

__all__ = [
    "BadDimensions", "CorruptVideo", "DecodeTimeout",
    "EmptyVideoFile", "FrameSelector", "FrameStream", "NoVideoStream", "NotAVideo",
    "UnsupportedCodec", "VideoError", "VideoInfo", "VideoNotFound", "VideoPermissionError",
    "VideoReadError", "VideoTruncated", "ZeroDurationVideo", "probe", "sample_frames",
    "video_id_for",
]
