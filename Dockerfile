# The Sluice image, from scratch: one static binary, a data directory owned
# by the unprivileged user, nothing else (no shell, no libc, no package
# manager). No base image is pulled, so it builds offline.
#
# The binary is built beforehand; scripts/image.sh does both steps:
#
#   scripts/image.sh                      # -> localhost/sluice:<version>
#
# or by hand, with the build context a directory holding `sluice`, the
# build machine's CA bundle (for https backends), and the two directories
# the gateway writes to, their modes set there (COPY keeps the modes of
# what is inside a copied directory; --chmod does not reach directories
# with every builder):
#
#   ctx=$(mktemp -d) && mkdir -p "$ctx/fs-root" "$ctx/fs-user"
#   mkdir -m 1777 "$ctx/fs-root/tmp" && mkdir -m 0700 "$ctx/fs-user/data"
#   cp /etc/ssl/certs/ca-certificates.crt "$ctx/"
#   CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$ctx/sluice" ./cmd/sluice
#   podman build -f Dockerfile -t localhost/sluice "$ctx"
#
# `podman run --rm localhost/sluice` runs `sluice demo` (simulated pool,
# no config needed); `... serve --config /etc/sluice/sluice.yaml` runs the
# gateway. Dockerfile.multistage builds the binary inside a Go image for
# machines that can pull one.
FROM scratch

COPY --chmod=0555 sluice /usr/local/bin/sluice
# Go reads this path for TLS roots (https backends, rediss, tls NATS).
COPY --chmod=0444 ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
# /tmp (1777): os.TempDir(), where uploads to the Files API are spooled.
COPY fs-root/ /
# /data (0700, the user's): the embedded job queue's default store
# ($XDG_DATA_HOME/sluice); mount a volume here to keep jobs across restarts.
COPY --chown=65532:65532 fs-user/ /

ENV XDG_DATA_HOME=/data
# Numeric, so runAsNonRoot can check it without an /etc/passwd.
USER 65532:65532
EXPOSE 8080 9091
ENTRYPOINT ["/usr/local/bin/sluice"]
CMD ["demo"]
