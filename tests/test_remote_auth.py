"""Authentication against real registries (htpasswd Basic, bearer tokens) and the keychain."""

from __future__ import annotations

import base64
import json
import logging
import os
import stat
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pycrane.errors import AuthenticationError, PermissionDenied
from pycrane.name import Repository, parse_reference
from pycrane.random import random_image
from pycrane.remote import Client, Credential, Keychain, StaticKeychain
from pycrane.remote._challenge import parse_challenges, pick_challenge
from pycrane.remote._retry import RetryPolicy, parse_retry_after
from pycrane.remote._transport import redact_url
from tests.tokenserver import TokenServer

FAST = RetryPolicy(backoff=0.01, max_backoff=0.05)


def creds_for(reg: Any, **kw: Any) -> StaticKeychain:
    cred = Credential(reg.username, reg.password, **kw) if kw or reg.username else Credential()
    return StaticKeychain({reg.host: cred})


# -- challenge parsing (pure) ---------------------------------------------------------


def test_parse_several_challenges_with_quoted_commas() -> None:
    chs = parse_challenges(
        [
            'Basic realm="a, b", Bearer realm="https://auth.example/token",'
            'service="reg.example",scope="repository:a:pull,push repository:b:pull",'
            'error="insufficient_scope"',
            "Negotiate",
        ]
    )
    assert [c.scheme for c in chs] == ["basic", "bearer", "negotiate"]
    assert chs[0].realm == "a, b"
    assert chs[1].service == "reg.example"
    assert chs[1].scopes == ["repository:a:pull,push", "repository:b:pull"]
    assert chs[1].error == "insufficient_scope"
    assert pick_challenge(chs) is chs[1]
    assert pick_challenge(parse_challenges(['Basic realm="x"'])).scheme == "basic"  # type: ignore[union-attr]
    assert pick_challenge(parse_challenges(["NTLM", "Negotiate"])) is None


def test_parse_escaped_quotes_and_case() -> None:
    (ch,) = parse_challenges(['BEARER Realm="https://x/t?a=\\"b\\"",  Service=svc'])
    assert ch.scheme == "bearer"
    assert ch.realm == 'https://x/t?a="b"'
    assert ch.service == "svc"


def test_retry_after_forms() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("garbage") is None
    import time
    from email.utils import formatdate

    v = parse_retry_after(formatdate(time.time() + 30, usegmt=True))
    assert v is not None and 20 < v <= 31
    assert RetryPolicy(max_retry_after=5).delay(0, "100") == 5


def test_redact_url_hides_secrets() -> None:
    u = redact_url("https://user:pw@h/token?service=s&access_token=abc&_state=xyz&scope=a")
    assert "pw" not in u and "abc" not in u and "xyz" not in u
    assert "service=s" in u and "scope=a" in u


# -- htpasswd -------------------------------------------------------------------------


@pytest.mark.distribution
def test_basic_auth_push_pull(distribution_htpasswd: Any) -> None:
    reg = distribution_htpasswd
    c = Client(keychain=creds_for(reg), retry=FAST)
    img = random_image(1, 100, seed=21)
    c.write_image(f"{reg.host}/basic/img:v", img)
    assert c.image(f"{reg.host}/basic/img:v").digest() == img.digest()


@pytest.mark.distribution
def test_basic_auth_wrong_password_is_one_line(distribution_htpasswd: Any) -> None:
    reg = distribution_htpasswd
    c = Client(auth=Credential(reg.username, "wrong"), retry=FAST)
    with pytest.raises(AuthenticationError) as ei:
        c.get(f"{reg.host}/basic/img:v")
    msg = str(ei.value)
    assert "\n" not in msg
    assert "401" in msg and "repository:basic/img:pull" in msg
    assert "wrong" not in msg
    anon = Client(auth=Credential(), retry=FAST)
    with pytest.raises(AuthenticationError):
        anon.get(f"{reg.host}/basic/img:v")


# -- bearer tokens ----------------------------------------------------------------------


