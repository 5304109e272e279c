#!/usr/bin/env python3
"""Turns a rendered kustomize output into what `podman kube play` (Debian 12's podman 4.3) can run
here, changing only what this machine or podman needs and leaving every container's command,
arguments, security context and mounts as the manifest has them. Each change:

- images: there is no registry here. The DiffKeeper image becomes the one `just image` built
  (--image); the placeholder app's busybox and the DaemonSet's registry.k8s.io/pause become a
  local image built by kube_play_test.sh from Debian's static busybox and catatonit (--app-image).
- init containers: podman's "always" init container type, so they stay after they ran and the
  test reads their exit code and logs (the default "once" type is removed at once, and podman
  4.3 often fails that removal: "failed to remove once init container ... as it is running").
  Podman reads the annotation from the Deployment's own metadata (a Pod's for a Pod). Podman
  applies the pod's restartPolicy to init containers too and would restart a finished one in a
  loop under Always, so the pod's restartPolicy becomes OnFailure (no container here exits
  non-zero unless the test fails).
- fsGroup: podman does not implement the pod's securityContext.fsGroup (an open feature request upstream)
  and makes each emptyDir root-owned 0755 or owned by the first container that mounts it. The
  ":U" mount option gives a writable emptyDir mount of a non-root container to that container's
  uid and gid, which is what fsGroup (and Kubernetes' 0777 emptyDir) let it do.
- a node without kernel BTF (--no-btf-dir): an empty directory over /sys/kernel/btf in the
  DiffKeeper containers, and diffkeeper-init pointed at a file:// BTFHub mirror (--mirror-dir),
  with --required, so the init container must fill the BTF cache and the sidecar must use it.
- hostPath /var/cache/diffkeeper/btf (node-cache overlay) becomes --node-cache-dir, so the test
  never writes into this machine's /var/cache.
- DaemonSet: Debian's podman 4.3 does not read that kind ("YAML document does not contain any
  supported kube kind"), so a DaemonSet becomes the Pod it would put on this one node: its pod
  template under the DaemonSet's name.
- --seccomp-profile NAME: the pod's seccompProfile becomes Localhost NAME (played with
  `podman kube play --seccomp-profile-root`), in place of RuntimeDefault (podman's stock profile).
  Podman 4.3 ignores securityContext.seccompProfile and reads the profile from the pod
  annotation seccomp.security.alpha.kubernetes.io/pod, so both are set.

usage: kube_play_adapt.py RENDERED.yaml OUT.yaml --image TAG --app-image TAG --no-btf-dir DIR
         --mirror-dir DIR [--node-cache-dir DIR] [--seccomp-profile NAME] [--kind KIND]
  --kind keeps only the documents of that kind (the DaemonSet is played before the Deployment).
"""

import argparse
import sys

import yaml

DIFFKEEPER_IMAGE_NAME = "diffkeeper"
# Images of the manifests that are not DiffKeeper's: stand-ins for the user's app and a pause.
FOREIGN_IMAGES = ("busybox:", "registry.k8s.io/pause:")
NODE_CACHE = "/var/cache/diffkeeper/btf"
SECCOMP_ANNOTATION = "seccomp.security.alpha.kubernetes.io/pod"
INIT_CONTAINER_TYPE = "io.podman.annotations.init.container.type"


def is_diffkeeper(container):
    return container["image"].split(":")[0].split("/")[-1] == DIFFKEEPER_IMAGE_NAME


def replace_image(container, args):
    if is_diffkeeper(container):
        container["image"] = args.image
    elif container["image"].startswith(FOREIGN_IMAGES):
        container["image"] = args.app_image
    else:
        sys.exit(f"kube_play_adapt: container {container['name']}: no local stand-in for image {container['image']}")


def emulate_fs_group(container, empty_dirs):
    user = container.get("securityContext", {}).get("runAsUser", 0)
    if user == 0:
        return
    for mount in container.get("volumeMounts", []):
        if mount["name"] in empty_dirs and not mount.get("readOnly", False):
            mount["mountPath"] += ":U"


def hide_system_btf(container, args):
    container.setdefault("volumeMounts", []).append(
        {"name": "test-no-system-btf", "mountPath": "/sys/kernel/btf", "readOnly": True})
    if container["name"] == "diffkeeper-init":
        container["args"] += ["--btfhub-mirror=file:///test-mirror", "--required"]
        container["volumeMounts"].append({"name": "test-mirror", "mountPath": "/test-mirror", "readOnly": True})


def adapt_pod(metadata, spec, args):
    spec["restartPolicy"] = "OnFailure"
    empty_dirs = {v["name"] for v in spec.get("volumes", []) if "emptyDir" in v}
    for volume in spec.get("volumes", []):
        if volume.get("hostPath", {}).get("path") == NODE_CACHE:
            if not args.node_cache_dir:
                sys.exit(f"kube_play_adapt: volume {volume['name']} is the node's {NODE_CACHE}: pass --node-cache-dir")
            volume["hostPath"]["path"] = args.node_cache_dir
    spec["volumes"] = spec.get("volumes", []) + [
        {"name": "test-no-system-btf", "hostPath": {"path": args.no_btf_dir, "type": "Directory"}},
        {"name": "test-mirror", "hostPath": {"path": args.mirror_dir, "type": "Directory"}},
    ]
    for container in spec.get("initContainers", []) + spec["containers"]:
        replace_image(container, args)
        emulate_fs_group(container, empty_dirs)
        if container["image"] == args.image:
            hide_system_btf(container, args)
    if args.seccomp_profile:
        spec.setdefault("securityContext", {})["seccompProfile"] = {
            "type": "Localhost", "localhostProfile": args.seccomp_profile}
        metadata.setdefault("annotations", {})[SECCOMP_ANNOTATION] = f"localhost/{args.seccomp_profile}"


def daemonset_as_pod(daemonset):
    template = daemonset["spec"]["template"]
    metadata = dict(template.get("metadata", {}), name=daemonset["metadata"]["name"])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": template["spec"]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("rendered")
    parser.add_argument("out")
    parser.add_argument("--image", required=True)
    parser.add_argument("--app-image", required=True)
    parser.add_argument("--no-btf-dir", required=True)
    parser.add_argument("--mirror-dir", required=True)
    parser.add_argument("--node-cache-dir")
    parser.add_argument("--seccomp-profile")
    parser.add_argument("--kind")
    args = parser.parse_args()
    with open(args.rendered) as f:
        documents = [d for d in yaml.safe_load_all(f) if d and args.kind in (None, d["kind"])]
    if not documents:
        sys.exit(f"kube_play_adapt: {args.rendered} has no {args.kind or 'document'}")
    for document in documents:
        if document["kind"] in ("Deployment", "DaemonSet"):
            template = document["spec"]["template"]
            adapt_pod(template.setdefault("metadata", {}), template["spec"], args)
    documents = [daemonset_as_pod(d) if d["kind"] == "DaemonSet" else d for d in documents]
    for document in documents:
        if document["kind"] in ("Deployment", "Pod"):
            document["metadata"].setdefault("annotations", {})[INIT_CONTAINER_TYPE] = "always"
    with open(args.out, "w") as f:
        yaml.safe_dump_all(documents, f, sort_keys=False)


if __name__ == "__main__":
    main()
