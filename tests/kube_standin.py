"""A local stand-in for the Kubernetes API server: no cluster runs here, so the exporter's real
client talks to this instead. It serves recorded Pod objects (tests/data/kubernetes/pods.json)
for GET /api/v1/pods with a spec.nodeName field selector, as a list and as a watch stream whose
events the test pushes, and checks the bearer token like the API would."""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from tests.helpers import REPO

RECORDED_PODS = REPO / "tests" / "data" / "kubernetes" / "pods.json"
TOKEN = "n4-standin-token"


class StandInApi:
    def __init__(self, pods: list[dict], node: str) -> None:
        self.pods = {pod["metadata"]["uid"]: pod for pod in pods}
        self.node = node
        self.resource_version = 1000
        self.requests: list[str] = []
        self._watchers: list[queue.Queue] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def push(self, event: str, pod: dict) -> None:
        """An ADDED/MODIFIED/DELETED event to every open watch."""
        with self._lock:
            self.resource_version += 1
            if event == "DELETED":
                self.pods.pop(pod["metadata"]["uid"], None)
            else:
                self.pods[pod["metadata"]["uid"]] = pod
            for watcher in self._watchers:
                watcher.put({"type": event, "object": pod})

    def watchers(self) -> int:
        with self._lock:
            return len(self._watchers)

    def kubeconfig(self, directory: Path) -> Path:
        path = directory / "kubeconfig"
        path.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "standin", "cluster": {"server": self.url}}],
                    "users": [{"name": "n4", "user": {"token": TOKEN}}],
                    "contexts": [
                        {"name": "standin", "context": {"cluster": "standin", "user": "n4"}}
                    ],
                    "current-context": "standin",
                }
            )
        )
        return path

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _json(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                url = urlparse(self.path)
                query = parse_qs(url.query)
                api.requests.append(self.path)
                if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    self._json(401, {"kind": "Status", "code": 401, "reason": "Unauthorized"})
                    return
                if url.path != "/api/v1/pods":
                    self._json(404, {"kind": "Status", "code": 404, "reason": "NotFound"})
                    return
                if query.get("fieldSelector") != [f"spec.nodeName={api.node}"]:
                    self._json(400, {"kind": "Status", "code": 400, "reason": "BadRequest"})
                    return
                if query.get("watch") == ["true"]:
                    self._watch()
                    return
                with api._lock:
                    items = list(api.pods.values())
                    version = str(api.resource_version)
                self._json(
                    200,
                    {
                        "kind": "PodList",
                        "apiVersion": "v1",
                        "metadata": {"resourceVersion": version},
                        "items": items,
                    },
                )

            def _watch(self) -> None:
                events: queue.Queue = queue.Queue()
                with api._lock:
                    api._watchers.append(events)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                try:
                    while not api._stopping.is_set():
                        try:
                            event = events.get(timeout=0.2)
                        except queue.Empty:
                            continue
                        self.wfile.write(json.dumps(event).encode() + b"\n")
                        self.wfile.flush()
                except OSError:
                    pass  # the client went away
                finally:
                    with api._lock:
                        api._watchers.remove(events)

        return Handler


@contextmanager
def stand_in_api(node: str) -> Iterator[tuple[StandInApi, dict]]:
    """The stand-in serving the recorded pods of ``node``; also yields the recording, whose
    ``added_later`` pod the test announces through the watch."""
    recording = json.loads(RECORDED_PODS.read_text())
    api = StandInApi(recording["pods"], node)
    thread = threading.Thread(target=api.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield api, recording
    finally:
        api._stopping.set()
        api.server.shutdown()
        api.server.server_close()