@pytest.mark.distribution
def test_token_auth_push_pull_and_token_reuse(distribution_token: Any) -> None:
    reg = distribution_token
    ts: TokenServer = reg.token_server
    c = Client(keychain=creds_for(reg), retry=FAST)
    img = random_image(3, 200, seed=22)
    before = len(ts.requests)
    c.write_image(f"{reg.host}/tok/img:v", img)
    pushed = ts.requests[before:]
    assert pushed and all(r.status == 200 and r.user == reg.username for r in pushed)
    assert any("repository:tok/img:pull,push" in r.scopes for r in pushed)
    # One exchange for the whole push: the push scope is asked for up front.
    assert len(pushed) == 1
    before = len(ts.requests)
    got = c.image(f"{reg.host}/tok/img:v")
    for layer in got.layers():
        with layer.compressed() as r:
            while r.read(1 << 16):
                pass
    assert len(ts.requests) == before  # the push token also serves pulls


@pytest.mark.distribution
def test_anonymous_token_may_pull_not_push(distribution_token: Any) -> None:
    reg = distribution_token
    owner = Client(keychain=creds_for(reg), retry=FAST)
    img = random_image(1, 64, seed=23)
    owner.write_image(f"{reg.host}/tok/public:v", img)
    anon = Client(auth=Credential(), retry=FAST)
    assert anon.image(f"{reg.host}/tok/public:v").digest() == img.digest()
    with pytest.raises((AuthenticationError, PermissionDenied)) as ei:
        anon.write_image(f"{reg.host}/tok/public:w", random_image(1, 64, seed=24))
    assert "push" in str(ei.value)


@pytest.mark.distribution
def test_token_mount_widens_scope(distribution_token: Any) -> None:
    reg = distribution_token
    ts: TokenServer = reg.token_server
    c = Client(keychain=creds_for(reg), retry=FAST)
    img = random_image(2, 512, seed=25)
    c.write_image(f"{reg.host}/tok/msrc:v", img)
    before = len(ts.requests)
    c.copy(f"{reg.host}/tok/msrc:v", f"{reg.host}/tok/mdst:v")
    scopes = [s for r in ts.requests[before:] for s in r.scopes]
    assert "repository:tok/msrc:pull" in scopes
    assert "repository:tok/mdst:pull,push" in scopes
    assert c.get(f"{reg.host}/tok/mdst:v").raw == img.raw_manifest()


@pytest.mark.distribution
def test_identity_token_uses_oauth_post(distribution_token: Any) -> None:
    reg = distribution_token
    ts: TokenServer = reg.token_server
    refresh = ts.issue_refresh_token(reg.username)
    c = Client(auth=Credential(identity_token=refresh), retry=FAST)
    before = len(ts.requests)
    img = random_image(1, 64, seed=26)
    c.write_image(f"{reg.host}/tok/oauth:v", img)
    grants = {r.grant for r in ts.requests[before:]}
    assert grants == {"refresh_token"}


@pytest.mark.distribution
def test_identity_token_falls_back_to_get_on_404(distribution_factory: Any, tmp_path: Path) -> None:
    ts = TokenServer(tmp_path / "ts", users={"u": "p"}, post_not_found=True, access_token_only=True)
    ts.start()
    reg = distribution_factory("token", token_server=ts)
    c = Client(auth=Credential("u", "p", identity_token="whatever"), retry=FAST)
    img = random_image(1, 64, seed=27)
    c.write_image(f"{reg.host}/fb/img:v", img)
    methods = {(r.method, r.status) for r in ts.requests}
    assert ("POST", 404) in methods and ("GET", 200) in methods


@pytest.mark.distribution
def test_token_refused_by_token_server(distribution_token: Any) -> None:
    reg = distribution_token
    c = Client(auth=Credential(reg.username, "nope"), retry=FAST)
    with pytest.raises(AuthenticationError, match="token server refused") as ei:
        c.get(f"{reg.host}/tok/img:v")
    assert "nope" not in str(ei.value)


@pytest.mark.distribution
def test_cli_token_helper(distribution_token: Any) -> None:
    reg = distribution_token
    c = Client(keychain=creds_for(reg), retry=FAST)
    tok = c.token(Repository.parse(f"{reg.host}/tok/x"), push=True)
    assert tok.token.count(".") == 2 and tok.expires_in > 0
    assert tok.as_dict()["scopes"] == ["repository:tok/x:pull,push"]


