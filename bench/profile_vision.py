"""Where the vision tower's time goes (4B vision config, bf16, 448x448, 32 frames per call).

    python bench/profile_vision.py
"""


import numpy as np
import torch
from gpu_timing import cuda_time
from torch.profiler import ProfilerActivity, profile

from vidindex.model import ModelConfig
from vidindex.model.tiny import random_model
from vidindex.model.vision import encode_uniform_windows, preprocess




def main():
    model = random_model(ModelConfig(), "cuda")
    vc, n = model.config.vision, 32
    frames = torch.as_tensor(np.random.default_rng(0).integers(0, 256, (n, 448, 448, 3), dtype=np.uint8))
    px = preprocess(frames, 448, vc, "cuda", torch.bfloat16)
    with torch.inference_mode():
        eager = lambda: encode_uniform_windows(model.visual, px, n, 448, vc)
        print(f"eager: {cuda_time(eager) * 1e3 / n:.2f} ms/frame", flush=True)
        print(f"preprocess: {cuda_time(lambda: preprocess(frames, 448, vc, 'cuda', torch.bfloat16)) * 1e3 / n:.2f} ms/frame")
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            eager()
            torch.cuda.synchronize()
        print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=18, max_name_column_width=70))
        compiled = torch.compile(encode_uniform_windows, dynamic=False)
        run = lambda: compiled(model.visual, px, n, 448, vc)
        print(f"compiled: {cuda_time(run) * 1e3 / n:.2f} ms/frame (1.34 TFLOP/frame)", flush=True)


if __name__ == "__main__":
    main()
