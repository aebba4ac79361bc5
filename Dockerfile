# syntax=docker/dockerfile:1
# The `inflight` binary in a small Debian image.
#
#   docker build -t inflight:local .
#   docker run --rm inflight:local                      # `inflight run trading` on the bundled sample
#   docker run --rm inflight:local run flight --help
#
# docker-compose.yml (profile `cluster`) and deploy/kubernetes/inflight.yaml run a two-process
# cluster from this image; see the README, "Under a supervisor".

# --- build -------------------------------------------------------------------------------------
FROM rust:1-bookworm AS builder

# rdkafka is built with default-features = false, features libz-static + zstd: rdkafka-sys builds
# librdkafka from source with its ./configure + make (no cmake; no OpenSSL, SASL or curl), and
# zlib, zstd, mimalloc, ring and tree-sitter are compiled from source with cc. The rust image
# has most of this already; the line below only makes the needs explicit. python3 lets
# librdkafka's configure generate its linker script (optional).
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        build-essential pkg-config python3 \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY . .

# The registry and target directories are BuildKit caches (kept between builds, not in the
# image), so the binary is copied out in the same step. --strip-debug drops the release
# profile's line tables (debug = 1) and keeps the symbols, so backtraces still have names.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin inflight \
 && cp target/release/inflight /usr/local/bin/inflight \
 && strip --strip-debug /usr/local/bin/inflight

# --- run ---------------------------------------------------------------------------------------
FROM debian:bookworm-slim

# The binary links only libc, libm and libgcc_s (all in the base image): librdkafka, zlib and
# zstd are static, and the LLM stage's HTTPS is rustls with its own (webpki) roots. This build
# of librdkafka has no TLS (rdkafka's `ssl` feature is off). ca-certificates is installed
# anyway, for anything added to the image that reads the system trust store.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*

# A fixed non-root uid/gid (10001), so Kubernetes' runAsNonRoot can check it and fsGroup can
# match it. /checkpoints belongs to that user: Docker copies a mount point's ownership into a new
# named volume, so the compose `checkpoints` volume starts out writable.
RUN groupadd --gid 10001 inflight \
 && useradd --uid 10001 --gid inflight --home-dir /app --no-create-home --shell /usr/sbin/nologin inflight \
 && mkdir -p /app /checkpoints \
 && chown inflight:inflight /app /checkpoints

COPY --from=builder /usr/local/bin/inflight /usr/local/bin/inflight
# The samples and example configs: the pipelines' defaults are relative paths (data/…).
COPY data/ /app/data/

WORKDIR /app
USER 10001:10001

# 2101: timely's cluster port (one per process); 9464: --metrics-addr (/metrics, /health).
EXPOSE 2101 9464

ENTRYPOINT ["inflight"]
CMD ["run", "trading"]
