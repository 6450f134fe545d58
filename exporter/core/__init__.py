"""The core every collector and output shares: the metric declarations (metrics.py), the
series budget that turns drained increments into totals (cardinality.py) and the snapshot that
concurrent readers share (snapshot.py). How kernel values decode into labels stays in
exporter/kernel/values.py, next to the BPF encoding it mirrors."""
