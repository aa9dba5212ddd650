# inp2p in a container: one image holding inp2ps and inp2pc (glibc builds) and the shared libraries
# they load, nothing else (no shell, no package manager). config/container/compose.example.yml runs a
# server and an SDWAN client from it.
#
#   docker build -t inp2p .          (podman build -t inp2p . works the same)
#   docker buildx build --platform linux/amd64,linux/arm64 -t inp2p .
#
# Build context: this repository (npm ci fetches the dependencies, Bun's cross-compile runtimes come
# from the npm registry too).

# Compiles on the build machine's own CPU; Bun cross-compiles for the target's.
FROM --platform=$BUILDPLATFORM node:22-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY . .
ARG TARGETARCH
RUN case "${TARGETARCH:-amd64}" in \
      amd64) target=linux-x64 ;; \
      arm64) target=linux-arm64 ;; \
      *) echo "inp2p has no build for $TARGETARCH (it has amd64 and arm64)" >&2; exit 1 ;; \
    esac && \
    node_modules/.bin/bun scripts/build.ts --target "$target" --outdir /dist && \
    mv "/dist/$target" /dist/bin

# The root filesystem: the programs and exactly the libraries they load, taken from the Debian release
# the programs are tested on (test/integration/release.test.ts runs the same script, then the programs
# in a chroot of its result).
FROM debian:bookworm-slim AS rootfs
COPY --from=build /dist/bin /dist
COPY scripts/container-rootfs.sh /container-rootfs.sh
RUN sh /container-rootfs.sh /dist /rootfs

FROM scratch
COPY --from=rootfs /rootfs/ /
ENV PATH=/usr/local/bin
WORKDIR /etc/inp2p
# The server by default; the client is `inp2pc --config /etc/inp2p/inp2pc.toml`.
CMD ["inp2ps", "--config", "/etc/inp2p/inp2ps.toml"]
