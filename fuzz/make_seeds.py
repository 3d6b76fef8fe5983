#!/usr/bin/env python3
"""Writes the fuzz targets' seed corpora (fuzz/corpus/<target>/) from the real fixtures.

The seeds are what exvid really receives: the API Gateway, S3, EventBridge, stream and Bunny
webhook fixtures of tests/events/, Bunny's published token vectors (../shared/fixtures), and
the heads of small clips made with ffmpeg the way the tests make them (MP4 with `moov` first
and last, MOV, WebM, portrait by rotation). Run once when a fixture changes; the output is
committed (a few KiB per target) so a fuzz run needs neither ffmpeg nor ../shared.
"""

import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EVENTS = ROOT / "tests" / "events"
OUT = ROOT / "fuzz" / "corpus"
VECTORS = ROOT.parent / "shared" / "fixtures" / "bunny-token-vectors.json"


def event(name):
    return json.loads((EVENTS / name).read_text())


def body(name):
    e = event(name)
    raw = e.get("body") or ""
    return base64.b64decode(raw) if e.get("isBase64Encoded") else raw.encode()


def write(target, name, data):
    d = OUT / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data if isinstance(data, bytes) else data.encode())


def media():
    if not shutil.which("ffmpeg"):
        sys.exit("error: ffmpeg is needed for the media seeds (apt-get install ffmpeg)")
    with tempfile.TemporaryDirectory() as tmp:
        clips = {
            "faststart.mp4": ["-movflags", "+faststart"],
            "moov-last.mp4": [],
            "clip.mov": ["-f", "mov"],
            "clip.webm": ["-c:v", "libvpx-vp9", "-b:v", "50k"],
            "portrait.mp4": ["-metadata:s:v", "rotate=90", "-movflags", "+faststart"],
        }
        for name, args in clips.items():
            path = os.path.join(tmp, name)
            subprocess.run(
                ["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                 "testsrc=size=64x48:rate=10:duration=0.3", *args, path],
                check=True,
            )
            data = Path(path).read_bytes()
            write("media_probe", name, data[:16384])
            if name == "moov-last.mp4":
                # The bytes at the `moov` offset, as the second read fetches them.
                at = data.rfind(b"moov") - 4
                write("media_probe", "moov-box", data[at:])
    write("media_probe", "jpeg", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 8 + b"\xff\xd9")
    write("media_probe", "svg", '<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"></svg>')


def main():
    if OUT.exists():
        shutil.rmtree(OUT)
    media()

    # Bunny webhook: `signature 0xFF body`.
    e = event("bunny-webhook.json")
    sig = e["headers"]["x-bunnystream-signature"].encode()
    write("bunny_webhook", "signed", sig + b"\xff" + body("bunny-webhook.json"))
    write("bunny_webhook", "unsigned", b"\xff" + body("bunny-webhook-unsigned.json"))
    write("bunny_webhook", "finished", b"\xff" + json.dumps(
        {"VideoLibraryId": 133, "VideoGuid": "a8c4ee1f-7f07-4b57-8b22-6f1e0bcbc1b2", "Status": 4}).encode())

    for name in ["s3-object-created.json", "s3-object-created-eventbridge.json"]:
        write("s3_event", name, (EVENTS / name).read_bytes())
    for f in sorted(EVENTS.glob("mediaconvert-*.json")):
        write("mediaconvert_event", f.name, f.read_bytes())
    write("table_stream", "table-stream-ready.json", (EVENTS / "table-stream-ready.json").read_bytes())

    # Playback tokens: Bunny's vectors' signed URLs (path and query), and `s<dir>|<path>` to sign.
    if VECTORS.exists():
        vectors = json.loads(VECTORS.read_text())
        for case in vectors["cases"]:
            url = case["expectSignedUrl"].removeprefix(vectors["host"])
            write("playback_token", case["name"], url)
    write("playback_token", "sign-dir", "s/exercises/ex-1/u-1/|/exercises/ex-1/u-1/720p/seg-001.ts")
    write("playback_token", "sign-file", "s|/exercises/ex-1/u-1/playlist.m3u8")

    grant = {"sid": "6e2b4f9a-1c3d-4e5f-8a9b-0c1d2e3f4a5b", "exercise_id": "ex-knee-01",
             "scope": "org-a", "org": "org-a", "viewer": "v-7f3a", "exp": 1_598_000_600}
    write("playback_grant", "grant.json", json.dumps(grant))

    claims = [
        {"sub": "u-1", "org_id": "org-a", "roles": "[admin specialist]"},
        {"sub": "u-2", "org_id": "org-a", "roles": '["patient"]'},
        {"sub": "root", "roles": "superadmin"},
        {"sub": "u-3", "org_id": "org-b", "roles": "specialist,admin"},
    ]
    for i, c in enumerate(claims):
        write("jwt_claims", f"claims-{i}.json", json.dumps(c))

    for name in ["intake-video-post.json", "intake-thumbnail-post.json", "intake-instruction-image-post.json"]:
        write("intake_body", name, body(name))
    write("intake_body", "multipart-decimal.json",
          '{"filename":"a.mov","content_type":"video/quicktime","size_bytes":9196.0,"scope":"global","multipart":true}')

    size = (12 * 1024 * 1024).to_bytes(8, "little")
    for name in ["intake-multipart-parts-post.json", "intake-multipart-complete.json"]:
        write("multipart_body", name, size + body(name))
    write("multipart_body", "complete-3.json", size + json.dumps(
        {"parts": [{"part_number": 1, "etag": '"a"'}, {"part_number": 2.0, "etag": "b"},
                   {"part_number": 3, "etag": "c"}]}).encode())

    lines = body("playback-cmcd-post.json")
    write("cmcd", "lines-v2", lines)
    write("cmcd", "json", json.dumps([
        {"v": 2, "sid": "6e2b4f9a-1c3d-4e5f-8a9b-0c1d2e3f4a5b", "cid": "ex-knee-01", "sn": 3,
         "e": "bc", "br": [800], "mtp": 900, "bl": 1200, "bs": True, "bsd": [1500, 300],
         "ec": ["MEDIA_ERR_NETWORK"], "sta": "r", "ts": 1795287301000, "msd": 640}]))
    write("cmcd", "lines-v1", 'br=3200,bl=21300,cid="ex-1",mtp=25400,sid="6e2b4f9a-1c3d-4e5f-8a9b-0c1d2e3f4a5b",bs,su\n')

    captions()

    total = sum(f.stat().st_size for f in OUT.rglob("*") if f.is_file())
    print(f"fuzz seeds: {sum(1 for _ in OUT.rglob('*') if _.is_file())} files, {total} bytes in {OUT.relative_to(ROOT)}")


def captions():
    """Caption files as admins send them (the first byte picks the target's case: bit 0 SRT,
    bit 1 a known 10 s video, bit 6 a segment head, bit 7 a master playlist), and a master as the stand-ins write it."""
    vtt = ("WEBVTT - exercise\n\nNOTE written by the physio\n\n1\n00:00:01.000 --> 00:00:04.000 align:start line:90%\n"
           "Keep the <i>knee</i> over the <c.yellow>toes</c>\n\n00:05.000 --> 00:08.500\n"
           "<v Coach>Hold</v> <00:06.000>for <lang de>zehn</lang> seconds &amp; breathe\n")
    srt = ("1\r\n00:00:01,000 --> 00:00:04,000\r\n<font color=\"#ffff00\">Keep</font> the <b>knee</b> up\r\n\r\n"
           "2\r\n00:00:05,000 --> 00:00:08,500\r\nHold for ten seconds\r\n")
    write("captions", "webvtt", b"\x02" + vtt.encode())
    write("captions", "webvtt-no-duration", b"\x00" + vtt.encode())
    write("captions", "srt", b"\x03" + srt.encode())
    master = ("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID=\"subs\",NAME=\"English\",LANGUAGE=\"en\",URI=\"captions/en.m3u8\"\n"
              "#EXT-X-STREAM-INF:BANDWIDTH=800000,RESOLUTION=640x360,SUBTITLES=\"subs\"\n360p/video.m3u8\n"
              "#EXT-X-STREAM-INF:BANDWIDTH=2500000,RESOLUTION=1280x720\n720p/video.m3u8\n")
    write("captions", "master", b"\x80" + master.encode())
    # bit 6: the head of a segment ffmpeg wrote (where the HLS timeline starts).
    with open(os.path.join(os.path.dirname(__file__), "..", "tests", "events", "segment-head.ts"), "rb") as f:
        write("captions", "segment-head", b"\x40" + f.read())


if __name__ == "__main__":
    main()
