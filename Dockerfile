# ollameter: a small runtime image with one static-ish binary.
# Build: docker build -t ollameter .
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
# Dependencies first, in a layer of their own that stays cached until Cargo.toml or
# Cargo.lock change: an empty crate (benches left out) builds every dependency once.
RUN mkdir src \
    && echo 'fn main() {}' >src/main.rs && touch src/lib.rs \
    && awk '/^\[/ { skip = ($0 == "[[bench]]") } !skip' Cargo.toml >Cargo.deps.toml \
    && cp Cargo.toml Cargo.full.toml && mv Cargo.deps.toml Cargo.toml \
    && cargo build --release --locked \
    && mv Cargo.full.toml Cargo.toml && rm -rf src
COPY src ./src
COPY benches ./benches
COPY assets ./assets
# Touched: the copied sources may be older than the empty crate's build.
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked \
    && strip target/release/ollameter

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --no-create-home --home-dir /data ollameter \
    && mkdir -p /data /etc/ollameter \
    && chown ollameter:ollameter /data
COPY --from=build /src/target/release/ollameter /usr/local/bin/ollameter
COPY config/ollameter.toml /etc/ollameter/ollameter.toml
# Inside a container: listen on every interface, keep the store on the volume, and reach
# Ollama by its compose service name (override OLLAMETER_UPSTREAM as needed).
ENV OLLAMETER_CONFIG=/etc/ollameter/ollameter.toml \
    OLLAMETER_LISTEN=0.0.0.0:11435 \
    OLLAMETER_DB=/data/ollameter.db \
    OLLAMETER_UPSTREAM=http://ollama:11434
VOLUME ["/data"]
WORKDIR /data
USER ollameter
EXPOSE 11435
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["ollameter", "healthcheck"]
ENTRYPOINT ["ollameter"]
CMD ["serve"]
