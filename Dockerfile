# Two stages: the release build on the Rust toolchain image, then the binary alone on a small
# Debian image, run as an unprivileged user with its data directory as a volume.
#
#   docker build -t etx .
#   docker run -p 8080:8080 -e ETX_ENV=production -e ETX_PUBLIC_URL=https://etx.example.com etx
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p etx-server \
    && strip target/release/etx

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin etx \
    && mkdir /data && chown etx:etx /data
COPY --from=build /src/target/release/etx /usr/local/bin/etx
USER etx
WORKDIR /data
ENV ETX_DATA_DIR=/data \
    ETX_BIND=0.0.0.0:8080
VOLUME ["/data"]
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD curl -fsS http://127.0.0.1:8080/health/ready || exit 1
STOPSIGNAL SIGTERM
ENTRYPOINT ["etx"]
CMD ["serve"]
