# diffkeeper image: the three static musl binaries from `just build` and a baked BTF directory,
# on an empty base. Assembled by scripts/image.sh (`just image`), which stages the build context:
#   bin/amd64/diffkeeper{-init,-sidecar,}  from target/x86_64-unknown-linux-musl/release
#   bin/arm64/diffkeeper{-init,-sidecar,}  from target/aarch64-unknown-linux-musl/release
#   btf/                                  BTFs to bake (`just image --bake DIR`), or empty
#   cache/                                an empty directory (the default cache mount point)
# One build per platform picks its binaries by TARGETARCH (set by `podman build --platform`, passed
# explicitly to builders that do not set it). Nothing runs inside the build, so building the arm64
# image on an amd64 host needs no emulation.
# Builders with internet access can compile inside the build instead: see the README's
# "Multi-stage build" section.
FROM scratch

ARG TARGETARCH
ARG VERSION=dev
ARG REVISION=unknown
LABEL org.opencontainers.image.title="diffkeeper" \
      org.opencontainers.image.description="DiffKeeper: BTF provisioning (diffkeeper-init) and an eBPF file-change journal sidecar (diffkeeper-sidecar)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="scratch"

# diffkeeper reads a content store (diffkeeper-sidecar --store): timeline, cat, export, diff, verify.
COPY bin/${TARGETARCH}/diffkeeper-init bin/${TARGETARCH}/diffkeeper-sidecar bin/${TARGETARCH}/diffkeeper /usr/local/bin/
# Baked BTFs: <release>.btf, <release>.btf.tar.xz or a BTFHub-shaped tree (--baked-btf-dir default).
COPY btf/ /opt/diffkeeper/btf/
# Default --btf-cache-dir, owned by the default user so a volume mounted here starts writable
# (container engines copy this ownership into new named volumes).
COPY --chown=65532:65532 cache/ /var/cache/diffkeeper/btf/

# Non-root by default (diffkeeper-init needs no privileges at all). The sidecar is run with
# CAP_BPF + CAP_PERFMON by its pod spec; see k8s/base/deployment.yaml.
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/diffkeeper-init"]
