"""Request body limits, enforced before a body is parsed: a body over its
operation's limit is answered 413 (problem+json naming the limit) without being
read when its length is declared, and after no more than the limit was read
when it is sent in chunks.

FastAPI parses a JSON body whole before validating it, so without a limit a
client could make the server hold and parse any amount of text.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.problems import problem_response

KIB = 1024
MIB = 1024 * KIB
# Enough for every command but a card batch: the largest field is an
# identifier's attributes, 65,536 characters (393 KB even if all \u-escaped).
DEFAULT_MAX_BODY = 1 * MIB
_WITH_BODY = frozenset({"POST", "PUT", "PATCH"})


class BodyLimit:
    """ASGI middleware: ``default`` bytes for any request body, ``larger``
    limits for the paths that need them (exact path, e.g. card batches)."""

    def __init__(self, app: ASGIApp, default: int = DEFAULT_MAX_BODY,
                 larger: dict[str, int] | None = None) -> None:
        self.app = app
        self.default = default
        self.larger = dict(larger or {})

    def limit(self, path: str) -> int:
        return self.larger.get(path.rstrip("/") or "/", self.default)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _WITH_BODY:
            await self.app(scope, receive, send)
            return
        limit = self.limit(scope["path"])
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.isdigit():
            if int(declared) > limit:
                await _refuse(scope, receive, send, limit, f"{int(declared):,}")
                return
            await self.app(scope, receive, send)  # the server reads no more
            return
        # No declared length (chunked): read up to the limit before the app.
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > limit:
                await _refuse(scope, receive, send, limit, f"more than {limit:,}")
                return
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


async def _refuse(scope: Scope, receive: Receive, send: Send, limit: int,
                  size: str) -> None:
    response = problem_response(
        413, "content-too-large", f"the request body is {size} bytes; "
        f"{scope['method']} {scope['path']} accepts at most {limit:,}", "body",
        f"at most {limit:,} bytes", headers={"Connection": "close"})
    await response(scope, receive, send)
