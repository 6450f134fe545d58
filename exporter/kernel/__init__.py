"""Thin layer over the kernel: bcc, tracefs, procfs and netlink. Everything else is pure logic."""
