"""The agent's whole HTTP surface as an OpenAPI 3.1 document, served at /openapi.json.

tests/test_openapi.py validates it and checks that every route the server registers is in it
(and nothing else), with the error answers each one gives.
"""

from __future__ import annotations

from html import escape
from typing import Any

ERROR = {"$ref": "#/components/schemas/Error"}


def _answer(
    description: str, schema: dict[str, Any] | None = None, kind: str = "application/json"
) -> dict[str, Any]:
    out: dict[str, Any] = {"description": description}
    if schema is not None:
        out["content"] = {kind: {"schema": schema}}
    return out


def _errors(*codes: int) -> dict[str, Any]:
    why = {
        400: "the request does not fit (the reason is in `error`)",
        401: "no valid API key (Authorization: Bearer KEY or X-API-Key)",
        403: "the key lacks this endpoint's scope",
        404: "not found",
        413: "too large",
        415: "not audio this server can read",
        429: "over the key's rate; see Retry-After",
        503: "not now (engines loading, lines busy, queue full); see Retry-After",
    }
    return {str(c): _answer(why[c], ERROR) for c in codes}


def _op(summary: str, scope: str | None, ok: dict[str, Any], *codes: int, **extra: Any) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": {**ok, **_errors(*codes)}, **extra}
    if scope is not None:
        op["security"] = [{"bearer": []}, {"apiKey": []}]
        op["x-scope"] = scope
        op["responses"].update(_errors(401, 403))
    return op


OBJ = {"type": "object"}
CALL = {"$ref": "#/components/schemas/Call"}
ID = [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}]


def html(doc: dict[str, Any]) -> str:
    """The document as a plain page for people (/docs): each route, its scope, its answers."""
    rows = []
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            answers = ", ".join(f"{code} {a['description']}" for code, a in op["responses"].items())
            scope = op.get("x-scope", "none")
            cells = [f"<code>{method.upper()} {escape(path)}</code>", escape(op["summary"]), escape(scope),
                     escape(answers)]  # fmt: skip
            rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return (
        "<!doctype html><meta charset=utf-8><title>voice-agent API</title>"
        "<style>body{font:14px system-ui;margin:2em}td{border-top:1px solid #ddd;padding:4px 8px;"
        "vertical-align:top}</style><h1>voice-agent HTTP API</h1><p>Machine-readable: "
        "<a href=/openapi.json>/openapi.json</a> (OpenAPI 3.1). Keys: <code>Authorization: Bearer KEY</code>"
        " or <code>X-API-Key</code>.</p><table><tr><th>route</th><th>what</th><th>scope</th><th>answers</th>"
        f"</tr>{''.join(rows)}</table>"
    )


