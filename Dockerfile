# syntax=docker/dockerfile:1
# One image for every meshgate process: meshgate-global, meshgate-zone, meshgatectl, and meshgate-dp with its
# Envoy (the `dataplane` extra), which the gateway Pods of a Kubernetes zone run.
#
#   docker build -t meshgate:0.1.0 .
#   docker run --rm meshgate:0.1.0 meshgate-global run          # or the short form: global run
#   docker run --rm meshgate:0.1.0 zone run --zone zone-1 --global-address grpc://global:5685
#   docker run --rm meshgate:0.1.0 ctl --api http://global:5681 get meshes
#
# Everything is installed at build time from this repository's own pyproject.toml, at the versions
# requirements.lock pins (the lock's hashes cannot go in a constraints file, so its pins are used without
# them); the running container downloads nothing. See deploy/README.md for the ports and for compose and Kubernetes.

# --- build: a self-contained virtualenv under /opt/meshgate ------------------------------------------------
FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
# Only what the wheel is built from (.dockerignore keeps the rest of the tree out of the context too).
COPY pyproject.toml requirements.lock ./
COPY meshgate/ meshgate/
COPY global_cp/ global_cp/
COPY zone_cp/ zone_cp/
RUN python -m venv /opt/meshgate \
    && sed -e '/^ *--hash/d' -e 's/ *\\$//' requirements.lock > /tmp/constraints.txt \
    && PIP_CONSTRAINT=/tmp/constraints.txt /opt/meshgate/bin/pip install --no-cache-dir '/src[dataplane]' \
    && /opt/meshgate/bin/meshgate-global --help >/dev/null \
    && /opt/meshgate/bin/meshgate-zone --help >/dev/null \
    && /opt/meshgate/bin/meshgatectl --help >/dev/null \
    && /opt/meshgate/bin/meshgate-dp --help >/dev/null

# --- runtime ----------------------------------------------------------------------------------------------
FROM python:3.11-slim
LABEL org.opencontainers.image.title="meshgate" \
      org.opencontainers.image.description="Multi-zone control plane for mesh gateways (Kuma 2.7 compatible)"
# Unbuffered logs reach `docker logs` / `kubectl logs` at once; no .pyc writes, so the root filesystem can be
# mounted read-only (the venv's modules were compiled when pip installed them).
ENV PATH=/opt/meshgate/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
# A fixed numeric uid/gid, so Kubernetes' runAsNonRoot can verify it without a passwd lookup.
RUN groupadd --system --gid 10001 meshgate \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/meshgate --no-create-home \
       --shell /usr/sbin/nologin meshgate \
    && mkdir -p /var/lib/meshgate \
    && chown 10001:10001 /var/lib/meshgate
COPY --from=build /opt/meshgate /opt/meshgate
COPY --chmod=0755 deploy/docker/entrypoint.sh /usr/local/bin/meshgate-entrypoint
# The Universal-format examples, for `meshgatectl apply -f /opt/meshgate/examples/mesh.yaml` (compose's apply job).
COPY deploy/examples/ /opt/meshgate/examples/
USER 10001:10001
# The default --data-dir (data/global, data/<zone>) is relative: it lands here, the one writable directory.
WORKDIR /var/lib/meshgate
VOLUME ["/var/lib/meshgate"]
# 5680 diagnostics (/ready, /healthy, /metrics), 5681 HTTP API, 5685 KDS gRPC (global only).
EXPOSE 5680 5681 5685
ENTRYPOINT ["meshgate-entrypoint"]
CMD ["meshgate-global", "run"]
