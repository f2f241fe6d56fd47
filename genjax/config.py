"""Run configurations: frozen dataclasses, overridable with ``--set section.key=value``.

One convention for the whole project: every config is a frozen dataclass whose fields have
type annotations, defaults and a one-line meaning in the class docstring (``Attributes:``
section); ``__post_init__`` validates values. A run's resolved config is a ``RunConfig``::

    RunConfig(model="vae", dataset="digits", model_config=VAEConfig(...),
              train=TrainConfig(...), optimizer=OptimizerConfig(...), data=DataConfig(...),
              evaluation=...)

where ``model_config`` is the family's own hyper-parameter class (``genjax.models``) and
``evaluation`` the settings of whatever evaluates the run (the command's section ``eval``),
and is saved as ``config.json`` in the work directory::

    >>> from genjax.models.vae import VAEConfig
    >>> config = RunConfig(model="vae", dataset="digits", model_config=VAEConfig())
    >>> apply_overrides(config, ["model.latent_dim=2"]).model_config.latent_dim
    2
    >>> try:
    ...     apply_overrides(config, ["model.latent_dims=2"])
    ... except ConfigError as err:
    ...     print(str(err).split(";")[1])
     did you mean 'model.latent_dim'? (see --help for all keys)
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import json
import types
import typing
from typing import Any

import optax

from genjax.data import Preprocess
from genjax.train import TrainConfig


class ConfigError(ValueError):
    """A config key or value is not acceptable; the message names it."""


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
    """The optimizer of the model's parameters (optax).

    Attributes:
      name: adam | adamw | sgd | rmsprop.
      learning_rate: peak learning rate (> 0).
      b1: first-moment decay (adam/adamw) or momentum (sgd, 0 for none).
      b2: second-moment decay (adam/adamw).
      weight_decay: decoupled weight decay (adamw only).
      grad_clip: clip the global gradient norm to this value (0 = no clipping).
      warmup_steps: linear warm-up of the learning rate over these steps (0 = none).
      cosine_decay: decay the learning rate to 0 along a cosine over the run.
    """

    name: str = "adam"
    learning_rate: float = 1e-3
    b1: float = 0.9
    b2: float = 0.999
    weight_decay: float = 0.0
    grad_clip: float = 0.0
    warmup_steps: int = 0
    cosine_decay: bool = False

    def __post_init__(self):
        if self.name not in ("adam", "adamw", "sgd", "rmsprop"):
            raise ConfigError(
                f"optimizer.name must be adam, adamw, sgd or rmsprop, got {self.name!r}"
            )
        if not self.learning_rate > 0:
            raise ConfigError(f"optimizer.learning_rate must be > 0, got {self.learning_rate}")
        for field in ("b1", "b2"):
            if not 0 <= getattr(self, field) < 1:
                raise ConfigError(
                    f"optimizer.{field} must be in [0, 1), got {getattr(self, field)}"
                )
        for field in ("weight_decay", "grad_clip", "warmup_steps"):
            if getattr(self, field) < 0:
                raise ConfigError(f"optimizer.{field} must be >= 0, got {getattr(self, field)}")

    def build(self, total_steps: int, learning_rate: float | None = None):
        """The optax transformation (``learning_rate`` overrides the configured one)."""
        lr = self.learning_rate if learning_rate is None else learning_rate
        if self.cosine_decay:
            schedule = optax.warmup_cosine_decay_schedule(
                0.0, lr, max(self.warmup_steps, 0), max(total_steps, self.warmup_steps + 1)
            )
        elif self.warmup_steps:
            schedule = optax.linear_schedule(0.0, lr, self.warmup_steps)
        else:
            schedule = lr
        if self.name == "adam":
            opt = optax.adam(schedule, b1=self.b1, b2=self.b2)
        elif self.name == "adamw":
            opt = optax.adamw(schedule, b1=self.b1, b2=self.b2, weight_decay=self.weight_decay)
        elif self.name == "rmsprop":
            opt = optax.rmsprop(schedule)
        else:
            opt = optax.sgd(schedule, momentum=self.b1 or None)
        if self.grad_clip:
            opt = optax.chain(optax.clip_by_global_norm(self.grad_clip), opt)
        return opt


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """How the dataset is read and preprocessed.

    Attributes:
      scale: divide pixels by their maximum into [0, 1].
      binarize: none | static | dynamic (Bernoulli resampling at every step).
      threshold: static binarisation threshold on the [0, 1] scale.
      flatten: flatten images to vectors (MLP models).
      data_dir: where TFDS datasets are prepared ('' = $GENJAX_DATA_DIR or ~/tensorflow_datasets).
      streaming: read the training split from disk batch by batch instead of into memory:
        auto (when it exceeds streaming_above_mb) | true | false; TFDS-backed sets only.
      streaming_above_mb: with streaming=auto, stream a training split whose arrays exceed
        this many megabytes (2**20 bytes).
    """

    scale: bool = True
    binarize: str = "none"
    threshold: float = 0.5
    flatten: bool = False
    data_dir: str = ""
    streaming: str = "auto"
    streaming_above_mb: float = 2048.0

    def __post_init__(self):
        try:
            self.preprocess()
        except ValueError as err:
            raise ConfigError(str(err).replace("Preprocess.", "data.")) from None
        streaming = self.streaming
        if isinstance(streaming, bool):  # a hand-written config.json may hold true/false
            streaming = "true" if streaming else "false"
        if not isinstance(streaming, str) or streaming.lower() not in ("auto", "true", "false"):
            raise ConfigError(
                f"data.streaming must be 'auto', 'true' or 'false', got {self.streaming!r}"
            )
        object.__setattr__(self, "streaming", streaming.lower())
        limit = self.streaming_above_mb
        if isinstance(limit, bool) or not isinstance(limit, int | float) or not limit >= 0:
            raise ConfigError(f"data.streaming_above_mb must be a number >= 0, got {limit!r}")
        object.__setattr__(self, "streaming_above_mb", float(limit))

    def preprocess(self) -> Preprocess:
        return Preprocess(
            scale=self.scale, binarize=self.binarize, threshold=self.threshold, flatten=self.flatten
        )


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """A whole run: which model on which data, and every option of each part."""

    model: str
    dataset: str
    model_config: Any
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    optimizer: OptimizerConfig = dataclasses.field(default_factory=OptimizerConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    evaluation: Any = None

    @property
    def sections(self) -> tuple[str, ...]:
        """The sections of ``--set section.key=value``."""
        base = ("model", "train", "optimizer", "data")
        return base if self.evaluation is None else (*base, "eval")

    def section(self, name: str):
        return {
            "model": self.model_config,
            "eval": self.evaluation,
            "train": self.train,
            "optimizer": self.optimizer,
            "data": self.data,
        }[name]

    def to_dict(self) -> dict:
        return {
            "model": self.model,
            "dataset": self.dataset,
            "model_config": dataclasses.asdict(self.model_config),
            "eval": {} if self.evaluation is None else dataclasses.asdict(self.evaluation),
            "train": dataclasses.asdict(self.train),
            "optimizer": dataclasses.asdict(self.optimizer),
            "data": dataclasses.asdict(self.data),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


def _field_type(cls, field: dataclasses.Field):
    hints = typing.get_type_hints(cls)
    return hints[field.name]


def parse_value(text: str, typ: Any, key: str) -> Any:
    """Parse the command-line text of ``key`` as type ``typ`` (bool, int, float, str, tuples)."""
    origin = typing.get_origin(typ)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(typ) if a is not type(None)]
        if text.lower() in ("none", "null") and len(args) < len(typing.get_args(typ)):
            return None
        typ = args[0]
        origin = typing.get_origin(typ)
    if typ is bool:
        low = text.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{key} expects true or false, got {text!r}")
    if typ is int:
        try:
            return int(text)
        except ValueError:
            raise ConfigError(f"{key} expects an integer, got {text!r}") from None
    if typ is float:
        try:
            return float(text)
        except ValueError:
            raise ConfigError(f"{key} expects a number, got {text!r}") from None
    if typ is str:
        return text
    if origin is tuple:
        (elem, *_rest) = typing.get_args(typ)
        parts = [p for p in text.strip("()[] ").split(",") if p.strip()]
        return tuple(parse_value(p.strip(), elem, key) for p in parts)
    raise ConfigError(f"{key}: cannot parse values of type {typ}")


def all_keys(config: RunConfig) -> list[str]:
    return [
        f"{section}.{f.name}"
        for section in config.sections
        for f in dataclasses.fields(config.section(section))
    ]


def apply_overrides(config: RunConfig, overrides: list[str]) -> RunConfig:
    """Apply ``section.key=value`` overrides; unknown keys get a nearest-key suggestion."""
    changes: dict[str, dict[str, Any]] = {}
    keys = all_keys(config)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        key, text = item.split("=", 1)
        key = key.strip()
        if key not in keys:
            close = difflib.get_close_matches(key, keys, n=1, cutoff=0.5)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"unknown config key {key!r}{hint} (see --help for all keys)")
        section, name = key.split(".", 1)
        cls = type(config.section(section))
        field = next(f for f in dataclasses.fields(cls) if f.name == name)
        changes.setdefault(section, {})[name] = parse_value(text, _field_type(cls, field), key)
    return replace_sections(config, changes)


def model_error(err: Exception, cls: type) -> ConfigError:
    """A library config's ``ValueError`` (``"VAEConfig.latent_dim must be ..."``) in the
    command's words (``"model.latent_dim must be ..."``)."""
    return ConfigError(str(err).replace(f"{cls.__name__}.", "model."))


