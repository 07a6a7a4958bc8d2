"""ChatML prompts with the checkpoint's special tokens.

A stream is one long, open vision span: `<|vision_start|>` then the frames' tokens. A question
is asked on a branch by closing the span with `<|vision_end|>` and appending a chat turn, the
layout the official streaming inference uses (the system turn follows the video).
"""

from __future__ import annotations

SYSTEM_PROMPT = "You are a helpful assistant."
SPECIAL_TOKENS = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>",
    "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
)


def question_text(question: str, system: str = SYSTEM_PROMPT) -> str:
    return (
        f"<|im_start|>system\n{system}<|im_end|>\n"
        f"<|im_start|>user\n{question}<|im_end|>\n"
        f"<|im_start|>assistant\n"
    )


def encode(tokenizer, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def check_special_tokens(tokenizer, cfg, source: str) -> None:
    """The tokenizer and config.json must agree on the ids the model was trained with."""
    expected = {
        "<|vision_start|>": cfg.vision_start_token_id,
        "<|vision_end|>": cfg.vision_end_token_id,
        "<|image_pad|>": cfg.image_token_id,
        "<|im_end|>": cfg.eos_token_id,
    }
    for token, want in expected.items():
        got = tokenizer.convert_tokens_to_ids(token)
        if got != want:
            raise ValueError(f"{source}: tokenizer maps {token} to {got}, config.json says {want}")
