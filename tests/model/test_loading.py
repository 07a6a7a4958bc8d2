"""Checkpoint loading: both layouts, strictness, sharding, and the full 4B parameter list."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from vidindex.model import TINY_FRAME_SIZE, CheckpointError, ModelConfig, load_model, write_tiny_checkpoint
from vidindex.model.loading import build_empty, check_names_and_shapes

from .conftest import make_frames


def _logits(model):
    return model.new_stream().feed(make_frames(2)[None], [[0.0, 1.0]])


def test_both_layouts_load_to_the_same_model(tmp_path, tiny_model):
    nested = write_tiny_checkpoint(tmp_path / "nested", seed=0, layout="nested")
    keys = load_file(str(nested / "model.safetensors")).keys()
    assert any(k.startswith("model.language_model.layers.") for k in keys)
    assert any(k.startswith("model.visual.blocks.") for k in keys)
    other = load_model(nested, device="cpu", frame_size=TINY_FRAME_SIZE)
    assert torch.equal(_logits(other), _logits(tiny_model))


def test_a_random_model_is_finished_as_a_loaded_one(tiny_model):
    """random_model and load_model finish a model the same way: on the CPU, the same seed gives
    the tiny checkpoint's weights, and the same logits."""
    from vidindex.model.tiny import random_model

    model = random_model(tiny_model.config, "cpu", dtype="float32", seed=0, frame_size=TINY_FRAME_SIZE,
                         kernels="reference")
    assert (model.precision, model.kernels.name) == (tiny_model.precision, tiny_model.kernels.name)
    assert torch.equal(_logits(model), _logits(tiny_model))


def test_seed_determines_the_weights(tmp_path, tiny_checkpoint):
    again = write_tiny_checkpoint(tmp_path / "again", seed=0)
    other = write_tiny_checkpoint(tmp_path / "other", seed=1)
    a, b, c = (load_file(str(d / "model.safetensors")) for d in (tiny_checkpoint, again, other))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_sharded_checkpoint_with_index_and_lm_head(tmp_path, tiny_checkpoint, tiny_model):
    d = tmp_path / "sharded"
    shutil.copytree(tiny_checkpoint, d)
    tensors = load_file(str(d / "model.safetensors"))
    (d / "model.safetensors").unlink()
    names = sorted(tensors)
    half = len(names) // 2
    shards = {"model-00001-of-00002.safetensors": names[:half], "model-00002-of-00002.safetensors": names[half:]}
    for fname, part in shards.items():
        extra = {"lm_head.weight": tensors["model.embed_tokens.weight"]} if fname.startswith("model-00002") else {}
        save_file({**{n: tensors[n] for n in part}, **extra}, str(d / fname))
    weight_map = {n: f for f, part in shards.items() for n in part}
    weight_map["lm_head.weight"] = "model-00002-of-00002.safetensors"
    (d / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    sharded = load_model(d, device="cpu", frame_size=TINY_FRAME_SIZE)
    assert torch.equal(_logits(sharded), _logits(tiny_model))


def _rewrite(tmp_path, tiny_checkpoint, edit):
    d = tmp_path / "edited"
    shutil.copytree(tiny_checkpoint, d)
    tensors = load_file(str(d / "model.safetensors"))
    edit(tensors)
    save_file(tensors, str(d / "model.safetensors"))
    return d


@pytest.mark.parametrize("edit,expected", [
    (lambda t: t.pop("model.layers.1.self_attn.A_log"), "missing tensors: model.layers.1.self_attn.A_log"),
    (lambda t: t.__setitem__("model.layers.0.self_attn.extra.weight", torch.zeros(2)),
     "unexpected tensors: model.layers.0.self_attn.extra.weight"),
    (lambda t: t.__setitem__("visual.merger.mlp.2.bias", torch.zeros(3)), "shape mismatch: visual.merger.mlp.2.bias"),
])
def test_strict_loading_names_the_tensor(tmp_path, tiny_checkpoint, edit, expected):
    d = _rewrite(tmp_path, tiny_checkpoint, edit)
    with pytest.raises(CheckpointError, match=expected.replace(".", r"\.")):
        load_model(d, device="cpu", frame_size=TINY_FRAME_SIZE)


def test_missing_directory_and_bad_files(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint directory"):
        load_model(tmp_path / "nope" / "deeper", device="cpu")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "config.json").write_text(json.dumps(ModelConfig().to_dict()))
    with pytest.raises(CheckpointError, match=r"no \*\.safetensors"):
        load_model(empty, device="cpu")
    (empty / "model.safetensors").write_bytes(b"\x00" * 40)
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        load_model(empty, device="cpu")


def test_hub_id_failure_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CheckpointError, match="hustvl/InfiniteVL: could not fetch from the hub"):
        load_model("hustvl/InfiniteVL", device="cpu")


