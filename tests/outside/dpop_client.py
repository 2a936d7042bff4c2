"""An outside DPoP client (RFC 9449) written with PyJWT and cryptography,
driving a demo server over HTTP as another language's client would.

    python3 dpop_client.py PHASE BASE_URL NOW STATE_FILE

PHASE is `contract` (a bound login and every refusal), `renew` (after the
server's clock moved into the renew window: the renewal keeps the binding)
or `nonce` (a server started with DPOP_NONCE=1). NOW is the server's time;
STATE_FILE carries the token and key from `contract` to `renew`. Exits
non-zero with a message on the first broken promise.
"""

import base64
import hashlib
import json
import sys
import urllib.error
import urllib.parse
import urllib.request
import uuid

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def public_jwk(key):
    public = key.public_key()
    if isinstance(key, ec.EllipticCurvePrivateKey):
        numbers = public.public_numbers()
        return {"kty": "EC", "crv": "P-256",
                "x": b64(numbers.x.to_bytes(32, "big")),
                "y": b64(numbers.y.to_bytes(32, "big"))}
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return {"kty": "OKP", "crv": "Ed25519", "x": b64(raw)}


def thumbprint(jwk):
    members = {"EC": ("crv", "kty", "x", "y"), "OKP": ("crv", "kty", "x")}[jwk["kty"]]
    canonical = json.dumps({m: jwk[m] for m in members}, separators=(",", ":"), sort_keys=True)
    return b64(hashlib.sha256(canonical.encode()).digest())


def alg_of(key):
    return "ES256" if isinstance(key, ec.EllipticCurvePrivateKey) else "EdDSA"


def proof(key, method, url, iat, token=None, nonce=None, headers=None, jti=None, alg=None):
    claims = {"jti": jti or str(uuid.uuid4()), "htm": method, "htu": url, "iat": iat}
    if token is not None:
        claims["ath"] = b64(hashlib.sha256(token.encode()).digest())
    if nonce is not None:
        claims["nonce"] = nonce
    header = {"typ": "dpop+jwt"}
    header.update(headers or {"jwk": public_jwk(key)})
    return jwt.encode(claims, key, algorithm=alg or alg_of(key), headers=header)


class Reply:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    def json(self):
        return json.loads(self.body)

    def challenges(self):
        return self.headers.get_all("WWW-Authenticate") or []


def send(method, url, headers=None, body=None):
    data = body.encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request) as response:
            return Reply(response.status, response.headers, response.read().decode())
    except urllib.error.HTTPError as error:
        return Reply(error.code, error.headers, error.read().decode())


def expect(condition, message):
    if not condition:
        sys.exit("broken promise: " + message)


def payload_of(token):
    segment = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


def login(base, key, iat, nonce=None):
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["DPoP"] = proof(key, "POST", base + "/login", iat, nonce=nonce)
    return send("POST", base + "/login", headers,
                json.dumps({"username": "alice", "password": "wonderland"}))


def me(base, token, dpop=None, scheme="DPoP"):
    headers = {"Authorization": f"{scheme} {token}"}
    if dpop is not None:
        headers["DPoP"] = dpop
    return send("GET", base + "/me", headers)


def other_port(url):
    parts = urllib.parse.urlsplit(url)
    moved = parts._replace(netloc=f"{parts.hostname}:{parts.port + 1}")
    return urllib.parse.urlunsplit(moved)


def refused(reply, error, what):
    expect(reply.status == 401, f"{what}: status {reply.status}")
    joined = " | ".join(reply.challenges())
    expect(f'DPoP error="{error}"' in joined, f"{what}: challenges {joined}")


