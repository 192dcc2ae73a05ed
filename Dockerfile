# The mammo-node image: Orthanc + plugins from Debian bookworm, the project's pinned venv.
# The same steps build it without a daemon (scripts/build-image.sh: debootstrap + umoci),
# from the same package list (image/apt-packages.txt) and script (image/install.sh); the
# daemonless build reads USER, ENV, VOLUME, ... from this file (image/oci_config.py).
#
#   docker build -t mammo-node:0.1.0 .                       # CPU torch
#   docker build --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 -t mammo-node:0.1.0-cuda .
#
# One image, three roles (see helm/mammo-node): `mammo-node up` (default: Orthanc + node in one
# container), `mammo-node serve` (node API and workers against an Orthanc elsewhere), and
# `Orthanc /etc/orthanc/orthanc.json` (Orthanc with the node's plugin and PostgreSQL).
# Run it read-only: only the declared volumes are written.
#   docker run --read-only -v mammo-data:/var/lib/mammo-node --tmpfs /tmp -p 4242:4242 mammo-node:0.1.0
FROM debian:bookworm-slim

ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV LANG=C.UTF-8 \
    PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/var/lib/mammo-node \
    MPLCONFIGDIR=/tmp/matplotlib \
    MAMMO_NODE_DATA_DIR=/var/lib/mammo-node \
    MAMMO_NODE_API_HOST=0.0.0.0 \
    MAMMO_NODE_VIEWER_PORT=0

COPY image/ /opt/mammo-node/image/
RUN /opt/mammo-node/image/install.sh system
COPY pyproject.toml constraints.txt /opt/mammo-node/
RUN /opt/mammo-node/image/install.sh python
COPY node/ /opt/mammo-node/node/
COPY orthanc/ /opt/mammo-node/orthanc/
COPY models/ /opt/mammo-node/models/
COPY dicom_sr_templates/ /opt/mammo-node/dicom_sr_templates/
COPY LICENSE /opt/mammo-node/
RUN /opt/mammo-node/image/install.sh app

USER 10001:10001
WORKDIR /var/lib/mammo-node
VOLUME ["/var/lib/mammo-node", "/tmp"]
EXPOSE 4242 8042 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 CMD ["/opt/venv/bin/python", "/opt/mammo-node/image/healthcheck.py"]
ENTRYPOINT ["/opt/venv/bin/mammo-node"]
CMD ["up"]