def official_4b_shapes():
    """Every tensor of the InfiniteVL-4B checkpoint (legacy layout), written out from the model
    description, independent of the model code."""
    s = {"model.embed_tokens.weight": (151936, 2048), "model.norm.weight": (2048,)}
    for i in range(36):
        p = f"model.layers.{i}."
        s[p + "input_layernorm.weight"] = (2048,)
        s[p + "post_attention_layernorm.weight"] = (2048,)
        s[p + "mlp.gate_proj.weight"] = (11008, 2048)
        s[p + "mlp.up_proj.weight"] = (11008, 2048)
        s[p + "mlp.down_proj.weight"] = (2048, 11008)
        a = p + "self_attn."
        if i % 4 == 0:
            s.update({a + "q_proj.weight": (2048, 2048), a + "q_proj.bias": (2048,),
                      a + "k_proj.weight": (256, 2048), a + "k_proj.bias": (256,),
                      a + "v_proj.weight": (256, 2048), a + "v_proj.bias": (256,),
                      a + "o_proj.weight": (2048, 2048)})
        else:
            s.update({a + "q_proj.weight": (2048, 2048), a + "k_proj.weight": (2048, 2048),
                      a + "v_proj.weight": (4096, 2048), a + "a_proj.weight": (16, 2048),
                      a + "b_proj.weight": (16, 2048), a + "A_log": (16,), a + "dt_bias": (16,),
                      a + "q_conv1d.weight": (2048, 1, 4), a + "k_conv1d.weight": (2048, 1, 4),
                      a + "v_conv1d.weight": (4096, 1, 4), a + "g_proj.weight": (4096, 2048),
                      a + "o_norm.weight": (256,), a + "o_proj.weight": (2048, 4096)})
    s["visual.patch_embed.proj.weight"] = (1280, 3, 2, 14, 14)
    for j in range(32):
        b = f"visual.blocks.{j}."
        s.update({b + "norm1.weight": (1280,), b + "norm2.weight": (1280,),
                  b + "attn.qkv.weight": (3840, 1280), b + "attn.qkv.bias": (3840,),
                  b + "attn.proj.weight": (1280, 1280), b + "attn.proj.bias": (1280,),
                  b + "mlp.gate_proj.weight": (3420, 1280), b + "mlp.gate_proj.bias": (3420,),
                  b + "mlp.up_proj.weight": (3420, 1280), b + "mlp.up_proj.bias": (3420,),
                  b + "mlp.down_proj.weight": (1280, 3420), b + "mlp.down_proj.bias": (1280,)})
    s.update({"visual.merger.ln_q.weight": (1280,), "visual.merger.mlp.0.weight": (5120, 5120),
              "visual.merger.mlp.0.bias": (5120,), "visual.merger.mlp.2.weight": (2048, 5120),
              "visual.merger.mlp.2.bias": (2048,)})
    return s


OFFICIAL_4B_CONFIG = {  # the fields of the official config.json the model reads
    "vocab_size": 151936, "hidden_size": 2048, "intermediate_size": 11008, "num_hidden_layers": 36,
    "num_attention_heads": 16, "num_key_value_heads": 2, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
    "rope_scaling": {"type": "default", "rope_type": "default", "mrope_section": [16, 24, 24]},
    "sliding_window": 8192, "use_sliding_window": True, "tie_word_embeddings": True,
    "bos_token_id": 151643, "eos_token_id": 151645, "image_token_id": 151655, "video_token_id": 151656,
    "vision_start_token_id": 151652, "vision_end_token_id": 151653,
    "vision_config": {"depth": 32, "hidden_size": 1280, "num_heads": 16, "intermediate_size": 3420,
                      "hidden_act": "silu", "in_chans": 3, "patch_size": 14, "temporal_patch_size": 2,
                      "spatial_merge_size": 2, "window_size": 112, "fullatt_block_indexes": [7, 15, 23, 31],
                      "out_hidden_size": 2048, "tokens_per_second": 2},
}


def test_full_4b_parameter_list_loads_strictly_on_meta():
    cfg = ModelConfig.from_dict(OFFICIAL_4B_CONFIG)
    assert cfg.layer_types.count("sliding_attention") == 9
    assert (cfg.num_linear_heads, cfg.linear_head_dim, cfg.expand_v, cfg.conv_size, cfg.norm_eps) == (16, 128, 2, 4, 1e-5)
    model = build_empty(cfg)
    shapes = official_4b_shapes()
    check_names_and_shapes(model, shapes, "4B")
    check_names_and_shapes(model, {**shapes, "lm_head.weight": (151936, 2048)}, "4B")  # tied head ignored
    assert sum(p.numel() for p in model.parameters()) == 4_408_381_536
    # and the state has the size the model description gives (fp32 GDN state, bf16 conv + window)
    state_bytes = (27 * 16 * 128 * 256 * 4 + 27 * (2048 + 2048 + 4096) * 4 * 2 + 9 * 2 * 8191 * 2 * 128 * 2)
    assert cfg.kv_capacity == 8191
    from vidindex.model import StreamState
    state = StreamState.allocate(cfg, 1, "meta", torch.bfloat16)
    assert state.nbytes() - 6 * 8 == state_bytes
    shapes.pop("model.layers.5.self_attn.dt_bias")
    with pytest.raises(CheckpointError, match=r"missing tensors: model\.layers\.5\.self_attn\.dt_bias"):
        check_names_and_shapes(model, shapes, "4B")
