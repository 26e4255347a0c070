"""The run's configuration: one YAML file parsed once into frozen, validated objects.

Nothing deeper in the code reads raw dicts. Every problem (malformed YAML, an unknown key, a
wrong type or value, an unknown stage) becomes one :class:`ConfigError` line that names the
file, the line and the key, and the fix where one is known (and carries them as its fields
``file``, ``line`` and ``key``).
"""

from __future__ import annotations

import contextlib
import difflib
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, TypeAlias, Union

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PositiveInt,
    ValidationError,
    WithJsonSchema,
    create_model,
    field_validator,
    model_validator,
)

from pipeline.errors import ConfigError, PipelineError
from pipeline.stages import REGISTRY, StageParams, known_stages


def _parse_bytes(v: Any) -> Any:
    """Accept 1_000_000, '500MB', '16 GiB'; leave other values for the type check."""
    if isinstance(v, str) and v.strip().lower() not in ("auto", ""):
        from dask.utils import parse_bytes

        try:
            return parse_bytes(v)
        except ValueError:
            raise ValueError(f"not a size: {v!r} (write e.g. '16GiB' or '500MB')") from None
    return v


# "format": "bytes" tells the generated reference that a size such as '16GiB' is accepted too
_SIZE = {"type": "integer", "format": "bytes"}
Bytes: TypeAlias = Annotated[int, BeforeValidator(_parse_bytes), Field(gt=0), WithJsonSchema(_SIZE)]
AutoBytes: TypeAlias = Annotated[
    Literal["auto"] | int,
    BeforeValidator(_parse_bytes),
    WithJsonSchema({"anyOf": [{"const": "auto"}, _SIZE]}),
]
Shape: TypeAlias = tuple[PositiveInt, ...]


