"""Collectors: one per concern, each a module here (its settings, its declaration, its reads)
and a BPF source in bpf/, all behind one interface (base.py) and one registry (registry.py).

This package imports nothing at import time: exporter/config.py builds its ``collectors:``
section from the registry, and the collectors' modules import the config's building blocks."""
