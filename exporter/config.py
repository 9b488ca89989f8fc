"""The configuration file: parsed and validated here, at the edge; everything inward gets typed, frozen objects.

Unknown keys, wrong types, durations out of their range and duplicate names stop start-up with one line that names
the key path and what is expected (see `ConfigError`). The file itself is read by `exporter.files`: bounded in size,
UTF-8, bounded in depth, no key twice.
"""

from __future__ import annotations

import itertools
import math
import os
import re
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, Union

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from exporter.credentials import CredentialError, CredentialProvider, KeySource
from exporter.credentials_oidc import OidcCredentialProvider
from exporter.files import CONFIG_MAX_BYTES, FileError, load_yaml, shorten

if TYPE_CHECKING:
    from exporter.contract import Kind

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}
DURATION_HINT = "a duration such as 30s, 5m or 1h"
MINUTE, HOUR, DAY = 60.0, 3600.0, 86400.0
# Bucket bounds per histogram: each bound is a series per label set, so a list cannot multiply them without limit.
MAX_BUCKETS = 64
# Errors named in one message: a list of 100,000 wrong values is one mistake, not a screenful.
MAX_ERRORS = 10


class ConfigError(Exception):
    """The configuration is unusable; `str()` is one line naming the key path and the fix."""


def duration_text(seconds: float) -> str:
    """Returns seconds in the largest unit that divides them: `100ms`, `30s`, `10m`, `12h`, `30d`."""
    for unit in ("d", "h", "m", "s"):
        if seconds >= _UNIT_SECONDS[unit] and seconds % _UNIT_SECONDS[unit] == 0:
            return f"{seconds / _UNIT_SECONDS[unit]:g}{unit}"
    return f"{seconds * 1000:g}ms"


def parse_duration(value: Any, low: float, high: float) -> float:
    """Returns seconds from `30s`, `5m`, `1h`, `500ms`, `2d` or a bare number of seconds, from `low` to `high`."""
    if isinstance(value, bool):
        raise ValueError(f"expected {DURATION_HINT}")
    if isinstance(value, int | float):
        number = value
        seconds_per_unit = 1.0
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ValueError(f"expected {DURATION_HINT}, got {shorten(value)}")
        number, seconds_per_unit = match.group(1), _UNIT_SECONDS[match.group(2)]
    try:
        seconds = float(number) * seconds_per_unit
    except OverflowError:  # an integer beyond any float
        seconds = math.inf
    # NaN fails every comparison: `.nan`, `.inf` and 400-digit strings all land here.
    if not low <= seconds <= high:
        allowed = f"from {duration_text(low)} to {duration_text(high)}"
        raise ValueError(f"expected a duration {allowed}, got {shorten(value)}")
    return seconds


def duration(low: float, high: float) -> BeforeValidator:
    """Returns the validator of a duration key whose value must lie from `low` to `high` seconds."""
    return BeforeValidator(lambda value: parse_duration(value, low, high))


# How often an API is polled: once a second at most (job states change on the scale of seconds, and a microsecond
# interval had the scheduler poll once, then never again), once a day at least.
Interval = Annotated[float, duration(1.0, DAY)]
# One request, or its connection: from 100ms to 10 minutes.
Timeout = Annotated[float, duration(0.1, 10 * MINUTE)]
# How long data is kept or looked back for: up to 30 days.
Span = Annotated[float, duration(1.0, 30 * DAY)]


def trimmed_unique(values: list[str]) -> list[str]:
    """Returns the list with values trimmed; rejects empty strings."""
    out = [v.strip() for v in values]
    if any(not v for v in out):
        raise ValueError("expected non-empty strings")
    return list(dict.fromkeys(out))


NameList = Annotated[list[str], AfterValidator(trimmed_unique)]


def _bucket_bounds(values: list[float]) -> tuple[float, ...]:
    """Returns histogram bucket bounds: 1 to MAX_BUCKETS of them, finite, positive and strictly increasing."""
    if not 1 <= len(values) <= MAX_BUCKETS:
        raise ValueError(f"expected 1 to {MAX_BUCKETS} bucket bounds in seconds, got {len(values)}")
    if not all(math.isfinite(b) for b in values):
        raise ValueError("expected finite bucket bounds in seconds; the +Inf bucket is always there, do not list it")
    if any(b <= 0 for b in values) or any(b >= c for b, c in itertools.pairwise(values)):
        raise ValueError("expected positive, strictly increasing bucket bounds in seconds")
    return tuple(values)


BucketBounds = Annotated[list[float], AfterValidator(_bucket_bounds)]


