"""Schemathesis hooks for `infra/contract_fuzz.py` (loaded through SCHEMATHESIS_HOOKS).

CMCD report bodies (`application/cmcd`, CTA-5004-B's event-mode POST body) and caption files
(`text/vtt`, `application/x-subrip`) are UTF-8 text:
schemathesis sends what it generates for them as it sends `text/plain`.
"""
import schemathesis
from schemathesis.transport.requests import text_serializer


@schemathesis.serializer("application/cmcd")
def cmcd_serializer(ctx, value):
    return text_serializer(ctx, value)


# Caption files (`PUT …/video/captions/{lang}`): WebVTT and SRT are UTF-8 text too.
@schemathesis.serializer("text/vtt", "application/x-subrip")
def caption_serializer(ctx, value):
    return text_serializer(ctx, value)