_ATTRIBUTES = {"model": "model_config", "eval": "evaluation"}


def replace_sections(config: RunConfig, changes: dict[str, dict[str, Any]]) -> RunConfig:
    """Rebuild ``config`` with per-section field changes (validated by each __post_init__)."""
    updated = {}
    for section, fields in changes.items():
        current = config.section(section)
        try:
            updated[_ATTRIBUTES.get(section, section)] = dataclasses.replace(current, **fields)
        except ConfigError:
            raise
        except (ValueError, TypeError) as err:
            raise model_error(err, type(current)) from None
    return dataclasses.replace(config, **updated)


def _build(cls, values, section):
    if not isinstance(values, dict):
        raise ConfigError(f"section {section!r} must be an object, got {values!r}")
    values = dict(values)
    # A config class may read the keys of configs saved by earlier versions.
    upgrade = getattr(cls, "upgrade_saved", None)
    if upgrade is not None:
        values = upgrade(values)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ConfigError(
            f"section {section!r} has key {unknown[0]!r}, which {cls.__name__} does not take "
            f"(it takes {', '.join(names)})"
        )
    hints = typing.get_type_hints(cls)
    for k, v in values.items():
        if isinstance(v, list) and typing.get_origin(hints.get(k)) is tuple:
            values[k] = tuple(v)
    try:
        return cls(**values)
    except ConfigError:
        raise
    except (TypeError, ValueError) as err:
        raise ConfigError(f"section {section!r}: {err}") from None