class Strict(BaseModel):
    """Base for every config model: unknown keys are errors, objects are immutable once parsed."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


def base_url(value: str | None, example: str) -> str | None:
    """Returns a base URL without its trailing slash (None stays None); raises ValueError, naming `example`, for
    anything with a path or another scheme than http(s)."""
    if value is not None and not re.match(r"^https?://[^/\s]+/?$", value):
        raise ValueError(f"expected a base URL such as {example} (no path)")
    return value.rstrip("/") if value else value


class CredentialsConfig(Strict):
    """Where a source's keys come from: environment variables (default: the vendor's) or files, or (Alibaba Cloud)
    RRSA, an OIDC token exchanged for STS credentials."""

    access_key_id_env: str | None = None
    access_key_secret_env: str | None = None
    security_token_env: str | None = None
    access_key_id_file: Path | None = None
    access_key_secret_file: Path | None = None
    security_token_file: Path | None = None
    # RRSA: used when these are given, or when the vendor's RRSA variables are set and its access key variable is not.
    oidc_role_arn: Annotated[str, Field(min_length=1)] | None = None
    oidc_provider_arn: Annotated[str, Field(min_length=1)] | None = None
    oidc_token_file: Path | None = None
    sts_endpoint: str | None = None  # default https://sts.{region}.aliyuncs.com
    role_session_name: Annotated[str, Field(pattern=r"^[\w.@-]{2,64}$")] = "cloud-job-exporter"
    session_duration: Annotated[float, duration(15 * MINUTE, 12 * HOUR)] = 3600.0

    ACCESS_KEYS: ClassVar[tuple[str, ...]] = tuple(
        f"{part}_{where}" for part in ("access_key_id", "access_key_secret", "security_token")
        for where in ("env", "file")
    )
    RRSA_KEYS: ClassVar[tuple[str, ...]] = ("oidc_role_arn", "oidc_provider_arn", "oidc_token_file")
    STS_KEYS: ClassVar[tuple[str, ...]] = ("sts_endpoint", "role_session_name", "session_duration")

    @model_validator(mode="after")
    def _one_place_each(self) -> CredentialsConfig:
        for part in ("access_key_id", "access_key_secret", "security_token"):
            if getattr(self, f"{part}_env") and getattr(self, f"{part}_file"):
                raise ValueError(f"give {part}_env or {part}_file, not both")
        access = [k for k in self.ACCESS_KEYS if getattr(self, k)]
        rrsa = [k for k in (*self.RRSA_KEYS, *self.STS_KEYS) if k in self.model_fields_set]
        if access and rrsa:
            raise ValueError(f"{rrsa[0]}: an RRSA key cannot be combined with {access[0]}; use access keys or RRSA")
        given = [k for k in self.RRSA_KEYS if getattr(self, k)]
        if given and len(given) < len(self.RRSA_KEYS):
            missing = next(k for k in self.RRSA_KEYS if k not in given)
            raise ValueError(f"{missing}: required with {given[0]} (RRSA needs {', '.join(self.RRSA_KEYS)})")
        return self

    # Paths and variable names stand in error messages, which are one line; open() cannot take a NUL character.
    @field_validator("access_key_id_file", "access_key_secret_file", "security_token_file", "oidc_token_file")
    @classmethod
    def _printable_path(cls, value: Path | None) -> Path | None:
        if value is not None and not str(value).isprintable():
            raise ValueError("expected a file path without control characters")
        return value

    @field_validator("access_key_id_env", "access_key_secret_env", "security_token_env")
    @classmethod
    def _variable_name(cls, value: str | None) -> str | None:
        if value is not None and not (value.isprintable() and re.fullmatch(r"[^\s=]*", value)):
            raise ValueError("expected an environment variable name: no spaces, control characters or =")
        return value

    @field_validator("sts_endpoint")
    @classmethod
    def _sts_endpoint_is_base_url(cls, value: str | None) -> str | None:
        return base_url(value, "https://sts-vpc.cn-hangzhou.aliyuncs.com")


ALIBABA_ENV = ("ALIBABA_CLOUD_ACCESS_KEY_ID", "ALIBABA_CLOUD_ACCESS_KEY_SECRET", "ALIBABA_CLOUD_SECURITY_TOKEN")
# The vendor's RRSA variables (set by ACK's pod identity webhook), in the order of the RRSA keys.
RRSA_ENV = ("ALIBABA_CLOUD_ROLE_ARN", "ALIBABA_CLOUD_OIDC_PROVIDER_ARN", "ALIBABA_CLOUD_OIDC_TOKEN_FILE")


class SourceConfig(Strict):
    """Settings shared by every source kind."""

    # The vendor's standard variables for (key id, secret, token), used when `credentials` names none.
    credential_env: ClassVar[tuple[str, str, str]] = ALIBABA_ENV

    name: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9_.:-]+$")]
    region: Annotated[str, Field(min_length=1, pattern=r"^[a-z0-9-]+$")]
    endpoint: str | None = None
    interval: Interval = 30.0
    timeout: Timeout = 10.0
    connect_timeout: Timeout = 5.0
    stale_after: Span | None = None
    max_concurrency: Annotated[int, Field(ge=1, le=32)] = 4
    max_pages: Annotated[int, Field(ge=1)] = 2000
    # Bounds on what one answer may cost (docs/security.md): its body on the wire and inflated, its JSON items (the
    # decoding holds the event loop, about 1 us an item at worst), and every label value taken from it.
    max_response_size: Annotated[int, Field(ge=64 * 1024, le=1024**3)] = 4 * 1024 * 1024
    max_page_items: Annotated[int, Field(ge=1000, le=10_000_000)] = 20_000
    max_label_length: Annotated[int, Field(ge=64, le=65_536)] = 1024
    per_job_series: bool = True
    max_job_series: Annotated[int, Field(ge=0)] = 5000
    owner_label: Literal["keep", "hash", "drop"] = "keep"
    credentials: CredentialsConfig = CredentialsConfig()

    def poll_intervals(self) -> tuple[float, ...]:
        """Returns the interval of each polled API (kinds with several schedules add theirs)."""
        return (self.interval,)

    def default_endpoint(self) -> str:
        """Returns the endpoint polled when `endpoint` is not set: the vendor's regional one, for kinds that have one
        (they say which); empty otherwise."""
        return ""

    @model_validator(mode="after")
    def _stale_after_covers_every_interval(self) -> SourceConfig:
        longest = max(self.poll_intervals())
        if self.stale_after is not None and self.stale_after < longest:
            raise ValueError(f"stale_after: expected at least the longest poll interval ({longest:g}s), or series "
                             f"would vanish between two polls; got {self.stale_after:g}s")
        return self

    @field_validator("endpoint")
    @classmethod
    def _endpoint_is_base_url(cls, value: str | None) -> str | None:
        return base_url(value, "https://host or http://127.0.0.1:8080")


HUAWEI_ENV = ("HUAWEICLOUD_SDK_AK", "HUAWEICLOUD_SDK_SK", "HUAWEICLOUD_SDK_SECURITY_TOKEN")


class ExporterConfig(Strict):
    """The whole file: a list of sources with unique names, each validated by its kind's model (`file_model`)."""

    sources: Annotated[list[SourceConfig], Field(min_length=1)]

    @model_validator(mode="after")
    def _unique_names(self) -> ExporterConfig:
        seen: set[str] = set()
        for index, source in enumerate(self.sources):
            if source.name in seen:
                raise ValueError(f"sources[{index}].name: duplicate source name {source.name!r}; names must be unique")
            seen.add(source.name)
        return self


