"""`--web.config.file`: TLS and basic authentication, over real sockets."""

from __future__ import annotations

import base64
import ssl
import subprocess
from pathlib import Path

import bcrypt
import httpx
import pytest

from exporter.cli import main
from exporter.config import ConfigError
from exporter.webconfig import BasicAuth, load_web_config
from tests.helpers import maxcompute_exporter, running_exporter

HASH = bcrypt.hashpw(b"scrape-pass", bcrypt.gensalt(4)).decode().replace("$2b$", "$2y$", 1)


def exporter():
    return maxcompute_exporter("http://127.0.0.1:9", interval="1h", snapshot_interval="1h", job_info_interval="1h")


async def test_basic_auth_rejects_missing_and_wrong_passwords(tmp_path: Path) -> None:
    web_file = tmp_path / "web.yml"
    web_file.write_text(f"basic_auth_users:\n  prometheus: '{HASH}'\n")
    web = load_web_config(web_file)
    async with running_exporter(exporter(), web=web) as url, httpx.AsyncClient() as client:
        assert (await client.get(url + "/metrics")).status_code == 401
        assert (await client.get(url + "/metrics", auth=("prometheus", "wrong"))).status_code == 401
        assert (await client.get(url + "/metrics", auth=("nobody", "scrape-pass"))).status_code == 401
        good = await client.get(url + "/metrics", auth=("prometheus", "scrape-pass"))
        assert good.status_code == 200 and b"cloud_job_exporter_build_info" in good.content
        assert (await client.get(url + "/", auth=("prometheus", "scrape-pass"))).status_code == 200
        garbage = await client.get(url + "/metrics", headers={"Authorization": "Basic " +
                                                               base64.b64encode(b"no-colon").decode()})
        assert garbage.status_code == 401 and garbage.headers["www-authenticate"].startswith("Basic")


async def test_a_password_longer_than_bcrypt_reads_is_refused_not_an_error(tmp_path: Path) -> None:
    web_file = tmp_path / "web.yml"
    web_file.write_text(f"basic_auth_users:\n  prometheus: '{HASH}'\n")
    async with running_exporter(exporter(), web=load_web_config(web_file)) as url, httpx.AsyncClient() as client:
        for password in ("scrape-pass" + "x" * 100, "é" * 40):  # 111 and 80 bytes
            response = await client.get(url + "/metrics", auth=("prometheus", password))
            assert response.status_code == 401 and response.headers["www-authenticate"].startswith("Basic")


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_an_unknown_user_is_checked_by_bcrypt_as_a_known_one_is(monkeypatch: pytest.MonkeyPatch) -> None:
    """Answered at once, an unknown user would tell which users exist: it must cost what a wrong password does."""
    costly = bcrypt.hashpw(b"scrape-pass", bcrypt.gensalt(6)).decode()
    auth = BasicAuth({"prometheus": HASH, "grafana": costly})
    checked: list[bytes] = []
    real = bcrypt.checkpw
    monkeypatch.setattr(bcrypt, "checkpw", lambda password, hashed: checked.append(hashed) or real(password, hashed))
    for user, password in (("nobody", "scrape-pass"), ("prometheus", "wrong"), ("prometheus", "x" * 73)):
        assert auth.known(_basic(user, password)) is None, "it waits for bcrypt, in the same pool"
        assert auth.check(_basic(user, password)) is False
    unknown, wrong, too_long = checked
    assert unknown.startswith(b"$2b$06$") and unknown != costly.encode(), "a dummy hash of the highest cost"
    assert wrong == HASH.encode() and too_long == unknown
    assert auth.check(_basic("grafana", "scrape-pass")) is True
    assert auth.known(_basic("no-colon", "")[:-4]) is False, "a malformed header needs no bcrypt"


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def _self_signed(tmp_path: Path, name: str, *extra: str) -> tuple[Path, Path]:
    """Returns (certificate, key) of a new self-signed key pair (a server's own, or a CA's)."""
    cert, key = tmp_path / f"{name}.crt", tmp_path / f"{name}.key"
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", f"/CN={name}", *extra,
             "-keyout", str(key), "-out", str(cert))
    return cert, key


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    return _self_signed(tmp_path, "127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1")


