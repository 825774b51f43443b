# syntax=docker/dockerfile:1
# pgswitch container image.
#   docker build -t pgswitch .
#   docker run --rm -p 6432:6432 -p 127.0.0.1:9930:9930 \
#     -e PGSWITCH_PRIMARY=postgres://USER:PASS@HOST:5432/DB \
#     -e PGSWITCH_LISTEN=0.0.0.0:6432 -e PGSWITCH_METRICS_LISTEN=0.0.0.0:9930 pgswitch
# The binary's defaults are 127.0.0.1:6432 for clients and no metrics
# endpoint: set both variables as above for the exposed ports to answer.

FROM rust:1-bookworm AS builder
WORKDIR /src
COPY . .
RUN cargo build --release --locked \
    && install -m 0755 target/release/pgswitch /pgswitch

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system pgswitch \
    && useradd --system --gid pgswitch --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin pgswitch
COPY --from=builder /pgswitch /usr/local/bin/pgswitch
USER pgswitch
# 6432: clients (PGSWITCH_LISTEN); 9930: /metrics, /queries, /healthz and
# /readyz (PGSWITCH_METRICS_LISTEN); the same ports as docker-compose.yml.
EXPOSE 6432 9930
ENTRYPOINT ["/usr/local/bin/pgswitch"]
