"""The Exporter health dashboard, and its two stat panels the Overview shows as well."""

from __future__ import annotations

from .engine import Dashboard, Panel, Query
from .promql import HOST, gauge_max, rate

EXPORTER_UP = Panel(
    "Exporters up",
    "Scrape health of each selected netsnoop exporter: 1 up, 0 down (the lowest value in each "
    "interval, so a short outage shows).",
    "none",
    [Query(f"min by (instance) (min_over_time(up{{{HOST}}}[$__rate_interval]))", "{{instance}}")],
    kind="stat",
    width=8,
)
PROGRAMS_UNATTACHED = Panel(
    "BPF programs not attached",
    "Programs that could not be attached to their tracepoint (usually a kernel without it); "
    "0 is healthy. Their metrics stay flat. Details in the Exporter health dashboard.",
    "none",
    [
        Query(
            "sum by (instance) (1 - min_over_time("
            f"netsnoop_bpf_program_attached{{{HOST}}}[$__rate_interval]))",
            "{{instance}}",
        )
    ],
    kind="stat",
    width=8,
)

EXPORTER_HEALTH = Dashboard(
    "netsnoop-exporter-health",
    "netsnoop-exporter-health.json",
    "netsnoop / Exporter health",
    "Is netsnoop-exporter itself working: scrapes, BPF programs and maps, lost events, cost.",
    [
        EXPORTER_UP,
        PROGRAMS_UNATTACHED,
        Panel(
            "Collectors failing",
            "Collectors whose last read failed; 0 is healthy.",
            "none",
            [
                Query(
                    "sum by (instance) (1 - min_over_time("
                    f"netsnoop_scrape_collector_success{{{HOST}}}[$__rate_interval]))",
                    "{{instance}}",
                )
            ],
            kind="stat",
            width=8,
        ),
        Panel(
            "Programs attached",
            "Each BPF program: 1 attached to its tracepoint, 0 not (the lowest value in each "
            "interval).",
            "none",
            [
                Query(
                    "min by (instance, collector, program) (min_over_time("
                    f"netsnoop_bpf_program_attached{{{HOST}}}[$__rate_interval]))",
                    "{{instance}} {{collector}} {{program}}",
                )
            ],
        ),
        Panel(
            "BPF map fill",
            "Entries over capacity of each BPF map, the highest in each interval. A full map "
            "loses updates (next panel); raise its map_size in the config.",
            "percentunit",
            [
                Query(
                    f"{gauge_max('netsnoop_bpf_map_entries', 'instance, collector, map')}"
                    f" / {gauge_max('netsnoop_bpf_map_capacity', 'instance, collector, map')}",
                    "{{instance}} {{collector}} {{map}}",
                )
            ],
        ),
        Panel(
            "BPF map update failures",
            "Updates the BPF programs lost per second because a map was full.",
            "ops",
            [
                Query(
                    "sum by (instance, collector, map) "
                    f"({rate('netsnoop_bpf_map_update_failures_total', HOST)})",
                    "{{instance}} {{collector}} {{map}}",
                )
            ],
        ),
        Panel(
            "Lost events",
            "Watch events not written to the event log, per second: perf buffer overflow "
            "(buffer) or over a rule's rate limit (rate_limit).",
            "ops",
            [
                Query(
                    f"sum by (instance, reason) ({rate('netsnoop_watch_events_lost_total', HOST)})",
                    "{{instance}} {{reason}}",
                )
            ],
            quiet_empty="a series appears with the first lost event.",
        ),
        Panel(
            "Series budget overflow",
            "Increments folded into a metric's overflow series per second, once its series "
            "budget (cardinality.series_per_metric) is spent.",
            "ops",
            [
                Query(
                    f"sum by (instance, metric) ({rate('netsnoop_series_overflow_total', HOST)})",
                    "{{instance}} {{metric}}",
                )
            ],
            quiet_empty="a series appears only once a metric has spent its budget.",
        ),
        Panel(
            "Scrape duration",
            "Seconds each snapshot took to read the BPF maps and sockets, the longest in each "
            "interval.",
            "s",
            [Query(gauge_max("netsnoop_scrape_duration_seconds", "instance"), "{{instance}}")],
        ),
        Panel(
            "Resident memory",
            "Resident set size of the exporter process (process_resident_memory_bytes), the "
            "highest in each interval.",
            "bytes",
            [Query(gauge_max("process_resident_memory_bytes", "instance"), "{{instance}}")],
        ),
        Panel(
            "CPU",
            "CPU used by the exporter process, in cores (1.0 = one core busy).",
            "percentunit",
            [
                Query(
                    f"sum by (instance) ({rate('process_cpu_seconds_total', HOST)})",
                    "{{instance}}",
                )
            ],
            width=24,
        ),
    ],
)