def contract(base, now, state):
    key = ec.generate_private_key(ec.SECP256R1())
    reply = login(base, key, now)
    expect(reply.status == 200, f"bound login: {reply.status} {reply.body}")
    body = reply.json()
    expect(body["token_type"] == "DPoP", f"token_type {body}")
    expect(reply.headers.get("Set-Cookie") is None, "a bound token set as a cookie")
    token = body["token"]
    expect(payload_of(token)["cnf"]["jkt"] == thumbprint(public_jwk(key)), "cnf.jkt")
    url = base + "/me"

    good = proof(key, "GET", url, now, token)
    reply = me(base, token, good)
    expect(reply.status == 200, f"bound token with its proof: {reply.status}")
    refused(me(base, token, good), "invalid_dpop_proof", "a replayed proof")
    refused(me(base, token), "invalid_dpop_proof", "no proof")
    for what, bad in [
        ("future iat", proof(key, "GET", url, now + 10, token)),
        ("old iat", proof(key, "GET", url, now - 61, token)),
        ("another host", proof(key, "GET", url.replace("127.0.0.1", "localhost"), now, token)),
        ("another port", proof(key, "GET", other_port(url), now, token)),
        ("another scheme", proof(key, "GET", url.replace("http://", "https://"), now, token)),
        ("another method", proof(key, "POST", url, now, token)),
        ("no ath", proof(key, "GET", url, now)),
        ("HMAC", proof(b"a shared secret that is at least 32 bytes", "GET", url, now, token,
                       headers={"jwk": public_jwk(key)}, alg="HS256")),
        ("another key", proof(ec.generate_private_key(ec.SECP256R1()), "GET", url, now, token)),
        ("a private jwk", proof(key, "GET", url, now, token,
                                headers={"jwk": dict(public_jwk(key), d="AAAA")})),
        ("a jti of 1 MiB", proof(key, "GET", url, now, token, jti="j" * (1 << 20))),
    ]:
        if what == "a jti of 1 MiB":
            # Too large for a header most servers take: refused either way.
            try:
                reply = me(base, token, bad)
            except Exception:
                continue
            expect(reply.status in (400, 401, 413, 431), f"{what}: {reply.status}")
            continue
        refused(me(base, token, bad), "invalid_dpop_proof", what)

    # The bound token as a bearer token, or in the cookie: invalid_token,
    # with both challenges.
    reply = me(base, token, proof(key, "GET", url, now, token), scheme="Bearer")
    expect(reply.status == 401, f"bound token as Bearer: {reply.status}")
    joined = " | ".join(reply.challenges())
    expect('Bearer error="invalid_token"' in joined and 'DPoP error="invalid_token"' in joined,
           f"both challenges: {joined}")
    reply = send("GET", url, {"Cookie": f"session={token}"})
    expect(reply.status == 401 and "invalid_token" in " ".join(reply.challenges()),
           f"bound token in the cookie: {reply.status}")

    # Without a proof the login is a bearer one, refused under DPoP.
    reply = login(base, None, now)
    expect(reply.json()["token_type"] == "Bearer", "bearer login")
    bearer = reply.json()["token"]
    reply = me(base, bearer, proof(key, "GET", url, now, bearer))
    expect(reply.status == 401 and 'DPoP error="invalid_token"' in " ".join(reply.challenges()),
           "an unbound token under DPoP")
    expect(me(base, bearer, scheme="Bearer").status == 200, "the bearer token as Bearer")
    # A login proof with a bad signature: 400 or 401 with the error, no token.
    bad = proof(key, "POST", base + "/login", now)
    bad = bad[:-4] + ("AAAA" if not bad.endswith("AAAA") else "BBBB")
    reply = send("POST", base + "/login", {"Content-Type": "application/json", "DPoP": bad},
                 json.dumps({"username": "alice", "password": "wonderland"}))
    expect(reply.status in (400, 401) and reply.json() == {"error": "invalid_dpop_proof"},
           f"bad login proof: {reply.status} {reply.body}")

    # An Ed25519 key binds as well.
    edkey = ed25519.Ed25519PrivateKey.generate()
    reply = login(base, edkey, now)
    edtoken = reply.json()["token"]
    expect(me(base, edtoken, proof(edkey, "GET", url, now, edtoken)).status == 200, "EdDSA")

    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    with open(state, "w") as f:
        json.dump({"token": token, "key": pem}, f)
    print("contract kept")


def renew(base, now, state):
    with open(state) as f:
        saved = json.load(f)
    token = saved["token"]
    key = serialization.load_pem_private_key(saved["key"].encode(), None)
    url = base + "/me"
    reply = me(base, token, proof(key, "GET", url, now, token))
    expect(reply.status == 200, f"renewal request: {reply.status}")
    value = reply.headers.get("Authorization") or ""
    expect(value.startswith("DPoP "), f"renewed under DPoP: {value[:10]!r}")
    renewed = value[len("DPoP "):]
    expect(renewed != token, "a new token")
    expect(payload_of(renewed)["cnf"] == payload_of(token)["cnf"], "the binding kept")
    expect(me(base, renewed, proof(key, "GET", url, now, renewed)).status == 200, "renewed works")
    expect(me(base, renewed, scheme="Bearer").status == 401, "renewed as Bearer")
    print("renewal kept the binding")


def nonce(base, now, state):
    key = ec.generate_private_key(ec.SECP256R1())
    reply = login(base, key, now)
    expect(reply.status in (400, 401) and reply.json() == {"error": "use_dpop_nonce"},
           f"login without a nonce: {reply.status} {reply.body}")
    given = reply.headers.get("DPoP-Nonce")
    expect(given, "a DPoP-Nonce with the refusal")
    reply = login(base, key, now, nonce=given)
    expect(reply.status == 200, f"login with the nonce: {reply.status} {reply.body}")
    token = reply.json()["token"]
    url = base + "/me"
    reply = me(base, token, proof(key, "GET", url, now, token))
    refused(reply, "use_dpop_nonce", "a request without the nonce")
    fresh = reply.headers.get("DPoP-Nonce")
    expect(fresh, "a DPoP-Nonce with the 401")
    reply = me(base, token, proof(key, "GET", url, now, token, nonce=fresh))
    expect(reply.status == 200, f"with the nonce: {reply.status}")
    expect(reply.headers.get("DPoP-Nonce"), "the next nonce sent ahead")
    print("nonce flow kept")


if __name__ == "__main__":
    phase, base, now, state = sys.argv[1], sys.argv[2].rstrip("/"), int(sys.argv[3]), sys.argv[4]
    {"contract": contract, "renew": renew, "nonce": nonce}[phase](base, now, state)