class Model(BaseModel):
    """Frozen, strict about unknown keys."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)


class CodecConfig(Model):
    """How chunks are compressed."""

    name: Literal["zstd", "none"] = Field("zstd", description="chunk compressor: zstd or none")
    level: int = Field(
        1, ge=-7, le=22, description="zstd level (CPU encoder; the GPU encoder has its own)"
    )
    checksum: bool = Field(False, description="zstd frame checksum")

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, v: Any) -> Any:
        return {"name": v} if isinstance(v, str) else v


class GenerateConfig(Model):
    """How ``pipeline generate`` creates the input (deterministic from the seed)."""

    shape: Shape = Field(description="array shape, e.g. [4096, 4096, 64]")
    dtype: str = Field("float32", description="NumPy dtype name of the generated array")
    chunks: Shape | Literal["auto"] = Field(
        "auto", description="chunk shape (one zstd frame each); auto: about 128 KiB slabs"
    )
    shards: Shape | Literal["auto", "none"] = Field(
        "auto", description="shard shape (Zarr v3); auto: about 256 MiB slabs; none: unsharded"
    )
    codec: CodecConfig = Field(
        default_factory=lambda: CodecConfig(), description="compressor of the input"
    )
    distribution: Literal["normal", "uniform", "ramp"] = Field(
        "normal",
        description="normal/uniform: random; ramp: a repeating arithmetic sequence that "
        "compresses well (for datasets larger than the disk)",
    )
    seed: int = Field(0, ge=0, description="seed of the generator; same seed, same data")
    zarr_format: Literal[2, 3] = Field(3, description="Zarr format of the generated store")
    when_missing: bool = Field(
        False, description="`run` generates the input first when it does not exist"
    )


class InputConfig(Model):
    """Where the input array is."""

    store: str = Field(
        description="path or fsspec URL (file://, s3://, memory://) of the store; a relative "
        "path is from where the command runs"
    )
    array: str = Field("", description="path of the array inside the store; '' if the root")
    storage_options: dict[str, Any] = Field(
        default_factory=dict,
        description="fsspec options, e.g. endpoint_url, key, secret for s3:// (credentials "
        "are masked in summaries)",
    )
    generate: GenerateConfig | None = Field(
        None, description="how to create this input (`pipeline generate`)"
    )


class OutputConfig(Model):
    """Where and how the result is written (always Zarr v3)."""

    store: str = Field(description="path or fsspec URL of the output store")
    array: str = Field("", description="path of the array inside the store; '' if the root")
    storage_options: dict[str, Any] = Field(
        default_factory=dict, description="fsspec options, as input.storage_options"
    )
    codec: CodecConfig = Field(
        default_factory=lambda: CodecConfig(), description="compressor of the output"
    )
    chunks: Shape | Literal["auto"] = Field(
        "auto",
        description="chunk shape (one zstd frame each); auto: the input's chunks when they are "
        "small (<= 1 MiB), else about 128 KiB slabs",
    )
    shards: Shape | Literal["auto", "none"] = Field(
        "auto",
        description="shard shape (one file each, Zarr v3 sharding); auto: one shard per Dask "
        "chunk; none: one file per chunk",
    )
    overwrite: bool = Field(False, description="replace an existing output (also --overwrite)")


class ChunkingConfig(Model):
    """How the array is cut into Dask tasks."""

    block: Shape | Literal["auto"] = Field(
        "auto",
        description="Dask chunk shape, a whole multiple of the written shards (or chunks) on "
        "every axis; auto: the largest that fits target_bytes and the memory budget",
    )
    target_bytes: Bytes = Field(256 * 2**20, description="auto block size target (input bytes)")


class ClusterConfig(Model):
    """Which cluster runs the tasks."""

    scheduler: str = Field(
        "local", description="'local' starts a cluster; 'tcp://host:8786' joins an existing one"
    )
    gpus: tuple[int, ...] | None = Field(
        None, description="GPU ids for local GPU workers; omitted, every visible GPU"
    )
    workers: PositiveInt | None = Field(
        None, description="local CPU workers; omitted, cores / threads_per_worker"
    )
    threads_per_worker: PositiveInt | None = Field(
        None,
        description="tasks in flight per worker; omitted, 4 per GPU worker or 1 per CPU worker",
    )
    workers_per_gpu: PositiveInt = Field(
        3,
        description="local GPU clusters: worker processes per GPU, each with threads_per_worker "
        "threads (several processes wait less on each other for Python's GIL: on the H100 host "
        "3 x 4 threads ran 4.71 GB/s, 1 x 8 threads 4.26, in one run)",
    )
    device_memory_limit: AutoBytes | float = Field(
        "auto",
        description="device memory budget per GPU, split between a local cluster's "
        "workers_per_gpu workers: bytes (at most the GPU's memory), a fraction of the GPU's "
        "free memory, or auto (0.8)",
    )
    host_memory_limit: AutoBytes | float = Field(
        "auto",
        description="host memory budget per worker: bytes, a fraction, or auto. A local "
        "cluster's workers share the host's RAM: a fraction is of RAM / workers, auto 0.8 of "
        "it, and more than RAM / workers is refused; a joined cluster's workers have their "
        "own memory limits (`dask worker --memory-limit`): a fraction is of the weakest "
        "worker's, auto all of it, and more is refused",
    )
    protocol: Literal["tcp", "ucx", "inproc"] = Field(
        "tcp",
        description="how a local cluster's workers talk: tcp; ucx (NVLink, InfiniBand; needs "
        "UCX); inproc: threads in this process (what memory:// stores need)",
    )
    timeout: float = Field(
        10.0, gt=0, description="seconds to wait for a scheduler and its first worker"
    )
    dashboard: str = Field(":0", description="dashboard address of a local cluster; '' for none")

    @field_validator("device_memory_limit", "host_memory_limit")
    @classmethod
    def _fraction(cls, v: Any) -> Any:
        if isinstance(v, float) and not 0 < v <= 1:
            raise ValueError("a fraction must be in (0, 1]; write a size such as '40GiB' instead")
        return v


def _stage_models() -> Any:
    """One model per registered stage, ``op`` naming it; a discriminated union of them."""
    models = []
    for name, d in REGISTRY.items():
        m = create_model(
            f"Stage_{name}",
            __base__=d.params,
            op=(Literal[name], Field(description=d.doc)),  # type: ignore[valid-type,arg-type]
        )
        m.__module__ = __name__
        globals()[m.__name__] = m  # so configs pickle by reference, like any model
        models.append(m)
    return Annotated[Union[tuple(models)], Field(discriminator="op")]  # noqa: UP007


StageConfig = _stage_models()


class Config(Model):
    """A whole run."""

    input: InputConfig = Field(description="the input array")
    output: OutputConfig = Field(description="the output array")
    stages: tuple[StageConfig, ...] = Field(  # type: ignore[valid-type]
        min_length=1, description="the elementwise stages, applied in order"
    )
    backend: Literal["auto", "gpu", "cpu"] = Field(
        "auto", description="auto: GPU when one is visible, else CPU (and says so)"
    )
    integer_overflow: Literal["promote", "error"] = Field(
        "promote",
        description="integer chains that can overflow: promote widens, error refuses",
    )
    chunking: ChunkingConfig = Field(
        default_factory=lambda: ChunkingConfig(), description="task size"
    )
    cluster: ClusterConfig = Field(
        default_factory=lambda: ClusterConfig(), description="the cluster"
    )

    def public_dict(self) -> dict[str, Any]:
        """The config as plain JSON data with credentials in ``storage_options`` masked, for
        summaries and logs."""
        return _masked(self.model_dump(mode="json"))

    def stage_specs(self) -> tuple[tuple[str, StageParams], ...]:
        """(name, params) for each stage, for :func:`pipeline.stages.plan_chain`."""
        out = []
        for s in self.stages:
            op: str = s.op  # type: ignore[attr-defined]  # every stage model has the tag
            params_cls = REGISTRY[op].params
            fields = {k: getattr(s, k) for k in params_cls.model_fields}
            out.append((op, params_cls(**fields)))
        return tuple(out)


#: Parts of option names that hold credentials (s3fs key/secret/token, gcsfs token, adlfs
#: account_key/sas_token/client_secret, ...): their values are never written out.
_SECRET_PARTS = ("key", "secret", "token", "password", "credential", "sas")


def _masked(data: Any, in_options: bool = False) -> Any:
    if isinstance(data, dict):
        out = {}
        for k, v in data.items():
            secret = in_options and any(p in str(k).lower() for p in _SECRET_PARTS)
            if secret and isinstance(v, str) and v:
                out[k] = "***"
            else:
                out[k] = _masked(v, in_options or k == "storage_options")
        return out
    if isinstance(data, list):
        return [_masked(v, in_options) for v in data]
    return data


# --------------------------------------------------------------------------------------------
# Loading with file/line/key messages.


class _Located(yaml.SafeLoader):
    """SafeLoader that remembers the line of every mapping key and sequence item."""


def _positions(node: yaml.Node, path: tuple = (), out: dict | None = None) -> dict:
    out = {} if out is None else out
    out.setdefault(path, node.start_mark)
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            key = k.value
            out[path + (key,)] = k.start_mark
            _positions(v, path + (key,), out)
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            out[path + (i,)] = v.start_mark
            _positions(v, path + (i,), out)
    return out


def _model_at(loc: Sequence[Any]) -> type[BaseModel] | None:
    """The model class that owns the last key of ``loc`` (outside ``stages``)."""
    model: type[BaseModel] | None = Config
    for part in loc[:-1]:
        f = model.model_fields.get(part) if model else None
        if f is None:
            return None
        ann = f.annotation
        args = [a for a in getattr(ann, "__args__", (ann,)) if isinstance(a, type)]
        model = next((a for a in args if issubclass(a, BaseModel)), None)
    return model


def _data_loc(loc: Sequence[Any], data: Any) -> tuple:
    """The part of a pydantic error location that indexes the user's data.

    Pydantic adds union-branch and validator labels (``float``, ``function-before[...]``) and
    stage tags; keep only the keys and indices that exist in the data, plus a final missing or
    unknown key.
    """
    out: list[Any] = []
    node = data
    for i, part in enumerate(loc):
        if (isinstance(node, dict) and part in node) or (
            isinstance(node, list) and isinstance(part, int) and part < len(node)
        ):
            out.append(part)
            node = node[part]
        elif i == len(loc) - 1 and isinstance(node, dict) and isinstance(part, str):
            out.append(part)  # a missing key: not in the data, still the one to name
    return tuple(out)


#: Settings that earlier versions had and this one removed, because no measurement showed a
#: gain (README, "Benchmarks"): a config that still sets one is told so, instead of being
#: offered a close key name.
REMOVED = {
    "output.spare_files": "pre-allocated files made no run faster",
    "cluster.gpu_codec_slots": "limiting the threads in the GPU codec made no run faster",
    "cluster.host_encode_share": "encoding part of each block on the CPU made runs slower",
    "cluster.memory_pool": "GPU workers always use CuPy's memory pool",
}


def _message(err: Mapping[str, Any], data: Any) -> str:
    loc = _data_loc(err["loc"], data)
    kind = err["type"]
    key = ".".join(str(p) for p in loc) or "(top level)"
    if kind == "extra_forbidden" and key in REMOVED:
        return f"unknown key {key!r} (removed in this version: {REMOVED[key]}; delete it)"
    if kind == "extra_forbidden":
        owner = _stage_owner(loc, data) if loc[:1] == ("stages",) else _model_at(loc)
        names = [n for n in owner.model_fields] if owner else []
        if loc[:1] == ("stages",):
            names.append("op")
        close = difflib.get_close_matches(str(loc[-1]), names, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"valid keys: {', '.join(names)}"
        return f"unknown key {key!r} ({hint})"
    if kind == "union_tag_invalid":
        tag = err.get("ctx", {}).get("tag")
        return f"unknown stage {tag!r} at {key}; known stages: {known_stages()}"
    if kind == "union_tag_not_found":
        return f"{key}: each stage needs 'op:' naming it; known stages: {known_stages()}"
    if kind in ("model_attributes_type", "dict_type") and len(loc) == 2 and loc[0] == "stages":
        return f"{key}: a stage is a mapping such as '- op: square'; known stages: {known_stages()}"
    if kind == "missing":
        return f"missing key {key!r}"
    got = err.get("input")
    got_s = "" if isinstance(got, (dict, list)) else f" (got {got!r})"
    msg = err["msg"].removeprefix("Value error, ")
    return f"{key}: {msg}{got_s}"


def _stage_owner(loc: Sequence[Any], data: Any) -> type[BaseModel] | None:
    try:
        return REGISTRY[data["stages"][loc[1]]["op"]].params
    except (KeyError, IndexError, TypeError):
        return None


def _first_error(errors: list[Any]) -> Any:
    """Unknown keys first (they explain the rest), then the first error per location."""
    extra = [e for e in errors if e["type"] == "extra_forbidden"]
    return extra[0] if extra else errors[0]


def parse_config(data: Any, source: str = "<config>", positions: dict | None = None) -> Config:
    """Validate a mapping into a :class:`Config`.

    Raises :class:`ConfigError` naming ``source``, the line (from ``positions``, as
    :func:`load_config` records them) and the key; fields ``file``, ``line`` (1-based, or None)
    and ``key`` (dotted, e.g. ``stages.0.factor``)."""
    if not isinstance(data, dict):
        raise ConfigError(
            f"{source}: the config must be a mapping of keys (input, output, ...)",
            file=source,
            line=None,
            key=None,
        )
    try:
        return Config.model_validate(data)
    except ValidationError as e:
        errors = e.errors()
        err = _first_error(errors)
        where, line = source, None
        key = _data_loc(err["loc"], data)
        if positions:
            loc = key
            while loc and loc not in positions:
                loc = loc[:-1]
            mark = positions.get(loc)
            if mark is not None:
                line = mark.line + 1
                where = f"{source}:{line}"
        locs = {_data_loc(x["loc"], data) for x in errors}
        more = f" (and {len(locs) - 1} more problem(s))" if len(locs) > 1 else ""
        raise ConfigError(
            f"{where}: {_message(err, data)}{more}",
            file=source,
            line=line,
            key=".".join(str(k) for k in key) or None,
        ) from None


#: A number as YAML 1.2 writes it (``1e39``, ``1e-3``, ``-.5``). PyYAML reads YAML 1.1, whose
#: floats need a dot and a signed exponent: there ``1e39`` is the text "1e39".
_YAML12_NUMBER = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")


def _read_stage_numbers(node: yaml.Node, data: Any) -> None:
    """Stage parameters written unquoted as YAML 1.2 numbers become numbers (``factor: 1e39``
    is the float 1e39, as YAML 1.2 and most tools read it); quoted ones stay text, which a
    stage's scalar refuses (``factor: "5"`` is not coerced)."""
    if not isinstance(node, yaml.MappingNode):
        return
    for key_node, value_node in node.value:
        if key_node.value != "stages" or not isinstance(value_node, yaml.SequenceNode):
            continue
        for i, item in enumerate(value_node.value):
            if not isinstance(item, yaml.MappingNode):
                continue
            for k, v in item.value:
                plain_text = (
                    isinstance(v, yaml.ScalarNode)
                    and v.style is None
                    and v.tag == "tag:yaml.org,2002:str"
                )
                if plain_text and _YAML12_NUMBER.fullmatch(v.value):
                    with contextlib.suppress(KeyError, IndexError, TypeError):
                        data["stages"][i][k.value] = float(v.value)


