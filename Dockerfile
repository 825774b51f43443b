# syntax=docker/dockerfile:1
# pgswitch container image.
#   docker build -t pgswitch .
#   docker run --rm -p 6432:6432 -e PGSWITCH_PRIMARY=postgres://... -e PGSWITCH_LISTEN=0.0.0.0:6432 pgswitch

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
EXPOSE 6432 9930
ENTRYPOINT ["/usr/local/bin/pgswitch"]
