# netsnoop-exporter container image: Debian with the distribution's bcc (python3-bpfcc) and
# this package, installed by scripts/install.sh, the same script as the README's first
# command, so the tested path and the shipped path are one.
#
# Kernel headers are not in the image: bcc compiles against the host's, mounted at run time:
#   podman run --privileged --network=host \
#     -v /lib/modules:/lib/modules:ro -v /usr/src:/usr/src:ro \
#     -v /sys/kernel/tracing:/sys/kernel/tracing:ro netsnoop-exporter
# Without them the exporter says so, and what to mount, before compiling anything.
#
# BASE_IMAGE: any Debian bookworm; where no registry is reachable, one made with
# `debootstrap bookworm DIR` and `tar -C DIR -c . | podman import - NAME`.
ARG BASE_IMAGE=docker.io/library/debian:bookworm-slim
FROM ${BASE_IMAGE}
# Behind a TLS-intercepting proxy, pip needs its CA: mount it into the build and name it, e.g.
#   --volume /etc/ssl/certs/ca-certificates.crt:/run/build-ca.crt:ro --build-arg PIP_CERT=/run/build-ca.crt
ARG PIP_CERT

ENV DEBIAN_FRONTEND=noninteractive \
    NETSNOOP_VENV=/opt/netsnoop/venv \
    NETSNOOP_CONTAINER=1 \
    PYTHONDONTWRITEBYTECODE=1

COPY . /opt/netsnoop/src
RUN /opt/netsnoop/src/scripts/install.sh --no-kernel-headers --extras kubernetes,otlp \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/* /root/.cache

EXPOSE 19435
ENTRYPOINT ["/opt/netsnoop/venv/bin/netsnoop-exporter"]