@cache
def file_model(models: tuple[type[SourceConfig], ...]) -> type[ExporterConfig]:
    """Returns the model of a config file whose sources are of these kinds, told apart by their `kind` key."""
    one_of = Annotated[Union[models], Field(discriminator="kind")] if len(models) > 1 else models[0]  # noqa: UP007
    return create_model(  # type: ignore[call-overload,no-any-return]
        "ExporterConfig", __base__=ExporterConfig, sources=(Annotated[list[one_of], Field(min_length=1)], ...),
    )


def _rrsa(source: SourceConfig) -> tuple[str, str, Path] | None:
    """Returns (role ARN, OIDC provider ARN, token file) when the source uses RRSA, None for access keys.

    The vendor chain's order: keys the source names win; then `ALIBABA_CLOUD_ACCESS_KEY_ID`; then the RRSA
    variables when all three are set."""
    creds = source.credentials
    if creds.oidc_role_arn and creds.oidc_provider_arn and creds.oidc_token_file:
        return creds.oidc_role_arn, creds.oidc_provider_arn, creds.oidc_token_file
    if source.credential_env != ALIBABA_ENV or any(getattr(creds, k) for k in CredentialsConfig.ACCESS_KEYS):
        return None
    if os.environ.get(ALIBABA_ENV[0], "").strip():
        return None
    role, provider, token_file = (os.environ.get(name, "").strip() for name in RRSA_ENV)
    return (role, provider, Path(token_file)) if role and provider and token_file else None


