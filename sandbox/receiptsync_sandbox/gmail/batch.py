"""Google's batch framing: a multipart/mixed body of application/http requests, answered in kind.

Each part's Content-ID comes back as ``response-<id>``; each part has its own status line. Headers
of the outer request (Authorization) apply to parts that do not set their own.
"""
from __future__ import annotations

import email.parser
import http
import json
import secrets
import urllib.parse
from dataclasses import dataclass
from email import policy

from multidict import CIMultiDict, MultiDict

from .api import ApiAnswer, ApiCall
from .errors import invalid_argument

MAX_PARTS = 100


@dataclass
class BatchPart:
    content_id: str | None
    call: ApiCall


def parse_batch(content_type: str, body: bytes, outer_headers: CIMultiDict) -> list[BatchPart]:
    """The calls in a batch body; 400 (as an ApiError) for a body that is not a usable batch."""
    if not content_type.lower().startswith("multipart/"):
        raise invalid_argument("Batch requests must be multipart/mixed")
    envelope = f"Content-Type: {content_type}\r\n\r\n".encode() + body
    message = email.parser.BytesParser(policy=policy.compat32).parsebytes(envelope)
    if not message.is_multipart():
        raise invalid_argument("Batch body is not multipart")
    parts = message.get_payload()
    if len(parts) > MAX_PARTS:
        raise invalid_argument(f"A batch request may contain at most {MAX_PARTS} calls; got {len(parts)}")
    return [_parse_part(part, outer_headers) for part in parts]


def _parse_part(part, outer_headers: CIMultiDict) -> BatchPart:
    payload = part.get_payload()
    text = (payload if isinstance(payload, str) else "").replace("\r\n", "\n")
    request_line, _, rest = text.lstrip("\n").partition("\n")
    head, _, _body = rest.partition("\n\n")
    verb, target = _request_target(request_line)
    headers = CIMultiDict()
    if "Authorization" in outer_headers:
        headers["Authorization"] = outer_headers["Authorization"]
    for name, value in email.parser.HeaderParser().parsestr(head + "\n\n").items():
        headers[name] = value
    split = urllib.parse.urlsplit(target)
    query = MultiDict(urllib.parse.parse_qsl(split.query, keep_blank_values=True))
    return BatchPart(content_id=part.get("Content-ID"), call=ApiCall(verb, split.path, query, headers))


def _request_target(request_line: str) -> tuple[str, str]:
    pieces = request_line.strip().split(" ")
    if len(pieces) < 2:
        return "GET", "/"  # routes to a 404 for this part alone
    return pieces[0].upper(), pieces[1]


def format_batch(parts: list[BatchPart], answers: list[ApiAnswer]) -> tuple[str, bytes]:
    """(Content-Type, body) of the batch response."""
    boundary = "batch_" + secrets.token_hex(12)
    chunks = []
    for part, answer in zip(parts, answers):
        chunks.append(f"--{boundary}\r\nContent-Type: application/http\r\n")
        if part.content_id:
            chunks.append(f"Content-ID: {_response_id(part.content_id)}\r\n")
        chunks.append("\r\n" + _http_response(answer) + "\r\n")
    chunks.append(f"--{boundary}--\r\n")
    return f"multipart/mixed; boundary={boundary}", "".join(chunks).encode("utf-8")


def _response_id(content_id: str) -> str:
    inner = content_id.strip()
    if inner.startswith("<") and inner.endswith(">"):
        return f"<response-{inner[1:-1]}>"
    return f"response-{inner}"


def _http_response(answer: ApiAnswer) -> str:
    body = json.dumps(answer.body)
    reason = http.HTTPStatus(answer.status).phrase
    lines = [f"HTTP/1.1 {answer.status} {reason}", "Content-Type: application/json; charset=UTF-8"]
    lines += [f"{name}: {value}" for name, value in answer.headers.items()]
    lines.append(f"Content-Length: {len(body.encode('utf-8'))}")
    return "\r\n".join(lines) + "\r\n\r\n" + body
