# credbroker: a small, non-root image for `credbroker serve` (and `get`).
#
#   docker build -t credbroker .
#
# The runtime image has no shell and runs as an unprivileged user; it works
# with a read-only root filesystem as long as the cache directory is writable
# (the Kubernetes manifests mount an emptyDir there).

FROM rust:1.95-bookworm AS build
RUN rustup target add wasm32-wasip2
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
    && cp "target/$(rustc -vV | sed -n 's/^host: //p')/release/credbroker" /credbroker

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /credbroker /usr/local/bin/credbroker
# Compiled plugins are cached here; mount a writable volume (emptyDir).
ENV CREDBROKER_CACHE_DIR=/var/cache/credbroker
USER nonroot:nonroot
EXPOSE 8443 8080
ENTRYPOINT ["/usr/local/bin/credbroker"]
CMD ["serve", "--config", "/etc/credbroker/serve.toml"]
