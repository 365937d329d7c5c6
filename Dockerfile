# syntax=docker/dockerfile:1
# The request-access service on its embedded default configuration (or the file named by
# REQUEST_ACCESS_CONFIG), state in /var/lib/request-access, listening on port 8080.
#   docker build -t request-access .
#   docker run -p 8080:8080 request-access

# The toolchain rust-toolchain.toml names; rustup adds its wasm32-wasip2 target.
FROM rust:1.95.0-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p request-access-host --bin request-access \
    && install -D target/release/request-access /out/request-access \
    && install -d /out/state

# glibc and libgcc, no shell, no package manager; runs as uid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/request-access /usr/local/bin/request-access
COPY --from=build --chown=65532:65532 /out/state /var/lib/request-access
USER 65532:65532
ENV REQUEST_ACCESS_DATA=/var/lib/request-access/state.redb \
    REQUEST_ACCESS_CACHE=/var/lib/request-access/cache
VOLUME ["/var/lib/request-access"]
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["/usr/local/bin/request-access", "healthcheck", "--url", "http://127.0.0.1:8080/readyz"]
ENTRYPOINT ["/usr/local/bin/request-access"]
CMD ["serve", "--listen", "0.0.0.0:8080", "--json-logs"]