def load_config(path: str | Path, overrides: Mapping[str, Any] | None = None) -> Config:
    """Read and validate a YAML config file.

    ``overrides`` maps dotted keys (``"output.overwrite"``) to values set after reading,
    as the command line's flags do.
    """
    p = Path(path)
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise ConfigError(
            f"config file not found: {p} (see configs/ for examples)",
            file=str(p),
            line=None,
            key=None,
        ) from None
    except OSError as e:
        raise ConfigError(
            f"cannot read config {p}: {e.strerror}", file=str(p), line=None, key=None
        ) from None
    try:
        node = yaml.compose(text, Loader=_Located)
        data = yaml.load(text, Loader=_Located)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{p}:{mark.line + 1}:{mark.column + 1}" if mark else str(p)
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(
            f"{where}: malformed YAML: {problem}",
            file=str(p),
            line=mark.line + 1 if mark else None,
            key=None,
        ) from None
    positions = _positions(node) if node is not None else {}
    data = data if data is not None else {}
    if node is not None:
        _read_stage_numbers(node, data)
    for dotted, value in (overrides or {}).items():
        target = data
        *parents, last = dotted.split(".")
        for k in parents:
            target = target.setdefault(k, {})
        target[last] = value
    return parse_config(data, str(p), positions)


# --------------------------------------------------------------------------------------------
# Documentation generated from the schema (the README's reference is this text).


