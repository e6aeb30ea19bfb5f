"""The seed stack's validate service, for `cargo xtask bench` to measure against.

Seed 000 describes an auth service in Flask with PyJWT: `POST /validate {"token": ...}`
decodes an HS256 JWT with a shared secret and answers with the user, or 401 with a
message. This is that service, extended only as far as a fair comparison needs: it
also takes `GET /validate` with a Bearer header (our route does both) and checks
issuer and audience, as spinmesh does. It runs under gunicorn, as the seed would in
production.
"""

import os

import jwt
from flask import Flask, jsonify, request

SECRET_KEY = os.environ["SEED_SECRET_KEY"]
ISSUER = os.environ.get("SEED_ISSUER", "spinmesh")
AUDIENCE = os.environ.get("SEED_AUDIENCE", "spinmesh")

app = Flask(__name__)


def respond(token):
    if not token:
        return jsonify({"message": "Token is missing!"}), 401
    try:
        payload = jwt.decode(
            token, SECRET_KEY, algorithms=["HS256"], issuer=ISSUER, audience=AUDIENCE
        )
    except jwt.ExpiredSignatureError:
        return jsonify({"message": "Token has expired!"}), 401
    except jwt.InvalidTokenError:
        return jsonify({"message": "Invalid token!"}), 401
    return jsonify(
        {
            "valid": True,
            "user_id": payload["sub"],
            "username": payload["username"],
            "roles": payload["roles"],
            "exp": payload["exp"],
            "user": payload["user"],
        }
    ), 200


@app.route("/validate", methods=["POST"])
def validate_body():
    body = request.get_json(silent=True) or {}
    return respond(body.get("token"))


@app.route("/validate", methods=["GET"])
def validate_header():
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return respond(token if scheme.lower() == "bearer" else None)


@app.route("/health", methods=["GET"])
def health():
    return jsonify({"status": "ok"}), 200
