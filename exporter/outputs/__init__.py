"""Outputs: the views of one snapshot that leave the process. The Prometheus text and
OpenMetrics exposition (prometheus.py), the HTTP endpoint serving it (web.py, with its
--web.config.file TLS and basic auth in webconfig.py), and the OTLP push (otlp/)."""
