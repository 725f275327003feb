"""Response headers every answer of the API carries, whatever route or error produced it."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Bodies are JSON, problem+json or octets, and agencies' metadata is quoted in them verbatim
# (a subject may hold "<script>"): no browser may sniff one into HTML.
SECURITY_HEADERS = ((b"x-content-type-options", b"nosniff"),)


class SecurityHeaders:
    """ASGI middleware adding SECURITY_HEADERS to every HTTP response (streamed ones too)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, with_headers)