def from_dict(d: dict, model_config_cls: type, eval_cls: type | None = None) -> RunConfig:
    """Rebuild a ``RunConfig`` from ``config.json``.

    ``eval_cls`` reads the ``eval`` section (the command's evaluation settings); without it
    that section is not read (``evaluation`` is None). A config saved before the evaluation
    settings had their own section kept them among the model's: the keys the model's class
    does not take are read as evaluation settings then.
    """
    if not isinstance(d, dict):
        raise ConfigError(f"a run's configuration must be an object, got {d!r}")
    missing = [k for k in ("model", "dataset", *_SECTION_KEYS) if k not in d]
    if missing:
        raise ConfigError(f"no {missing[0]!r} entry")
    extra = sorted(set(d) - {"model", "dataset", "eval", *_SECTION_KEYS})
    if extra:
        raise ConfigError(f"unknown entry {extra[0]!r}")
    model_values = d["model_config"]
    eval_values = d.get("eval")
    if eval_values is None and isinstance(model_values, dict):
        own = {f.name for f in dataclasses.fields(model_config_cls)}
        if eval_cls is not None:
            # the evaluation's keys move out; the rest (renamed keys of an earlier version
            # included) stay for the model's class, its ``upgrade_saved`` and its checks
            known = {f.name for f in dataclasses.fields(eval_cls)} - own
            eval_values = {k: v for k, v in model_values.items() if k in known}
        else:
            if upgrade := getattr(model_config_cls, "upgrade_saved", None):
                model_values = upgrade(dict(model_values))
            eval_values = {k: v for k, v in model_values.items() if k not in own}
        model_values = {k: v for k, v in model_values.items() if k not in eval_values}
    return RunConfig(
        model=d["model"],
        dataset=d["dataset"],
        model_config=_build(model_config_cls, model_values, "model_config"),
        train=_build(TrainConfig, d["train"], "train"),
        optimizer=_build(OptimizerConfig, d["optimizer"], "optimizer"),
        data=_build(DataConfig, d["data"], "data"),
        evaluation=None if eval_cls is None else _build(eval_cls, eval_values or {}, "eval"),
    )


_SECTION_KEYS = ("model_config", "train", "optimizer", "data")


def describe_fields(cls) -> list[tuple[str, str, str]]:
    """``(name, default, meaning)`` of each field, meanings from the docstring's Attributes."""
    meanings: dict[str, str] = {}
    doc = inspect.getdoc(cls) or ""
    in_attrs = False
    current = None
    for line in doc.splitlines():
        if line.strip() == "Attributes:":
            in_attrs = True
            continue
        if not in_attrs:
            continue
        if line.startswith("  ") and not line.startswith("    ") and ":" in line:
            current, text = line.strip().split(":", 1)
            meanings[current] = text.strip()
        elif line.startswith("    ") and current:
            meanings[current] += " " + line.strip()
        elif line.strip() and not line.startswith(" "):
            break
    out = []
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else "(required)"
        out.append((f.name, repr(default), meanings.get(f.name, "")))
    return out
