# syntax=docker/dockerfile:1
# Multi-stage build: compile with the Rust toolchain, run on a slim Debian
# as an unprivileged user. The config goes in /etc/driftwatch (mount it),
# the database in the /var/lib/driftwatch volume.
#   docker build -t driftwatch .
#   docker run --rm -v $PWD/driftwatch.toml:/etc/driftwatch/driftwatch.toml:ro \
#     -v driftwatch-data:/var/lib/driftwatch -e DRIFTWATCH_IMAP_PASSWORD driftwatch

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY crates ./crates
COPY src ./src
COPY migrations ./migrations
COPY benches ./benches
COPY demo ./demo
# build.rs embeds the shipped parsers and their fixtures for `driftwatch demo`.
COPY parsers ./parsers
COPY fixtures ./fixtures
# Patched dependencies ([patch.crates-io] in Cargo.toml).
COPY vendor ./vendor
RUN cargo build --release --locked --bin driftwatch

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 driftwatch \
 && useradd --system --uid 10001 --gid driftwatch --home-dir /var/lib/driftwatch --shell /usr/sbin/nologin driftwatch \
 && install -d -o driftwatch -g driftwatch -m 0700 /var/lib/driftwatch \
 && install -d -m 0755 /etc/driftwatch
COPY --from=build /src/target/release/driftwatch /usr/local/bin/driftwatch
COPY parsers /etc/driftwatch/parsers
USER 10001:10001
ENV DRIFTWATCH_CONFIG=/etc/driftwatch/driftwatch.toml \
    DRIFTWATCH_DATA_DIR=/var/lib/driftwatch
VOLUME ["/var/lib/driftwatch"]
ENTRYPOINT ["/usr/local/bin/driftwatch"]
CMD ["serve"]
