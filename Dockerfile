# Memoria container image: memoria-server (gRPC :50051, HTTP /healthz /readyz /metrics :8080).
#
# Built by scripts/container.sh, which also creates the base image: there is no registry access,
# so the base is a Debian bookworm minbase made with debootstrap and `docker import`ed as
# memoria-base:bookworm (override with --build-arg BASE_IMAGE=debian:bookworm-slim elsewhere).
#
# The image downloads nothing at run time and holds no model. Mount the shared data read-only at
# /shared; on start, scripts/container-entrypoint.sh converts /shared/models/stories260K (llama2.c)
# into /var/lib/memoria/models/stories260K once (mount a volume there to keep it) and starts
# memoria-server on 0.0.0.0. Build with `--network host` where the daemon has no bridge network.
ARG BASE_IMAGE=memoria-base:bookworm

# ---- build stage: every package of scripts/setup.sh, then a Release build of the two programs.
FROM ${BASE_IMAGE} AS build
ENV DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8
RUN printf '%s\n' \
      'deb http://deb.debian.org/debian bookworm main' \
      'deb http://deb.debian.org/debian bookworm-updates main' \
      'deb http://deb.debian.org/debian-security bookworm-security main' > /etc/apt/sources.list
WORKDIR /src
COPY scripts/setup.sh scripts/setup.sh
RUN scripts/setup.sh && rm -rf /var/lib/apt/lists/*
# Only what the two programs build from, so that edits elsewhere (docs, tests, these container
# files) keep the compile layer cached.
COPY CMakeLists.txt ./
COPY scripts/build.sh scripts/
COPY base/ base/
COPY kernels/ kernels/
COPY engine/ engine/
COPY storage/ storage/
COPY tools/ tools/
COPY proto/ proto/
COPY server/ server/
RUN BUILD_DIR=/src/build BUILD_TARGETS="memoria-server memoria" \
      scripts/build.sh -DMEMORIA_BUILD_TESTS=OFF -DMEMORIA_BUILD_BENCH=OFF \
 && strip build/server/memoria-server build/tools/memoria

# ---- runtime stage: the shared libraries the programs link, curl for the health check.
FROM ${BASE_IMAGE} AS runtime
ENV DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8
RUN printf '%s\n' \
      'deb http://deb.debian.org/debian bookworm main' \
      'deb http://deb.debian.org/debian bookworm-updates main' \
      'deb http://deb.debian.org/debian-security bookworm-security main' > /etc/apt/sources.list \
 && apt-get update -qq \
 && apt-get install -y -qq --no-install-recommends \
      libdnnl2 ocl-icd-libopencl1 libgomp1 libgrpc++1.51 libgrpc29 libprotobuf32 libabsl20220623 \
      libre2-9 libc-ares2 libssl3 libsnappy1v5 liblz4-1 libzstd1 libbz2-1.0 \
      libspdlog1.10 libfmt9 libsentencepiece0 ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb \
 && useradd --system --uid 10001 --home-dir /var/lib/memoria --shell /usr/sbin/nologin memoria \
 && install -d -o memoria -g memoria /var/lib/memoria /var/lib/memoria/models
COPY --from=build /src/build/server/memoria-server /src/build/tools/memoria /usr/local/bin/
COPY configs/ /opt/memoria/configs/
COPY scripts/container-entrypoint.sh /usr/local/bin/memoria-entrypoint
# configs/container.textproto: the stories260K config, serving every interface (the HTTP probes
# bind the host of listen_address) with the model at the converted path. Fails if that changed.
RUN sed -e 's|^listen_address: "127.0.0.1:|listen_address: "0.0.0.0:|' \
        -e 's|^model_dir: .*|model_dir: "/var/lib/memoria/models/stories260K"|' \
        /opt/memoria/configs/stories260k.textproto > /opt/memoria/configs/container.textproto \
 && grep -q '^listen_address: "0.0.0.0:50051"' /opt/memoria/configs/container.textproto \
 && grep -q '^http_port: 8080' /opt/memoria/configs/container.textproto \
 && ! ldd /usr/local/bin/memoria-server /usr/local/bin/memoria | grep 'not found' \
 && memoria help >/dev/null
USER memoria
WORKDIR /var/lib/memoria
EXPOSE 50051 8080
# MEMORIA_HTTP_PORT: set it (with the entrypoint) to move the HTTP port; the probe follows.
HEALTHCHECK --interval=5s --timeout=3s --start-period=60s --retries=3 \
  CMD curl -fsS -o /dev/null "http://127.0.0.1:${MEMORIA_HTTP_PORT:-8080}/readyz" || exit 1
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/memoria-entrypoint"]
