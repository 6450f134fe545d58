"""Watched ports, in one place: the ``watch:`` rules as kernel trie entries and defines
(rules.py), the events as JSON lines and hook runs (events.py), and the collector that reads
them from the kernel (collector.py). Their BPF side is bpf/watch/.

This package imports nothing at import time: the collectors that paste bpf/watch/watch.h
import rules.py, and the collector registry imports collector.py (registry.ELSEWHERE)."""