async def test_tls_serves_https(tmp_path: Path, certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    web_file = tmp_path / "web.yml"
    web_file.write_text(f"tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n")
    web = load_web_config(web_file)
    async with running_exporter(exporter(), web=web) as url:
        assert url.startswith("https://")
        context = ssl.create_default_context(cafile=str(cert))
        async with httpx.AsyncClient(verify=context) as client:
            assert (await client.get(url + "/-/healthy")).status_code == 200
        async with httpx.AsyncClient() as plain:
            with pytest.raises(httpx.TransportError):
                await plain.get(url.replace("https://", "http://") + "/-/healthy")


def _signed(tmp_path: Path, name: str, ca: tuple[Path, Path], *extra: str) -> tuple[Path, Path]:
    """Returns (certificate, key) of a new key pair signed by the CA (certificate, key)."""
    cert, key, csr = tmp_path / f"{name}.crt", tmp_path / f"{name}.key", tmp_path / f"{name}.csr"
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout", str(key), "-out", str(csr))
    ext = tmp_path / f"{name}.ext"
    ext.write_text("\n".join(extra) + "\n")
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca[0]), "-CAkey", str(ca[1]), "-CAcreateserial",
             "-days", "1", "-extfile", str(ext), "-out", str(cert))
    return cert, key


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, tuple[Path, Path]]:
    """A CA with a server certificate for 127.0.0.1 and a client certificate, and a client certificate of another
    CA."""
    ca, other = _self_signed(tmp_path, "ca"), _self_signed(tmp_path, "other-ca")
    return {
        "ca": ca,
        "server": _signed(tmp_path, "server", ca, "subjectAltName=IP:127.0.0.1"),
        "client": _signed(tmp_path, "client", ca, "extendedKeyUsage=clientAuth"),
        "stranger": _signed(tmp_path, "stranger", other, "extendedKeyUsage=clientAuth"),
    }


def _mtls_config(tmp_path: Path, pki: dict[str, tuple[Path, Path]], auth_type: str):
    web_file = tmp_path / "web.yml"
    (cert, key), (ca, _) = pki["server"], pki["ca"]
    web_file.write_text(f"tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n"
                        f"  client_auth_type: {auth_type}\n  client_ca_file: {ca}\n")
    return load_web_config(web_file)


async def _get(url: str, pki: dict[str, tuple[Path, Path]], client: str | None) -> int:
    """Returns the status of GET url over TLS, presenting the named client certificate (or none)."""
    context = ssl.create_default_context(cafile=str(pki["ca"][0]))
    if client:
        context.load_cert_chain(*map(str, pki[client]))
    async with httpx.AsyncClient(verify=context) as http:
        return (await http.get(url)).status_code


async def test_mutual_tls_requires_a_client_certificate_of_the_configured_ca(
    tmp_path: Path, pki: dict[str, tuple[Path, Path]]
) -> None:
    web = _mtls_config(tmp_path, pki, "RequireAndVerifyClientCert")
    async with running_exporter(exporter(), web=web) as url:
        assert await _get(url + "/metrics", pki, "client") == 200
        for client in (None, "stranger"):
            with pytest.raises(httpx.TransportError):
                await _get(url + "/metrics", pki, client)


async def test_verify_if_given_lets_clients_without_a_certificate_in(
    tmp_path: Path, pki: dict[str, tuple[Path, Path]]
) -> None:
    web = _mtls_config(tmp_path, pki, "VerifyClientCertIfGiven")
    async with running_exporter(exporter(), web=web) as url:
        assert await _get(url + "/-/healthy", pki, None) == 200
        assert await _get(url + "/-/healthy", pki, "client") == 200
        with pytest.raises(httpx.TransportError):
            await _get(url + "/-/healthy", pki, "stranger")


# Any file that exists will do for the certificate and key: these configs fail before they are read.
TLS_FILES = f"tls_server_config:\n  cert_file: {__file__}\n  key_file: {__file__}\n"
NOT_BCRYPT = ("not a whole bcrypt hash: expected $2y$, a cost from 04 to 31, $ and 53 characters of ./A-Za-z0-9 (60 "
              "in all, as `htpasswd -nBC 10` writes)")