@pytest.mark.distribution
def test_debug_log_never_contains_credentials(
    distribution_token: Any, caplog: pytest.LogCaptureFixture
) -> None:
    reg = distribution_token
    c = Client(keychain=creds_for(reg), retry=FAST)
    with caplog.at_level(logging.DEBUG, logger="pycrane.remote"):
        c.write_image(f"{reg.host}/tok/log:v", random_image(1, 64, seed=28))
    text = caplog.text
    assert "PUT" in text and "/v2/tok/log/manifests/v" in text
    assert reg.password not in text
    assert "Bearer" not in text and "Basic" not in text
    encoded = base64.b64encode(f"{reg.username}:{reg.password}".encode()).decode()
    assert encoded not in text


# -- keychain -----------------------------------------------------------------------------


def test_keychain_reads_docker_config_forms(tmp_path: Path) -> None:
    cfg = tmp_path / "docker" / "config.json"
    cfg.parent.mkdir()
    cfg.write_text(
        json.dumps(
            {
                "auths": {
                    "https://index.docker.io/v1/": {
                        "auth": base64.b64encode(b"hubuser:hubpass").decode()
                    },
                    "reg.example:5000": {"username": "u", "password": "p"},
                    "tok.example": {"identitytoken": "refresh-me"},
                    "http://legacy.example/v1/": {"auth": base64.b64encode(b"l:q").decode()},
                }
            }
        )
    )
    kc = Keychain(env={"DOCKER_CONFIG": str(cfg.parent), "HOME": str(tmp_path)})
    assert kc.resolve("index.docker.io") == Credential("hubuser", "hubpass")
    assert kc.resolve("reg.example:5000") == Credential("u", "p")
    assert kc.resolve("tok.example").identity_token == "refresh-me"
    assert kc.resolve("legacy.example") == Credential("l", "q")
    assert kc.resolve("other.example").anonymous
    assert "hubpass" not in repr(kc.resolve("index.docker.io"))


def test_keychain_order_and_containers_auth(tmp_path: Path) -> None:
    auth = tmp_path / "run" / "containers" / "auth.json"
    auth.parent.mkdir(parents=True)
    auth.write_text(
        json.dumps(
            {
                "auths": {
                    "quay.example/org/app": {"auth": base64.b64encode(b"repo:level").decode()},
                    "quay.example": {"auth": base64.b64encode(b"reg:level").decode()},
                }
            }
        )
    )
    kc = Keychain(env={"HOME": str(tmp_path), "XDG_RUNTIME_DIR": str(tmp_path / "run")})
    assert kc.resolve("quay.example", "org/app") == Credential("repo", "level")
    assert kc.resolve("quay.example", "org/other") == Credential("reg", "level")
    explicit = tmp_path / "explicit.json"
    explicit.write_text(json.dumps({"auths": {"quay.example": {"username": "e", "password": "x"}}}))
    kc2 = Keychain(
        env={
            "HOME": str(tmp_path),
            "XDG_RUNTIME_DIR": str(tmp_path / "run"),
            "REGISTRY_AUTH_FILE": str(explicit),
        }
    )
    assert kc2.resolve("quay.example") == Credential("e", "x")


