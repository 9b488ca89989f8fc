"""Hostile files, bounded: every file the exporter reads is refused in one line when it is too large, not UTF-8, too
deep, expands past its bound or repeats a key; and `--config.check` refuses every config that start-up would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from exporter.cli import main
from exporter.config import ConfigError, load_config
from exporter.files import CONFIG_MAX_BYTES, MAX_DEPTH, SECRET_MAX_BYTES, FileError, load_yaml, read_text
from exporter.sources import KINDS
from exporter.webconfig import load_web_config

ROOT = Path(__file__).resolve().parent.parent
SOURCE = "sources:\n  - name: mc\n    kind: maxcompute\n    region: cn-hangzhou\n"


def write(tmp_path: Path, content: str | bytes, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def laughs(levels: int, merge: bool) -> str:
    """Returns YAML whose anchors each hold nine aliases of the previous one: 9**levels values once expanded."""
    lines = ["l0: &l0 {k: v}" if merge else "l0: &l0 [v, v, v, v, v, v, v, v, v]"]
    for n in range(1, levels + 1):
        aliases = ", ".join([f"*l{n - 1}"] * 9)
        lines.append(f"l{n}: &l{n} {{<<: [{aliases}]}}" if merge else f"l{n}: &l{n} [{aliases}]")
    return "\n".join(lines) + "\n"


def test_a_file_over_its_size_limit_is_refused_without_being_read(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    with path.open("wb") as file:
        file.truncate(50 * 1024 * 1024)  # sparse: 50 MiB of NUL bytes that reading would have to go through
    with pytest.raises(FileError) as info:
        read_text(path, CONFIG_MAX_BYTES)
    assert str(info.value) == f"cannot read {path}: larger than 1 MiB, more than such a file ever needs; is it the " \
                              "right file?"
    assert read_text(write(tmp_path, "x" * SECRET_MAX_BYTES), SECRET_MAX_BYTES) == "x" * SECRET_MAX_BYTES


@pytest.mark.parametrize(("content", "line"), [("sources: []\n".encode("utf-16"), 1), (b"a: 1\nb: \xff\xfe\n", 2),
                                               (bytes(range(256)), 2)], ids=["utf-16", "latin-1", "binary"])
def test_a_file_that_is_not_utf8_is_refused_naming_the_line(tmp_path: Path, content: bytes, line: int) -> None:
    path = write(tmp_path, content)
    with pytest.raises(FileError, match=rf"^cannot read .*: not UTF-8 text \(an invalid byte on line {line}\); "
                                        "save it as UTF-8$"):
        read_text(path, CONFIG_MAX_BYTES)


def test_a_path_with_a_nul_character_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FileError, match="the path holds a NUL character"):
        read_text(tmp_path / "a\0b", CONFIG_MAX_BYTES)


@pytest.mark.parametrize(("content", "message"), [
    (SOURCE + "    region: cn-beijing\n", "at line 5, column 5: duplicate key 'region' (first on line 4); give each "
                                           "key once"),
    ("{a: 1, a: 2}", "at line 1, column 8: duplicate key 'a' (first on line 1); give each key once"),
    ("{yes: 1, true: 2}", "at line 1, column 10: duplicate key True (first on line 1); give each key once"),
    ("[" * 100_000 + "]" * 100_000, f"at line 1, column {MAX_DEPTH + 1}: nested deeper than 64 levels"),
    ("{a: " * 100_000 + "1" + "}" * 100_000, f"at line 1, column {4 * MAX_DEPTH + 1}: nested deeper than 64 levels"),
    ("- " * 100_000 + "x", f"at line 1, column {2 * MAX_DEPTH + 1}: nested deeper than 64 levels"),
    # Refused at the alias that passes the bound: the sixth level's first (merge: its second) of nine.
    (laughs(9, merge=False), "at line 7, column 10: more than 1,000,000 values once aliases are expanded"),
    (laughs(9, merge=True), "at line 7, column 30: more than 1,000,000 values once aliases are expanded"),
    ("a: &a [1, *a]", "at line 1, column 11: the alias *a refers to a collection that holds it"),
    ("a: " + "1" * 5000, "at line 1, column 4: an integer longer than 100 characters"),
    ("a: 1" + ":59" * 100_000, "at line 1, column 4: an integer longer than 100 characters"),
    ("a: 2025-02-30", "at line 1, column 4: '2025-02-30' is not a valid date: day is out of range for month"),
    ("a: 1\n---\nb: 2\n", "at line 2, column 1: expected a single document in the stream, but found another document"),
], ids=["duplicate", "duplicate-flow", "duplicate-bool", "deep-flow-list", "deep-flow-map", "deep-block-list",
        "billion-laughs", "billion-laughs-merge", "recursive-alias", "long-int", "sexagesimal", "bad-date",
        "two-documents"])
def test_hostile_yaml_is_refused_in_one_line(tmp_path: Path, content: str, message: str) -> None:
    path = write(tmp_path, content)
    with pytest.raises(FileError) as info:
        load_yaml(path)
    assert str(info.value) == f"{path} is not valid YAML {message}"


def test_depth_up_to_the_bound_and_merge_overrides_load(tmp_path: Path) -> None:
    nested = load_yaml(write(tmp_path, "[" * MAX_DEPTH + "]" * MAX_DEPTH))
    for _ in range(MAX_DEPTH - 1):
        nested = nested[0]
    assert nested == []
    merged = load_yaml(write(tmp_path, "base: &b {x: 1, y: 2}\nm:\n  <<: *b\n  x: 3\n"))
    assert merged["m"] == {"x": 3, "y": 2}
    assert load_yaml(write(tmp_path, "")) is None


def test_the_example_config_loads_with_the_bounded_loader() -> None:
    assert len(load_config(ROOT / "examples" / "config.yaml", KINDS).sources) == 4


@pytest.mark.parametrize(("content", "start"), [
    (b"\xff\xfe", "--web.config.file: cannot read "),
    ("basic_auth_users:\n  a: $2y$10$x\n  a: $2y$10$y\n", "--web.config.file: "),
    ("[" * 100_000, "--web.config.file: "),
], ids=["binary", "duplicate", "deep"])
def test_the_web_config_file_is_read_the_same_way(tmp_path: Path, content: str | bytes, start: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_web_config(write(tmp_path, content, "web.yaml"))
    assert str(info.value).startswith(start) and "\n" not in str(info.value)


# ---- `--config.check`: what start-up would refuse, the check refuses, in one line naming the key ----------------

def source(**keys: str) -> str:
    return SOURCE + "".join(f"    {key}: {value}\n" for key, value in keys.items())


BAD_CONFIGS = [
    (source(interval=".inf"), "sources[0].interval: expected a duration from 1s to 1d, got inf"),
    (source(interval=".nan"), "sources[0].interval: expected a duration from 1s to 1d, got nan"),
    (source(interval="100000000000000000000000000d"), "sources[0].interval: expected a duration from 1s to 1d, got "
                                                      "'100000000000000000000000000d'"),
    (source(interval="0.0001ms"), "sources[0].interval: expected a duration from 1s to 1d, got '0.0001ms'"),
    (source(timeout=".nan"), "sources[0].timeout: expected a duration from 100ms to 10m, got nan"),
    (source(running_lookback=".inf"), "sources[0].running_lookback: expected a duration from 1m to 30d, got inf"),
    (source(wait_buckets="[1, .nan]"), "sources[0].wait_buckets: expected finite bucket bounds in seconds; the +Inf "
                                       "bucket is always there, do not list it"),
    (source(run_buckets="[1, .inf]"), "sources[0].run_buckets: expected finite bucket bounds in seconds; the +Inf "
                                      "bucket is always there, do not list it"),
    (source(interval="30s", timeout="5s") + "    interval: 1m\n",
     "--config.file: {path} is not valid YAML at line 7, column 5: duplicate key 'interval' (first on line 5); give "
     "each key once"),
    (SOURCE.encode("utf-16"), "--config.file: cannot read {path}: not UTF-8 text (an invalid byte on line 1); save "
                              "it as UTF-8"),
    ("sources: " + "[" * 100_000, "--config.file: {path} is not valid YAML at line 1, column 73: nested deeper than "
                                  "64 levels"),
    (laughs(9, merge=True) + SOURCE, "--config.file: {path} is not valid YAML at line 7, column 30: more than "
                                     "1,000,000 values once aliases are expanded"),
    ("#" * CONFIG_MAX_BYTES + "\n" + SOURCE, "--config.file: cannot read {path}: larger than 1 MiB, more than such a "
                                             "file ever needs; is it the right file?"),
]


@pytest.mark.parametrize(("content", "message"), BAD_CONFIGS, ids=[m.split(":")[0] + "-" + str(i)
                                                                    for i, (_, m) in enumerate(BAD_CONFIGS)])
def test_config_check_refuses_what_start_up_would(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys,
                                                  content: str | bytes, message: str) -> None:
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", "id")
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "secret")
    path = write(tmp_path, content)
    assert main(["--config.file", str(path), "--config.check"]) == 1
    assert capsys.readouterr().err.splitlines() == ["error: " + message.format(path=path)]


@pytest.mark.parametrize(("env", "file", "message"), [
    ({"ALIBABA_CLOUD_ACCESS_KEY_ID": "AKIDé"}, None, "environment variable ALIBABA_CLOUD_ACCESS_KEY_ID holds a "
                                                     "control or non-ASCII character; a key is printable ASCII"),
    ({"ALIBABA_CLOUD_ACCESS_KEY_SECRET": "se\x1bcret"}, None, "environment variable ALIBABA_CLOUD_ACCESS_KEY_SECRET "
                                                              "holds a control or non-ASCII character"),
    ({}, b"\x00\xff\xfe binary", "cannot read credential file {path}: not UTF-8 text"),
    ({}, "AKID\u200b".encode(), "file {path} holds a control or non-ASCII character"),
    ({}, b"A" * (SECRET_MAX_BYTES + 1), "cannot read credential file {path}: larger than 64 KiB"),
], ids=["env-non-ascii", "env-control", "file-binary", "file-zero-width-space", "file-too-large"])
def test_config_check_refuses_unusable_credentials_without_their_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys, env: dict[str, str], file: bytes | None, message: str
) -> None:
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", "id")
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "secret")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    key_file = write(tmp_path, file, "key_id") if file is not None else None
    extra = f"    credentials:\n      access_key_id_file: {key_file}\n" if key_file else ""
    path = write(tmp_path, SOURCE + extra)
    assert main(["--config.file", str(path), "--config.check"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("error: sources[0].credentials: ")
    assert message.format(path=key_file) in err[0]
    assert not any(secret in err[0] for secret in ("AKID", "se\x1bcret", "binary", "AAAA"))


def test_config_check_refuses_a_listen_address_start_up_would(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              capsys) -> None:
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", "id")
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "secret")
    path = write(tmp_path, SOURCE)
    assert main(["--config.file", str(path), "--config.check", "--web.listen-address", "9810"]) == 1
    assert capsys.readouterr().err.splitlines() == [
        "error: --web.listen-address: expected HOST:PORT such as :9810 or 127.0.0.1:9810, got '9810'"]


@pytest.mark.parametrize(("content", "column"), [("sources: " + "[" * 100_000 + "]" * 100_000, 73),
                                               ("sources: " + "{a: " * 100_000 + "1" + "}" * 100_000, 262)],
                         ids=["list", "map"])
def test_the_command_survives_100000_levels(tmp_path: Path, content: str, column: int) -> None:
    """A process of its own: libyaml's composer would crash this one (SIGSEGV) rather than raise."""
    path = write(tmp_path, content)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ALIBABA_CLOUD_ACCESS_KEY_ID": "id",
           "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "secret"}
    done = subprocess.run([sys.executable, "-m", "exporter", "--config.file", str(path), "--config.check"],
                          capture_output=True, text=True, env=env, timeout=60, check=False)
    assert (done.returncode, done.stderr.splitlines()) == (1, [
        f"error: --config.file: {path} is not valid YAML at line 1, column {column}: nested deeper than 64 levels"])