@pytest.mark.parametrize(("content", "message"), [
    ("basic_auth_users:\n  bob: hunter2\n", "--web.config.file: basic_auth_users.bob: expected a bcrypt hash "
     "($2y$..., $2b$... or $2a$...), not a plain password"),
    ("basic_auth_users:\n  bob: $2y$10$garbage\n", f"--web.config.file: basic_auth_users.bob: {NOT_BCRYPT}"),
    (f"basic_auth_users:\n  ok: '{HASH}'\n  bob: '{HASH[:-1]}'\n",
     f"--web.config.file: basic_auth_users.bob: {NOT_BCRYPT}"),
    (f"basic_auth_users:\n  bob: '{HASH[:4]}03{HASH[6:]}'\n", f"--web.config.file: basic_auth_users.bob: {NOT_BCRYPT}"),
    (f"basic_auth_users:\n  bob: '{HASH[:7]}{'Z' * 53}'\n",  # bcrypt refuses a salt whose last character is Z
     f"--web.config.file: basic_auth_users.bob: {NOT_BCRYPT}"),
    ("tls_server_config:\n  cert_file: /nope.crt\n  key_file: /nope.key\n",
     "--web.config.file: tls_server_config.cert_file: no such file /nope.crt"),
    ("tls_config:\n  cert_file: x\n", "--web.config.file: tls_config: unknown key; remove it or check its spelling"),
    (TLS_FILES + "  client_auth_type: RequireAnyClientCert\n  client_ca_file: " + __file__ + "\n",
     "--web.config.file: tls_server_config.client_auth_type: expected one of NoClientCert, VerifyClientCertIfGiven, "
     "RequireAndVerifyClientCert, got 'RequireAnyClientCert' (RequestClientCert and RequireAnyClientCert accept a "
     "certificate without verifying it, which is not supported)"),
    (TLS_FILES + "  client_auth_type: RequireAndVerifyClientCert\n",
     "--web.config.file: tls_server_config: client_auth_type RequireAndVerifyClientCert needs client_ca_file, the CA "
     "certificates (PEM) that clients' certificates are verified against"),
    (TLS_FILES + f"  client_ca_file: {__file__}\n",
     "--web.config.file: tls_server_config: client_ca_file is set but client_auth_type is NoClientCert: set "
     "client_auth_type to RequireAndVerifyClientCert (or VerifyClientCertIfGiven), or remove client_ca_file"),
    (TLS_FILES + "  client_auth_type: VerifyClientCertIfGiven\n  client_ca_file: /nope-ca.crt\n",
     "--web.config.file: tls_server_config.client_ca_file: no such file /nope-ca.crt"),
])
def test_bad_web_config_names_the_key(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "web.yml"
    path.write_text(content)
    with pytest.raises(ConfigError) as info:
        load_web_config(path)
    assert str(info.value) == message
    assert "hunter2" not in str(info.value)


def test_cli_stops_on_a_bad_web_config(tmp_path: Path, capsys) -> None:
    path = tmp_path / "web.yml"
    path.write_text("basic_auth_users: [1]\n")
    assert main(["--demo", "--web.config.file", str(path)]) == 1
    assert capsys.readouterr().err.startswith("error: --web.config.file: basic_auth_users:")


def _garbage(tmp_path: Path) -> Path:
    path = tmp_path / "garbage.pem"
    path.write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
    return path


TLS_REFUSALS = {
    "garbage cert": "tls_server_config.cert_file: {garbage} holds no PEM certificate",
    "key as cert": "tls_server_config.cert_file: {key} holds no PEM certificate",
    "garbage key": "tls_server_config.key_file: {garbage} holds no PEM private key",
    "another key": "tls_server_config.key_file: {other_key} is not the key of the certificate in cert_file {cert}",
    "encrypted key": "tls_server_config.key_file: {encrypted} is encrypted; give the key unencrypted (`openssl pkey "
                     "-in KEY -out PLAIN`)",
    "garbage client CA": "tls_server_config.client_ca_file: {garbage} holds no PEM certificate",
}


@pytest.mark.parametrize("case", TLS_REFUSALS)
def test_tls_files_that_do_not_load_are_refused_naming_the_key(
    tmp_path: Path, certificate: tuple[Path, Path], case: str
) -> None:
    cert, key = certificate
    garbage, (_, other_key) = _garbage(tmp_path), _self_signed(tmp_path, "other")
    encrypted = tmp_path / "encrypted.key"
    _openssl("pkey", "-in", str(key), "-aes128", "-passout", "pass:secret", "-out", str(encrypted))
    files = {
        "garbage cert": (garbage, key, None), "key as cert": (key, key, None), "garbage key": (cert, garbage, None),
        "another key": (cert, other_key, None), "encrypted key": (cert, encrypted, None),
        "garbage client CA": (cert, key, garbage),
    }[case]
    web_file = tmp_path / "web.yml"
    web_file.write_text(f"tls_server_config:\n  cert_file: {files[0]}\n  key_file: {files[1]}\n" + (
        f"  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {files[2]}\n" if files[2] else ""))
    with pytest.raises(ConfigError) as info:
        load_web_config(web_file)
    expected = TLS_REFUSALS[case].format(cert=cert, key=key, garbage=garbage, other_key=other_key, encrypted=encrypted)
    assert str(info.value) == f"--web.config.file: {expected}"
    if case == "garbage cert":
        assert main(["--demo", "--web.config.file", str(web_file)]) == 1


def test_cli_stops_on_an_invalid_hash_with_one_line(tmp_path: Path, capsys) -> None:
    path = tmp_path / "web.yml"
    path.write_text("basic_auth_users:\n  prometheus: $2y$10$garbage\n")
    assert main(["--demo", "--web.config.file", str(path)]) == 1
    assert capsys.readouterr().err == f"error: --web.config.file: basic_auth_users.prometheus: {NOT_BCRYPT}\n"