def document() -> dict[str, Any]:
    paths: dict[str, Any] = {
        "/healthz": {"get": _op("the process is alive", None, {"200": _answer("alive", OBJ)})},
        "/readyz": {
            "get": _op(
                "ready for calls: models loaded, SIP up, a line free",
                None,
                {"200": _answer("ready", OBJ), "503": _answer("not ready", OBJ)},
            )
        },
        "/metrics": {
            "get": _op(
                "Prometheus metrics",
                None,
                {"200": _answer("text exposition", {"type": "string"}, "text/plain")},
            )
        },
        "/docs": {
            "get": _op(
                "this API as a page for people",
                None,
                {"200": _answer("HTML", {"type": "string"}, "text/html")},
            )
        },
        "/openapi.json": {"get": _op("this document", None, {"200": _answer("OpenAPI 3.1", OBJ)})},
        "/v1/webrtc/offer": {
            "options": _op(
                "CORS preflight (the widget on another origin)", None, {"204": _answer("allowed")}
            ),
            "post": _op(
                "start a web call: an SDP offer in, the answer out (no key; a call token with require_token)",
                None,
                {"200": _answer("the SDP answer", OBJ)},
                400,
                401,
                403,
                404,
                413,
                503,
                requestBody={"required": True, "content": {"application/json": {"schema": OBJ}}},
            ),
        },
        "/v1/webrtc/token": {
            "post": _op(
                "a one-time token for one web call (with webrtc.require_token), for the site's backend",
                "calls:write",
                {"200": _answer("the token", OBJ)},
                400,
                429,
                parameters=[{"name": "to", "in": "query", "schema": {"type": "string"}}],
            )
        },
        "/v1/calls": {
            "get": _op(
                "call records, newest first, paged",
                "calls:read",
                {
                    "200": _answer(
                        "a page",
                        {
                            "type": "object",
                            "properties": {
                                "calls": {"type": "array", "items": CALL},
                                "next_cursor": {"type": ["string", "null"]},
                            },
                        },
                    )
                },
                400,
                parameters=[
                    {"name": n, "in": "query", "schema": {"type": "string"}}
                    for n in ("since", "until", "dialplan", "result", "limit", "cursor")
                ],
            ),
            "post": _op(
                "place an outgoing call",
                "calls:write",
                {
                    "202": _answer(
                        "placed; follow it by webhooks or GET /v1/calls/{id}",
                        {
                            "type": "object",
                            "properties": {"id": {"type": "string"}, "status": {"const": "queued"}},
                        },
                    )
                },
                400,
                413,
                429,
                503,
                requestBody={
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["to", "dialplan"],
                                "additionalProperties": False,
                                "properties": {
                                    "to": {"type": "string", "pattern": "^(sips?|tel):"},
                                    "dialplan": {"type": "string"},
                                    "variables": {
                                        "type": "object",
                                        "additionalProperties": {"type": ["string", "number"]},
                                    },
                                    "amd": {"type": "boolean", "default": True},
                                },
                            }
                        }
                    },
                },
            ),
        },
        "/v1/calls/{id}": {
            "get": _op(
                "one call with its turns",
                "calls:read",
                {"200": _answer("the record", CALL)},
                404,
                parameters=ID,
            )
        },
        "/v1/calls/{id}/recording": {
            "get": _op(
                "the call's stereo WAV (caller left, agent right)",
                "calls:read",
                {"200": _answer("WAV", {"type": "string", "format": "binary"}, "audio/wav")},
                404,
                parameters=ID,
            )
        },
        "/v1/calls/{id}/transcript": {
            "get": _op(
                "who said what, when",
                "calls:read",
                {"200": _answer("the transcript", OBJ)},
                404,
                parameters=ID,
            )
        },
        "/v1/stt": {
            "post": _op(
                "speech to text: WAV, FLAC, MP3, OGG/Opus or WebM, raw body or multipart (first file)",
                "speech",
                {"200": _answer("the words", {"$ref": "#/components/schemas/Transcript"})},
                400,
                413,
                415,
                503,
                parameters=[
                    {"name": n, "in": "query", "schema": {"type": "string"}} for n in ("prompt", "hotwords")
                ],
                requestBody={
                    "required": True,
                    "content": {
                        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                        "multipart/form-data": {"schema": {"type": "object"}},
                    },
                },
            )
        },
        "/v1/tts": {
            "post": _op(
                "text to speech (X-Duration, X-Latency, X-First-Audio headers; `stream`: chunked WAV)",
                "speech",
                {
                    "200": {
                        "description": "the audio",
                        "content": {
                            "audio/wav": {"schema": {"type": "string", "format": "binary"}},
                            "audio/ogg": {"schema": {"type": "string", "format": "binary"}},
                        },
                    }
                },
                400,
                503,
                requestBody={
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["text"],
                                "properties": {
                                    "text": {"type": "string", "minLength": 1, "maxLength": 2000},
                                    "voice": {"type": "string"},
                                    "format": {"enum": ["wav", "ogg"]},
                                    "stream": {"type": "boolean"},
                                },
                            }
                        }
                    },
                },
            )
        },
        "/v1/voices": {
            "get": _op("the voices TTS can speak in", "speech", {"200": _answer("voices", OBJ)}, 503)
        },
        "/v1/models": {"get": _op("the engines' models", "speech", {"200": _answer("models", OBJ)}, 503)},
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "voice-agent",
            "version": "2",
            "description": "An offline phone voice agent's HTTP API.",
        },
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            },
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {"error": {"type": "string"}},
                },
                "Call": {
                    "type": "object",
                    "properties": {
                        k: {"type": ["string", "number", "boolean", "object", "array", "null"]}
                        for k in (
                            "id",
                            "direction",
                            "transport",
                            "from_uri",
                            "to_uri",
                            "dialplan",
                            "offered",
                            "answered",
                            "ended",
                            "duration_s",
                            "result",
                            "answered_by",
                            "cut_off",
                            "transfer",
                            "summary",
                            "fields",
                            "message",
                            "turns",
                        )
                    },
                },
                "Transcript": {
                    "type": "object",
                    "properties": {
                        "text": {"type": "string"},
                        "segments": {"type": "array"},
                        "language": {"type": "string"},
                        "duration_s": {"type": ["number", "null"]},
                        "processing_s": {"type": ["number", "null"]},
                        "confidence": {"type": ["number", "null"]},
                    },
                },
            },
        },
    }
