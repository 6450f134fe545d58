"""OTLP receivers for the tests: a real OTLP/HTTP endpoint (http.server) and a real OTLP/gRPC
service, in the test process, decoding what they receive with opentelemetry-proto.

No OpenTelemetry Collector binary is available here, so these stand in for one: they speak
the wire protocol (protobuf over HTTP POST /v1/metrics, and the gRPC MetricsService) and keep
every request for the tests to inspect.
"""

from __future__ import annotations

import gzip
import threading
from collections.abc import Mapping
from concurrent import futures
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from tests.helpers import free_port


def plain(value: AnyValue) -> Any:
    return getattr(value, value.WhichOneof("value"))


def plain_attributes(pairs: list[KeyValue]) -> dict[str, Any]:
    return {pair.key: plain(pair.value) for pair in pairs}


@dataclass(frozen=True)
class Point:
    metric: str
    kind: str  # "sum" or "gauge"
    unit: str
    description: str
    monotonic: bool
    cumulative: bool
    attributes: dict[str, Any]
    value: int | float
    start_time: int
    time: int


@dataclass(frozen=True)
class Export:
    resource: dict[str, Any]
    points: list[Point]


def decode(request: metrics_service_pb2.ExportMetricsServiceRequest) -> list[Export]:
    exports = []
    for resource_metrics in request.resource_metrics:
        points = []
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                kind = metric.WhichOneof("data")
                data = getattr(metric, kind)
                for point in data.data_points:
                    points.append(
                        Point(
                            metric.name,
                            kind,
                            metric.unit,
                            metric.description,
                            kind == "sum" and data.is_monotonic,
                            kind == "sum" and data.aggregation_temporality == 2,
                            plain_attributes(point.attributes),
                            getattr(point, point.WhichOneof("value")),
                            point.start_time_unix_nano,
                            point.time_unix_nano,
                        )
                    )
        exports.append(Export(plain_attributes(resource_metrics.resource.attributes), points))
    return exports


class Received:
    """Every export received, in order; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._exports: list[Export] = []

    def add(self, request: metrics_service_pb2.ExportMetricsServiceRequest) -> None:
        with self._lock:
            self._exports.extend(decode(request))

    @property
    def exports(self) -> list[Export]:
        with self._lock:
            return list(self._exports)

    def latest(self, metric: str) -> list[Point]:
        """The points of ``metric`` in the newest export that has it (cumulative: all of it)."""
        for export in reversed(self.exports):
            points = [point for point in export.points if point.metric == metric]
            if points:
                return points
        return []

    def value(self, metric: str, attributes: Mapping[str, Any]) -> float:
        """Sum of the newest points of ``metric`` whose attributes include ``attributes``."""
        wanted = set(attributes.items())
        return sum(p.value for p in self.latest(metric) if wanted <= set(p.attributes.items()))


class OtlpHttpReceiver(Received):
    """POST /v1/metrics; ``stop()`` and ``start()`` again on the same port (a restart)."""

    def __init__(self) -> None:
        super().__init__()
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> OtlpHttpReceiver:
        received = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.path != "/v1/metrics":
                    self.send_error(404)
                    return
                request = metrics_service_pb2.ExportMetricsServiceRequest()
                request.ParseFromString(body)
                received.add(request)
                reply = metrics_service_pb2.ExportMetricsServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class OtlpGrpcReceiver(Received):
    """The gRPC MetricsService on a local port."""

    def __init__(self) -> None:
        super().__init__()
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.metadata: list[dict[str, str]] = []
        received = self

        class Service(metrics_service_pb2_grpc.MetricsServiceServicer):
            def Export(self, request, context):
                received.metadata.append(dict(context.invocation_metadata()))
                received.add(request)
                return metrics_service_pb2.ExportMetricsServiceResponse()

        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(Service(), self._server)
        self._server.add_insecure_port(f"127.0.0.1:{self.port}")

    def start(self) -> OtlpGrpcReceiver:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop(grace=None)