def _kind(p: dict[str, Any]) -> str:
    """A JSON schema node in words: 'list of integers or `auto`'."""
    if "anyOf" in p or "oneOf" in p:
        parts = [_kind(q) for q in p.get("anyOf", p.get("oneOf", [])) if q.get("type") != "null"]
        return " or ".join(dict.fromkeys(parts))
    if "const" in p:
        return f"`{p['const']}`"
    if "enum" in p:
        return " / ".join(f"`{e}`" for e in p["enum"])
    if "$ref" in p:
        return "mapping"
    t = p.get("type")
    if t == "array":
        item = _kind(p.get("items", {}))
        plural = item in ("integer", "number", "string", "mapping")
        return f"list of {item}s" if plural else f"list of {item}"
    if t == "integer" and p.get("format") == "bytes":
        return "size (bytes, or e.g. `16GiB`)"
    if t == "object":
        return "mapping"
    return {"boolean": "true / false"}.get(str(t), str(t))


def _yaml_value(v: Any, p: dict[str, Any]) -> str:
    """A default as it would be written in the YAML file."""
    if v is None:
        return "—"
    if isinstance(v, bool):
        return f"`{str(v).lower()}`"
    if isinstance(v, str):
        return f"`{v}`" if v else "`''`"
    if isinstance(v, int) and p.get("format") == "bytes":
        for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
            if v and v % (1 << shift) == 0:
                return f"`{v >> shift}{unit}`"
    return f"`{list(v) if isinstance(v, tuple) else v}`"


