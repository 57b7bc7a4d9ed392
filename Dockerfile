# Deploy Guard container image (docs/docker.md, docs/cloud-run.md).
#
# Two stages on one base image, so the venv built in the first runs unchanged in the second
# (its bin/python points at /usr/local/bin/python3.11 of that image):
#   builder  the runtime dependencies from the hash-locked requirements/runtime.lock, then the
#            project itself (--no-deps), into /opt/venv; the venv gets no pip or setuptools
#   runtime  a fresh slim image with /opt/venv and nothing else from the build
# Config and rules are mounted at run time, never baked in. The base is pinned by tag, and
# its Python must stay the one CI tests with (tests/packaging/test_image.py); to pin by
# digest as well, see docs/docker.md.
ARG PYTHON_IMAGE=python:3.11.7-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
WORKDIR /build

# pip runs from the base image against the venv (--python), so /opt/venv holds only the lock's
# packages and the project: no pip, no setuptools (nothing there to patch, nothing to scan).
RUN python -m venv --without-pip /opt/venv

# Dependencies first, in a layer of their own: source changes do not reinstall them.
COPY requirements/runtime.lock requirements/runtime.lock
RUN pip --python /opt/venv/bin/python install --no-cache-dir --require-hashes \
        -r requirements/runtime.lock

# The project, without dependencies. Its build backend (setuptools==84.2.1, pinned in
# pyproject.toml's build-system) is fetched into pip's throwaway build environment, so it
# never lands in the venv.
COPY pyproject.toml README.md ./
COPY src/ src/
RUN pip --python /opt/venv/bin/python install --no-cache-dir --no-deps . \
    && pip --python /opt/venv/bin/python check

FROM ${PYTHON_IMAGE}

ARG PYTHON_IMAGE
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="Deploy Guard" \
      org.opencontainers.image.description="Automated deploy guard for Google Cloud Run: detects migration failures and 5xx regressions, freezes, reverts, pages, and gates database restores behind human approval." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}"

# A numeric, unprivileged user (no home, no shell); the base image's own pip and setuptools
# are removed because nothing in the runtime needs them. /etc/deploy-guard is the (empty)
# mount point of config.yaml and rules/; /var/lib/deploy-guard is the one writable path (the
# SQLite store and its lock file), for a volume, since the root filesystem may be read-only.
RUN groupadd --system --gid 10001 guard \
    && useradd --system --no-log-init --uid 10001 --gid 10001 --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin guard \
    && python -m pip uninstall --yes --no-cache-dir pip setuptools wheel \
    && install -d -m 0755 /etc/deploy-guard \
    && install -d -o 10001 -g 10001 -m 0700 /var/lib/deploy-guard

COPY --from=builder /opt/venv /opt/venv

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    GUARD_CONFIG=/etc/deploy-guard/config.yaml

# A relative sqlite:/// URL lands in the writable directory too.
WORKDIR /var/lib/deploy-guard
USER 10001:10001

# The HTTP API, /healthz, /readyz and /metrics (api.port in the config must match).
EXPOSE 8080

# guard is PID 1 and handles SIGTERM itself (graceful stop, exit 0). `guard` is the entrypoint
# and `run` the default argument, so the same image also runs `check`, `gate`, `--version`.
ENTRYPOINT ["guard"]
CMD ["run"]
