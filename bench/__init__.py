"""The benchmark harness: what netsnoop-exporter costs the traced workload, per scrape and in
memory, side by side with peer tools. Run it with bench/run.sh (see the README)."""
