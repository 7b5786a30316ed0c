# registry-cleanup container image.
#
#   buildah build --build-arg VERSION=1.2.3 --build-arg REVISION=$(git rev-parse HEAD) -t registry-cleanup .
#
# Stage `build` compiles a fully static binary (musl). scripts/image-test.sh builds
# this same file offline by replacing that stage with `--build-context build=DIR`,
# so everything the final stage takes from it must be a plain file path:
#   /usr/local/bin/registry-cleanup and /etc/ssl/certs/ca-certificates.crt.

ARG RUST_IMAGE=docker.io/library/rust:1-alpine
ARG BASE_IMAGE=docker.io/library/busybox:1.37-musl

FROM ${RUST_IMAGE} AS build
# gcc for ring (rustls' crypto), musl-dev for static linking.
RUN apk add --no-cache gcc musl-dev ca-certificates
WORKDIR /src

# Dependency layer: only the manifests, with empty sources, so editing src/ does
# not recompile ~200 crates. The workspace member tests/emulator must exist for
# Cargo.lock to resolve under --locked, but is never built (test-only).
COPY Cargo.toml Cargo.lock ./
COPY tests/emulator/Cargo.toml tests/emulator/
RUN mkdir -p src tests/emulator/src \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs tests/emulator/src/lib.rs \
    && cp src/main.rs tests/emulator/src/main.rs \
    && cargo build --release --locked --bin registry-cleanup \
    && rm -rf src target/release/registry-cleanup* \
        target/release/deps/registry_cleanup-* target/release/deps/libregistry_cleanup-* \
        target/release/.fingerprint/registry-cleanup-*

COPY src src
# COPY keeps the sources' mtimes, which may be older than the dummy build above.
RUN find src -type f -exec touch {} + \
    && cargo build --release --locked --bin registry-cleanup \
    && install -D -m 0755 target/release/registry-cleanup /usr/local/bin/registry-cleanup \
    && if ldd /usr/local/bin/registry-cleanup 2>/dev/null | grep -q '=>'; then \
           echo "registry-cleanup is not statically linked" >&2; exit 1; \
       fi

# busybox, not scratch: GitLab Runner runs job scripts with the image's /bin/sh.
FROM ${BASE_IMAGE}

ARG VERSION=dev
ARG REVISION=unknown
ARG CREATED=
ARG SOURCE=https://gitlab.com/registry-cleanup/registry-cleanup
ARG LICENSES=MIT

LABEL org.opencontainers.image.title="registry-cleanup" \
      org.opencontainers.image.description="Precise, previewable cleanup of GitLab container registry tags" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.url="${SOURCE}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="${LICENSES}"

# busybox ships no CA certificates; rustls-native-certs reads SSL_CERT_FILE first.
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /usr/local/bin/registry-cleanup /usr/local/bin/registry-cleanup

# busybox has no adduser applet in every build; append the entries directly.
RUN echo 'registry-cleanup:x:10001:10001:registry-cleanup:/home/registry-cleanup:/bin/sh' >> /etc/passwd \
    && echo 'registry-cleanup:x:10001:' >> /etc/group \
    && mkdir -p /home/registry-cleanup \
    && chown 10001:10001 /home/registry-cleanup

ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    HOME=/home/registry-cleanup
USER 10001:10001
WORKDIR /home/registry-cleanup
ENTRYPOINT ["registry-cleanup"]
CMD ["--help"]