def credential_provider(source: SourceConfig) -> CredentialProvider | OidcCredentialProvider:
    """Returns the provider for a source's credentials, defaulting to the vendor's standard variables, or RRSA."""
    creds = source.credentials
    defaults = source.credential_env
    rrsa = _rrsa(source)
    if rrsa is not None:
        if source.credential_env != ALIBABA_ENV:
            raise CredentialError("RRSA (oidc_role_arn, oidc_provider_arn, oidc_token_file) is for Alibaba Cloud "
                                  "sources only")
        env_session = os.environ.get("ALIBABA_CLOUD_ROLE_SESSION_NAME", "").strip()
        session = env_session if env_session and "role_session_name" not in creds.model_fields_set else None
        if session and not re.match(r"^[\w.@-]{2,64}$", session):
            raise CredentialError("ALIBABA_CLOUD_ROLE_SESSION_NAME: expected 2 to 64 letters, digits or . @ - _")
        prefix = "sts-vpc" if os.environ.get("ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED", "").lower() == "true" else "sts"
        return OidcCredentialProvider(
            *rrsa, creds.sts_endpoint or f"https://{prefix}.{source.region}.aliyuncs.com",
            session_name=session or creds.role_session_name, duration=creds.session_duration, timeout=source.timeout,
        )

    ignored = sorted(k for k in CredentialsConfig.STS_KEYS if k in creds.model_fields_set)
    if ignored:
        raise CredentialError(f"{', '.join(ignored)} only apply to RRSA, which this source does not use (it has "
                              "access keys, or is not an Alibaba Cloud source); remove them")

    def key(part: str, default_env: str) -> KeySource:
        path = getattr(creds, f"{part}_file")
        return KeySource(file=path) if path else KeySource(env=getattr(creds, f"{part}_env") or default_env)

    return CredentialProvider(
        key("access_key_id", defaults[0]), key("access_key_secret", defaults[1]), key("security_token", defaults[2])
    )


def _location(loc: tuple[Any, ...], data: Any) -> str:
    """Returns a key path like `sources[0].interval`, dropping pydantic's union tags."""
    path = ""
    node = data
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
            node = node[part] if isinstance(node, list) and part < len(node) else None
        elif isinstance(node, dict) and part in node:
            path = _key_path(path, part)
            node = node[part]
        elif isinstance(node, dict) and part == node.get("kind"):
            continue  # the discriminator's tag, not a key the user wrote
        else:
            path = _key_path(path, part)
            node = None
    return path or "(top level)"


def _key_path(path: str, key: Any) -> str:
    """Returns `path` followed by a mapping key: `.key` for a word, `['odd key']` (cut short) for any other, which
    may hold a line break."""
    if isinstance(key, str) and re.fullmatch(r"\w+", key):
        return f"{path}.{key}" if path else key
    return f"{path}[{shorten(key)}]"


def _describe(error: dict[str, Any], data: Any, kinds: str) -> str:
    """Returns one error as `key.path: what is expected`."""
    where = _location(tuple(error["loc"]), data)
    kind = error["type"]
    if kind == "extra_forbidden":
        return f"{where}: unknown key; remove it or check its spelling"
    if kind == "missing":
        return f"{where}: required key is missing"
    if kind == "union_tag_invalid":
        return f"{where}.kind: unknown kind {shorten(error['input'].get('kind'))}; expected one of: {kinds}"
    if kind == "union_tag_not_found":
        return f"{where}.kind: required key is missing; expected one of: {kinds}"
    message = str(error["msg"]).removeprefix("Value error, ")
    if re.match(r"^sources\[\d+\][\w.]*: ", message):
        return message  # a model-level check that already names its key
    if kind == "value_error" and (named := re.match(r"^([a-z_]+): (.*)$", message)):
        return f"{where}.{named.group(1)}: {named.group(2)}"  # a source-level check naming one of its keys
    return f"{where}: {message}"


def parse_config(data: Any, kinds: Mapping[str, Kind[Any]]) -> ExporterConfig:
    """Returns the validated config for already-loaded YAML data whose sources are of `kinds` (the table
    `exporter.sources.KINDS`), or raises ConfigError."""
    if not isinstance(data, dict):
        raise ConfigError("(top level): expected a mapping with a `sources:` list")
    try:
        return file_model(tuple(k.config for k in kinds.values())).model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        said = "; ".join(_describe(e, data, ", ".join(kinds)) for e in errors[:MAX_ERRORS])
        more = f"; and {len(errors) - MAX_ERRORS} more" if len(errors) > MAX_ERRORS else ""
        raise ConfigError(said + more) from None


def load_config(path: Path, kinds: Mapping[str, Kind[Any]]) -> ExporterConfig:
    """Returns the validated config read from a YAML file, or raises ConfigError."""
    try:
        data = load_yaml(path, CONFIG_MAX_BYTES)
    except FileError as exc:
        raise ConfigError(f"--config.file: {exc}") from None
    return parse_config(data, kinds)


def check_credentials(config: ExporterConfig) -> None:
    """Raises ConfigError naming the source whose credentials cannot be resolved now.

    For RRSA only the OIDC token file is checked (readable, not empty): STS is not called at start-up, so
    `--config.check` works offline and an STS outage is reported as the source's `auth` poll failure instead."""
    for index, source in enumerate(config.sources):
        try:
            credential_provider(source).check()
        except CredentialError as exc:
            raise ConfigError(
                f"sources[{index}].credentials: {exc}; set it, or name other variables or files under credentials"
            ) from None