def test_keychain_bad_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{not json")
    kc = Keychain(env={"DOCKER_CONFIG": str(tmp_path), "HOME": str(tmp_path)})
    with pytest.raises(AuthenticationError, match=r"config\.json: not valid JSON"):
        kc.resolve("x.example")


@pytest.fixture
def helper_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fake ``docker-credential-test`` helper backed by a JSON file."""
    if sys.platform == "win32":
        pytest.skip("shell-script credential helper")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    store = tmp_path / "store.json"
    store.write_text("{}")
    script = bindir / "docker-credential-test"
    script.write_text(
        textwrap.dedent(
            f"""\
            #!{sys.executable}
            import json, sys
            store = {str(store)!r}
            data = json.load(open(store))
            action = sys.argv[1]
            if action == "get":
                key = sys.stdin.read().strip()
                if key not in data:
                    print("credentials not found in native keychain")
                    sys.exit(1)
                print(json.dumps({{"ServerURL": key, **data[key]}}))
            elif action == "store":
                obj = json.load(sys.stdin)
                data[obj["ServerURL"]] = {{"Username": obj["Username"], "Secret": obj["Secret"]}}
                json.dump(data, open(store, "w"))
            elif action == "erase":
                data.pop(sys.stdin.read().strip(), None)
                json.dump(data, open(store, "w"))
            """
        )
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    return store.parent


def test_cred_helpers_and_store(tmp_path: Path, helper_dir: Path) -> None:
    cfgdir = tmp_path / "dc"
    cfgdir.mkdir()
    (cfgdir / "config.json").write_text(json.dumps({"credsStore": "test"}))
    kc = Keychain(env={"DOCKER_CONFIG": str(cfgdir), "HOME": str(tmp_path)})
    assert kc.resolve("reg.example").anonymous
    kc.login("reg.example", "alice", "s3cret")
    written = json.loads((cfgdir / "config.json").read_text())
    assert written["credsStore"] == "test"
    assert written["auths"]["reg.example"] == {}  # secret went to the helper, not the file
    assert "s3cret" not in (cfgdir / "config.json").read_text()
    assert kc.resolve("reg.example") == Credential("alice", "s3cret")
    assert kc.logout("reg.example")
    assert kc.resolve("reg.example").anonymous
    # credHelpers per registry, and "<token>" usernames are identity tokens.
    store = json.loads((helper_dir / "store.json").read_text())
    store["tok.example"] = {"Username": "<token>", "Secret": "refresh"}
    (helper_dir / "store.json").write_text(json.dumps(store))
    (cfgdir / "config.json").write_text(json.dumps({"credHelpers": {"tok.example": "test"}}))
    assert kc.resolve("tok.example") == Credential(identity_token="refresh")


def test_login_logout_plain_file(tmp_path: Path) -> None:
    kc = Keychain(env={"DOCKER_CONFIG": str(tmp_path / "new"), "HOME": str(tmp_path)})
    path = kc.login("docker.io", "me", "pw")
    data = json.loads(path.read_text())
    assert base64.b64decode(data["auths"]["https://index.docker.io/v1/"]["auth"]) == b"me:pw"
    if sys.platform != "win32":
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0
    assert kc.resolve("index.docker.io") == Credential("me", "pw")
    assert kc.logout("index.docker.io")
    assert not kc.logout("index.docker.io")
    assert kc.resolve("index.docker.io").anonymous


# -- property tests for the challenge parser ----------------------------------------------


_token = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~+!#$%&'*^`|",
    min_size=1,
    max_size=12,
)
_value = st.text(
    alphabet=st.characters(min_codepoint=32, max_codepoint=126), min_size=0, max_size=30
)


def _quote(v: str) -> str:
    return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            _token,
            st.dictionaries(_token.map(str.lower), _value, max_size=4),
        ),
        min_size=1,
        max_size=3,
    ),
    st.sampled_from([",", ", ", " , "]),
)
def test_challenges_round_trip(challenges: list[tuple[str, dict[str, str]]], sep: str) -> None:
    header = sep.join(
        f"{scheme} " + sep.join(f"{k}={_quote(v)}" for k, v in params.items())
        for scheme, params in challenges
    )
    parsed = parse_challenges([header])
    assert [(c.scheme, c.params) for c in parsed] == [
        (scheme.lower(), params) for scheme, params in challenges
    ]


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_challenge_parser_never_crashes(text: str) -> None:
    for ch in parse_challenges([text]):
        assert ch.scheme == ch.scheme.lower()


@pytest.mark.distribution
def test_oversized_token_response_is_refused(distribution_factory: Any, tmp_path: Path) -> None:
    ts = TokenServer(tmp_path / "ts", users={"u": "p"}, padding=70 * 1024)
    ts.start()
    reg = distribution_factory("token", token_server=ts)
    with pytest.raises(AuthenticationError, match="larger than 65536 bytes"):
        Client(auth=Credential("u", "p"), retry=FAST).get(f"{reg.host}/big/token:v")


def test_link_header_parsing() -> None:
    from pycrane.remote._list import next_link as _next_link
    from pycrane.remote._pusher import _with_digest
    from pycrane.v1.digest import Digest

    cur = "http://r:5000/v2/a/tags/list?n=2"
    assert (
        _next_link(['</v2/a/tags/list?n=2&last=b>; rel="next"'], cur)
        == "http://r:5000/v2/a/tags/list?n=2&last=b"
    )
    assert _next_link(['<http://other/x>; rel="prev"'], cur) is None
    assert _next_link([], cur) is None
    d = Digest.from_bytes(b"x")
    assert _with_digest("http://r/up/1?_state=s", d) == f"http://r/up/1?_state=s&digest={d}"
    assert _with_digest("http://r/up/1", d) == f"http://r/up/1?digest={d}"


@pytest.mark.distribution
def test_token_catalog_tags_and_delete(distribution_token: Any) -> None:
    reg = distribution_token
    c = Client(keychain=creds_for(reg), retry=FAST)
    img = random_image(1, 64, seed=29)
    c.write_image(f"{reg.host}/tok/del:v", img)
    assert "tok/del" in c.catalog(reg.host)
    assert c.list_tags(f"{reg.host}/tok/del") == ["v"]
    assert c.delete(f"{reg.host}/tok/del:v") == img.digest()
    assert c.exists(f"{reg.host}/tok/del@{img.digest()}") is None
    scopes = {s for r in reg.token_server.requests for s in r.scopes}
    assert "registry:catalog:*" in scopes and "repository:tok/del:pull,push,delete" in scopes


def test_token_scope_cover() -> None:
    from pycrane.remote._auth import _covers

    assert _covers(("repository:a:pull,push",), ("repository:a:pull",))
    assert _covers(("repository:a:pull,push", "repository:b:pull"), ("repository:b:pull",))
    assert not _covers(("repository:a:pull",), ("repository:a:pull,push",))
    assert not _covers(("repository:a:pull,push",), ("repository:b:pull",))
    assert _covers(("registry:catalog:*",), ("registry:catalog:*",))
    assert not _covers((), ("repository:a:pull",))


def test_basic_auth_against_pycrane_registry(request: pytest.FixtureRequest) -> None:
    try:
        factory = request.getfixturevalue("pycrane_registry_factory")
    except pytest.FixtureLookupError:
        pytest.skip("pycrane's registry plugin is not available")
    reg = factory(username="alice", password="s3cret")
    img = random_image(2, 500, seed=40)
    c = Client(auth=Credential("alice", "s3cret"), retry=FAST)
    c.write_image(f"{reg.host}/basic/pyc:v", img)
    assert c.image(f"{reg.host}/basic/pyc:v").digest() == img.digest()
    with pytest.raises(AuthenticationError):
        Client(auth=Credential("alice", "nope"), retry=FAST).get(f"{reg.host}/basic/pyc:v")


@pytest.mark.distribution
def test_revoked_token_is_refreshed_once(distribution_token: Any) -> None:
    reg = distribution_token
    ts: TokenServer = reg.token_server
    c = Client(keychain=creds_for(reg), retry=FAST)
    img = random_image(1, 64, seed=41)
    c.write_image(f"{reg.host}/tok/revoke:v", img)
    sess = c.session(parse_reference(f"{reg.host}/tok/revoke:v").registry)
    for tok in sess._tokens.values():
        tok.value = tok.value[:-4] + "AAAA"  # as if the server had revoked it
    before = len(ts.requests)
    assert c.get(f"{reg.host}/tok/revoke:v").raw == img.raw_manifest()
    assert len(ts.requests) - before == 1


def test_redirect_guard() -> None:
    from pycrane.remote._transport import redirect_refused

    assert redirect_refused("reg.example", "https://storage.example/blob") is None
    assert redirect_refused("reg.example", "https://reg.example/v2/x") is None
    assert "private" in (redirect_refused("reg.example", "http://169.254.169.254/latest") or "")
    assert "private" in (redirect_refused("reg.example", "http://127.0.0.1:8080/") or "")
    assert "private" in (redirect_refused("reg.example", "http://[::1]/") or "")
    assert "non-HTTP" in (redirect_refused("reg.example", "file:///etc/passwd") or "")
    # A registry on a private network may redirect within it.
    assert redirect_refused("127.0.0.1:5000", "http://127.0.0.1:9000/blob") is None
    assert redirect_refused("10.0.0.5:5000", "http://10.0.0.6/blob") is None


def test_static_keychain_never_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    kc = StaticKeychain({})
    kc.login("reg.example", "u", "p")
    assert kc.resolve("REG.example") == Credential("u", "p")
    assert not (tmp_path / "config.json").exists()
    assert kc.logout("reg.example") and kc.resolve("reg.example").anonymous