def schema_markdown() -> str:
    """The config reference as Markdown tables, one per section (README's copy of it is
    regenerated by ``make docs``; a test keeps the two equal)."""
    lines: list[str] = []

    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    def table(title: str, model: type[BaseModel]) -> None:
        props = model.model_json_schema()["properties"]
        lines.append(f"**{title}** — {(model.__doc__ or '').strip().splitlines()[0]}")
        lines.append("")
        lines.append("| key | type | default | description |")
        lines.append("| --- | --- | --- | --- |")
        for name, f in model.model_fields.items():
            if f.is_required():
                default = "*required*"
            elif f.default_factory is dict:
                default = "`{}`"
            elif f.default_factory is not None:
                default = "see below"
            else:
                default = _yaml_value(f.default, props[name])
            kind = cell(_kind(props[name]))
            lines.append(f"| `{name}` | {kind} | {default} | {cell(f.description or '')} |")
        lines.append("")

    table("top level", Config)
    table("input", InputConfig)
    table("input.generate", GenerateConfig)
    table("output", OutputConfig)
    table("output.codec / input.generate.codec", CodecConfig)
    table("chunking", ChunkingConfig)
    table("cluster", ClusterConfig)
    lines.append("**stages** — a list; each item names its stage with `op:`")
    lines.append("")
    lines.append("| op | what it does | parameters |")
    lines.append("| --- | --- | --- |")
    for name, d in REGISTRY.items():
        params = (
            "; ".join(f"`{k}`: {f.description}" for k, f in d.params.model_fields.items()) or "none"
        )
        lines.append(f"| `{name}` | {cell(d.doc)} | {cell(params)} |")
    lines.append("")
    return "\n".join(lines)


#: Markers around the generated reference in README.md.
REFERENCE_BEGIN = "<!-- schema:begin (generated by `make docs` from pipeline/config.py) -->"
REFERENCE_END = "<!-- schema:end -->"


def with_reference(text: str) -> str:
    """``text`` (a README) with the part between the reference markers regenerated."""
    try:
        head, rest = text.split(REFERENCE_BEGIN, 1)
        _, tail = rest.split(REFERENCE_END, 1)
    except ValueError:
        raise PipelineError(
            f"no config reference markers in the text: add a line {REFERENCE_BEGIN} and a "
            f"line {REFERENCE_END} where the reference goes"
        ) from None
    return f"{head}{REFERENCE_BEGIN}\n{schema_markdown()}{REFERENCE_END}{tail}"
