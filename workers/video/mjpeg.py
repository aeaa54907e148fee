"""A live camera stand-in: a synthetic scene served as Motion JPEG over HTTP
(``multipart/x-mixed-replace``, what many IP cameras serve), for tests and
demos of live sources. The scene runs on the wall clock from ``--epoch``, so a
server restarted after a drop goes on with the same scene, as a camera would:

    python -m workers.video.mjpeg --scenario fire --seed 1 --port 27001 \\
        [--epoch UNIX_TIME] [--user U --password P]

OpenCV's FFmpeg backend reads it (``cv2.VideoCapture("http://.../stream")``).
With ``--user``, the stream needs HTTP Basic credentials (401 otherwise).
"""

from __future__ import annotations

import argparse
import base64
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2

from workers.video.synthetic import SCENARIOS, make_video

BOUNDARY = "cityunionframe"


class Scene:
    """The scene's frames as JPEG, rendered in order as they are first asked
    for (a restarted server renders up to the present once, then keeps up)."""

    def __init__(self, scenario: str, seed: int, width: int, height: int,
                 fps: float, seconds: float) -> None:
        self._frames = make_video(scenario, seed, width, height, fps,
                                  seconds).frames()
        self._jpegs: list[bytes] = []
        self._lock = threading.Lock()
        self.count = int(seconds * fps)

    def jpeg(self, i: int) -> bytes:
        with self._lock:
            while len(self._jpegs) <= i:
                _, frame = next(self._frames)
                ok, jpeg = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 85])
                assert ok
                self._jpegs.append(jpeg.tobytes())
            return self._jpegs[i]


def make_handler(scene: Scene, fps: float, epoch: float,
                 auth: str | None) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if auth and self.headers.get("Authorization") != f"Basic {auth}":
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="camera"')
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type",
                             f"multipart/x-mixed-replace;boundary={BOUNDARY}")
            self.end_headers()
            last = -1
            try:
                while True:
                    i = int((time.time() - epoch) * fps)
                    if i >= scene.count:
                        return  # the scene is over: the stream ends
                    if i != last:
                        last = i
                        jpeg = scene.jpeg(max(i, 0))
                        self.wfile.write(
                            f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                            f"Content-Length: {len(jpeg)}\r\n\r\n".encode()
                            + jpeg + b"\r\n")
                        self.wfile.flush()
                    time.sleep(max(0.0, epoch + (i + 1) / fps - time.time()))
            except (BrokenPipeError, ConnectionResetError):
                return

        def log_message(self, format: str, *args: object) -> None:
            pass  # quiet: tests read stdout for the "serving" line only

    return Handler


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m workers.video.mjpeg",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--scenario", default="fire", choices=SCENARIOS)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--width", type=int, default=320)
    p.add_argument("--height", type=int, default=180)
    p.add_argument("--fps", type=float, default=10.0)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--epoch", type=float, default=None,
                   help="the scene's start (Unix time; default: now)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--user", default=None)
    p.add_argument("--password", default="")
    args = p.parse_args(argv)
    scene = Scene(args.scenario, args.seed, args.width, args.height, args.fps,
                  args.seconds)
    epoch = time.time() if args.epoch is None else args.epoch
    auth = (base64.b64encode(f"{args.user}:{args.password}".encode()).decode()
            if args.user else None)
    server = ThreadingHTTPServer((args.host, args.port),
                                 make_handler(scene, args.fps, epoch, auth))
    server.daemon_threads = True
    print(f"serving {scene.count} frames on http://{args.host}:{args.port}/ "
          f"epoch={epoch!r}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
