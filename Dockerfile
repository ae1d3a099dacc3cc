# The logferry image: built in a Rust stage, run from a slim Debian as an unprivileged user.
#   docker build -t logferry:0.1.0 .
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release -j2 --bin logferry

FROM debian:bookworm-slim
# libsystemd, through which journald sources read the journal (loaded when one starts)
RUN apt-get update \
    && apt-get install -y --no-install-recommends libsystemd0=252* \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/logferry /usr/bin/logferry
# root certificates for TLS to AWS, from the build stage's Debian
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
USER 10001:0
ENTRYPOINT ["/usr/bin/logferry"]
CMD ["run", "--config", "/etc/logferry/logferry.yaml"]
