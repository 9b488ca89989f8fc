"""Properties of the config edge, over generated input: whatever the data, text or bytes, loading and validating raise
ConfigError (CredentialError for a credential file) and nothing else, and every message is one line.

Derandomized with a modest number of examples: the same cases in every run and on CI, in a few seconds.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter.config import ConfigError, CredentialsConfig, check_credentials, load_config, parse_config
from exporter.credentials import CredentialError, CredentialProvider, KeySource
from exporter.sources import KINDS
from exporter.webconfig import load_web_config

PROPERTY = settings(max_examples=200, derandomize=True, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

# Strings that would break a one-line message if one were quoted as it is.
breaking = st.sampled_from(["a\nb", "\r", "x y", "\u2028", "\x85", "\x00"])
scalars = (st.none() | st.booleans() | st.integers(min_value=-(2**80), max_value=2**80)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=20) | breaking)
keys = st.text(max_size=8) | breaking | st.integers() | st.none()
data = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
                    max_leaves=12)

# Keys the models know, so generated sources reach the validators behind the unknown-key check.
SOURCE_KEYS = sorted({name for kind in KINDS.values() for name in kind.config.model_fields})
CREDENTIAL_KEYS = sorted(CredentialsConfig.model_fields)
durations = st.from_regex(r"\A ?[0-9]{0,30}(\.[0-9]{0,8})? ?(ms|s|m|h|d)?\Z") | st.sampled_from(
    [math.inf, -math.inf, math.nan, 0, -1, 10**30, "1e3s", "inf", "nan", ".5s", "1:30"])
values = data | durations | st.lists(st.floats() | st.integers(), max_size=70) | st.sampled_from(list(KINDS))
credentials = st.dictionaries(st.sampled_from(CREDENTIAL_KEYS) | keys, values, max_size=3)
sources = st.fixed_dictionaries(
    {"name": st.sampled_from(["mc", "x y", ""]) | st.text(max_size=5), "kind": st.sampled_from([*KINDS, "nope"]),
     "region": st.sampled_from(["cn-hangzhou", "Bad Region"])},
    optional={"credentials": credentials | data},
).flatmap(lambda base: st.dictionaries(st.sampled_from(SOURCE_KEYS) | keys, values, max_size=6).map(
    lambda extra: {**base, **extra}))
configs = st.fixed_dictionaries({"sources": st.lists(sources, max_size=3) | data}) | data

# Text made of YAML's punctuation: it gets through the UTF-8 check and into the parser, the shape check and the
# constructor.
yaml_text = st.text(alphabet=[*"[]{}:-,&*!|>?'\"#%@` \n\t<=~.0123456789abcxyz", "\u00e9", "\x00", "\ufeff"],
                    max_size=200)


def one_line(message: str) -> bool:
    return len(message.splitlines()) == 1


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("properties")


@pytest.fixture(autouse=True)
def access_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", "id")
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "secret")


def refused_in_one_line(load: Any) -> None:
    """Runs `load`; a ConfigError must be one line, any other exception fails the test."""
    try:
        load()
    except ConfigError as exc:
        assert one_line(str(exc)), str(exc)


@PROPERTY
@given(configs)
def test_any_data_is_valid_or_one_config_error(config: Any) -> None:
    def validate() -> None:
        check_credentials(parse_config(config, KINDS))

    refused_in_one_line(validate)


@PROPERTY
@given(configs)
def test_any_dumped_data_loads_or_is_one_config_error(folder: Path, config: Any) -> None:
    path = folder / "dumped.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True))
    refused_in_one_line(lambda: load_config(path, KINDS))


@PROPERTY
@given(st.binary(max_size=300) | yaml_text.map(str.encode))
def test_any_bytes_load_or_are_one_config_error(folder: Path, content: bytes) -> None:
    path = folder / "bytes.yaml"
    path.write_bytes(content)
    refused_in_one_line(lambda: load_config(path, KINDS))
    refused_in_one_line(lambda: load_web_config(path))


@PROPERTY
@given(st.binary(max_size=100) | st.text(max_size=30).map(str.encode))
def test_any_credential_file_is_usable_or_one_credential_error(folder: Path, content: bytes) -> None:
    path = folder / "secret"
    path.write_bytes(content)
    provider = CredentialProvider(KeySource(env="ALIBABA_CLOUD_ACCESS_KEY_ID"), KeySource(file=path))
    try:
        secret = provider().secret
    except CredentialError as exc:
        assert one_line(str(exc)), str(exc)
    else:
        assert secret.isascii() and secret.isprintable()
