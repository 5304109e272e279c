#!/usr/bin/env python3
"""Kubernetes manifests, for real: every kustomization under k8s/ is rendered by kustomize (the
kustomize Go API through kustomize_build.py; cross-checked against `kubectl kustomize` when a kubectl
is installed), every resource file and every rendered output is validated by
`kubernetes-validate --strict` against Kubernetes 1.29 and 1.37, and the rendered pods are checked
for what the packaging promises (native sidecar with /healthz probes, least privilege,
requests and limits, each scenario's flags, only flags the real binaries know, no writable mount
but /tmp and, with the kretprobe-tracefs component, the node's tracefs in the sidecar alone).

usage: manifests_test.py BIN_DIR      (prints PASS/FAIL lines for tests/packaging/run.sh)
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
K8S = os.path.join(REPO, "k8s")
HELM = os.path.join(K8S, "helm")
VERSIONS = ["1.29.0", "1.37.0"]
# k8s/components/kretprobe-tracefs: the node's tracefs, writable, in the sidecar container only,
# outside /sys (the runtimes' default AppArmor profile denies writes below /sys/).
HOST_TRACEFS = "/sys/kernel/tracing"
SIDECAR_TRACEFS = "/host/sys/kernel/tracing"
# The last release without native sidecars: the classic overlay must validate there, the base must not.
PRE_SIDECAR_VERSION = "1.27.0"

class Checks:
    """PASS/FAIL lines for run.sh to count, and how many failed."""

    def __init__(self, quiet=False):
        self.failures = 0
        # Quiet: only counted and kept (the tampered renderings, whose checks must fail).
        self.quiet = quiet
        self.failed = []

    def result(self, name, ok, detail=""):
        if ok:
            if not self.quiet:
                print(f"PASS {name}")
        else:
            self.failures += 1
            self.failed.append(name)
            if not self.quiet:
                print(f"FAIL {name}: {detail}")


def rel(path):
    return os.path.relpath(path, REPO)


def render(directory):
    proc = subprocess.run([sys.executable, os.path.join(HERE, "kustomize_build.py"), directory],
                          capture_output=True, text=True)
    return proc.returncode, proc.stdout, proc.stderr.strip()


def write_kustomization(directory, base, components):
    """A kustomization in `directory`: k8s/`base` with k8s/components/`components`, in order."""
    with open(os.path.join(directory, "kustomization.yaml"), "w") as f:
        yaml.safe_dump({"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
                        "resources": [os.path.relpath(os.path.join(K8S, base), directory)],
                        "components": [os.path.relpath(os.path.join(K8S, "components", c), directory)
                                       for c in components]}, f)


def kubectl_kustomize(directory):
    """`kubectl kustomize` output when a kubectl with kustomize v5 is installed, else None."""
    if shutil.which("kubectl") is None:
        return None
    proc = subprocess.run(["kubectl", "kustomize", directory], capture_output=True, text=True)
    return proc.stdout if proc.returncode == 0 else f"kubectl kustomize failed: {proc.stderr.strip()}"


def validate(path, version):
    proc = subprocess.run(["kubernetes-validate", "--strict", "-k", version, path], capture_output=True, text=True)
    return proc.returncode == 0, (proc.stdout + proc.stderr).strip()


def load_yaml_docs(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def binary_flags(bin_dir, name):
    proc = subprocess.run([os.path.join(bin_dir, name), "--help"], capture_output=True, text=True)
    return set(re.findall(r"--[a-z][a-z0-9-]*", proc.stdout + proc.stderr))


# ---------------------------------------------------------------- inventory of k8s/
def kustomizations():
    """(directory, kind) for every kustomization.yaml under k8s/."""
    found = []
    for root, _dirs, files in os.walk(K8S):
        if "kustomization.yaml" in files:
            doc = load_yaml_docs(os.path.join(root, "kustomization.yaml"))[0]
            found.append((root, doc.get("kind", "Kustomization"), doc))
    return sorted(found)


def check_inventory(checks, all_kustomizations):
    """Every YAML file in k8s/ is a kustomization, a resource (validated on its own below) or a
    patch used by a kustomization (validated through the rendered output): none escapes. The Helm
    chart (k8s/helm) is held equal to the kustomize output by helm_chart_test.py instead."""
    resources, patches = [], set()
    for directory, _kind, doc in all_kustomizations:
        for entry in doc.get("resources", []):
            path = os.path.normpath(os.path.join(directory, entry))
            if os.path.isfile(path):
                resources.append(path)
        for patch in doc.get("patches", []):
            if "path" in patch:
                patches.add(os.path.normpath(os.path.join(directory, patch["path"])))
    for root, _dirs, files in os.walk(K8S):
        if os.path.commonpath([root, HELM]) == HELM:
            continue
        for name in files:
            path = os.path.join(root, name)
            if not name.endswith((".yaml", ".yml")) or name == "kustomization.yaml":
                continue
            used = path in resources or path in patches
            checks.result(f"{rel(path)} is used by a kustomization", used, "not referenced as a resource or patch")
    return sorted(set(resources))


# ---------------------------------------------------------------- what the pods must look like
def pod_specs(objects):
    for obj in objects:
        spec = obj.get("spec", {}).get("template", {}).get("spec")
        if spec is not None:
            yield f"{obj['kind']}/{obj['metadata']['name']}", obj["kind"], spec


def find(containers, name):
    return next((c for c in containers if c["name"] == name), None)


def args_of(container):
    return container.get("args", [])


def check_container_hardening(checks, label, container):
    sc = container.get("securityContext", {})
    caps = sc.get("capabilities", {})
    checks.result(f"{label}: not privileged", not sc.get("privileged", False), "privileged: true")
    checks.result(f"{label}: allowPrivilegeEscalation false", sc.get("allowPrivilegeEscalation") is False, str(sc))
    checks.result(f"{label}: read-only root filesystem", sc.get("readOnlyRootFilesystem") is True, str(sc))
    checks.result(f"{label}: drops ALL capabilities", caps.get("drop") == ["ALL"], str(caps))
    res = container.get("resources", {})
    complete = all(k in res.get(kind, {}) for kind in ("requests", "limits") for k in ("cpu", "memory"))
    checks.result(f"{label}: cpu/memory requests and limits", complete, str(res))


def check_init(checks, label, init, volumes, kind, init_flags):
    sc = init.get("securityContext", {})
    if kind == "DaemonSet":
        # The node-cache writer: uid 0 only because the kubelet creates the hostPath root-owned;
        # still no capability at all (checked by check_container_hardening).
        checks.result(f"{label}: node writer adds no capabilities", "add" not in sc.get("capabilities", {}), str(sc))
    else:
        checks.result(f"{label}: runs as uid/gid 65532, non-root",
               sc.get("runAsUser") == 65532 and sc.get("runAsGroup") == 65532 and sc.get("runAsNonRoot") is True,
               str(sc))
    mounts = {m["mountPath"]: m for m in init.get("volumeMounts", [])}
    osr = mounts.get("/host/etc/os-release")
    host_vol = volumes.get(osr["name"], {}) if osr else {}
    checks.result(f"{label}: host /etc/os-release mounted read-only at /host/etc/os-release",
           bool(osr) and osr.get("readOnly") is True and host_vol.get("hostPath", {}).get("path") == "/etc/os-release",
           str(osr))
    checks.result(f"{label}: --host-root=/host", "--host-root=/host" in args_of(init), str(args_of(init)))
    unknown = [a for a in args_of(init) if a.split("=")[0] not in init_flags]
    checks.result(f"{label}: only flags diffkeeper-init knows", not unknown, f"unknown: {unknown}")


def check_sidecar(checks, label, sidecar, native, sidecar_flags, caps_wanted, volumes, tracefs):
    sc = sidecar.get("securityContext", {})
    caps = sc.get("capabilities", {})
    checks.result(f"{label}: adds exactly {' and '.join(caps_wanted)}", sorted(caps.get("add", [])) == caps_wanted,
                  str(caps))
    if native:
        checks.result(f"{label}: native sidecar (restartPolicy: Always)", sidecar.get("restartPolicy") == "Always",
               str(sidecar.get("restartPolicy")))
    else:
        checks.result(f"{label}: classic sidecar (no restartPolicy)", "restartPolicy" not in sidecar, "")
    metrics_addr = next((a.split("=", 1)[1] for a in args_of(sidecar) if a.startswith("--metrics-addr=")), "")
    port = int(metrics_addr.rsplit(":", 1)[1]) if ":" in metrics_addr else None
    named = {p.get("name"): p["containerPort"] for p in sidecar.get("ports", [])}
    for probe in ("startupProbe", "readinessProbe"):
        get = sidecar.get(probe, {}).get("httpGet", {})
        probe_port = named.get(get.get("port"), get.get("port"))
        checks.result(f"{label}: {probe} GET /healthz on the --metrics-addr port {port}",
               get.get("path") == "/healthz" and port is not None and probe_port == port, str(get))
    mounts = sidecar.get("volumeMounts", [])
    writable = [m["mountPath"] for m in mounts if not m.get("readOnly") and m["mountPath"] != "/tmp"]
    if tracefs:
        checks.result(f"{label}: every mount read-only but /tmp (the canary dir) and {SIDECAR_TRACEFS}",
                      writable == [SIDECAR_TRACEFS], f"writable: {writable}")
        check_sidecar_tracefs(checks, label, sidecar, volumes)
    else:
        checks.result(f"{label}: every mount read-only but /tmp (the canary dir)", not writable, f"writable: {writable}")
        given = [a for a in args_of(sidecar) if a.startswith("--tracefs-dir")]
        checks.result(f"{label}: no --tracefs-dir without the kretprobe-tracefs component", not given, str(given))
    checks.result(f"{label}: /tmp is mounted (read-only root fs)", any(m["mountPath"] == "/tmp" for m in mounts), "")
    checks.result(f"{label}: --metrics-addr listens on all interfaces (probes come from the kubelet)",
           metrics_addr.startswith("0.0.0.0:"), metrics_addr)
    unknown = [a for a in args_of(sidecar) if a.split("=")[0] not in sidecar_flags]
    checks.result(f"{label}: only flags diffkeeper-sidecar knows", not unknown, f"unknown: {unknown}")


def check_sidecar_tracefs(checks, label, sidecar, volumes):
    """The kretprobe-tracefs component: the node's tracefs, read-write, where --tracefs-dir says."""
    mount = next((m for m in sidecar.get("volumeMounts", []) if m["mountPath"] == SIDECAR_TRACEFS), None)
    host = volumes.get(mount["name"], {}).get("hostPath", {}) if mount else {}
    checks.result(f"{label}: the node's {HOST_TRACEFS} (hostPath, type Directory) mounted read-write at {SIDECAR_TRACEFS}",
                  bool(mount) and mount.get("readOnly") is not True
                  and host == {"path": HOST_TRACEFS, "type": "Directory"}, f"{mount} {host}")
    checks.result(f"{label}: no tracefs mounted below /sys (the default AppArmor profile denies writes there)",
                  not any(m["mountPath"].startswith("/sys") for m in sidecar.get("volumeMounts", [])),
                  str(sidecar.get("volumeMounts")))
    given = [a for a in args_of(sidecar) if a.startswith("--tracefs-dir")]
    checks.result(f"{label}: --tracefs-dir={SIDECAR_TRACEFS}", given == [f"--tracefs-dir={SIDECAR_TRACEFS}"], str(given))


def check_host_mounts(checks, label, kind, containers, volumes, tracefs):
    """hostPath volumes: writable only where the packaging needs it (the node-cache writer's cache;
    with kretprobe-tracefs, the sidecar's tracefs), and the node's tracefs in the sidecar alone."""
    writable, tracefs_users = [], []
    for c in containers:
        for m in c.get("volumeMounts", []):
            path = volumes.get(m["name"], {}).get("hostPath", {}).get("path")
            if path is None:
                continue
            if path == HOST_TRACEFS:
                tracefs_users.append(c["name"])
            allowed = ((kind == "DaemonSet" and c["name"] == "diffkeeper-init" and path == "/var/cache/diffkeeper/btf")
                       or (tracefs and c["name"] == "diffkeeper-sidecar" and path == HOST_TRACEFS))
            if not m.get("readOnly") and not allowed:
                writable.append(f"{c['name']}:{m['mountPath']} (hostPath {path})")
    checks.result(f"{label}: no other writable hostPath mount", not writable, f"writable: {writable}")
    wanted = ["diffkeeper-sidecar"] if tracefs and kind != "DaemonSet" else []
    checks.result(f"{label}: the node's tracefs is mounted by {wanted or 'no container'}", tracefs_users == wanted,
                  f"mounted by {tracefs_users}")


def check_pods(checks, name, objects, init_flags, sidecar_flags, caps_wanted):
    tracefs = wants_tracefs(name)
    for label, kind, spec in pod_specs(objects):
        label = f"{name}: {label}"
        inits, containers = spec.get("initContainers", []), spec.get("containers", [])
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        check_host_mounts(checks, label, kind, inits + containers, volumes, tracefs)
        for c in inits + containers:
            check_container_hardening(checks, f"{label}/{c['name']}", c)
        checks.result(f"{label}: seccomp RuntimeDefault",
               spec.get("securityContext", {}).get("seccompProfile", {}).get("type") == "RuntimeDefault", "")
        init = find(inits, "diffkeeper-init")
        checks.result(f"{label}: diffkeeper-init is the first init container", bool(inits) and inits[0] is init, "")
        if init:
            check_init(checks, f"{label}/diffkeeper-init", init, volumes, kind, init_flags)
        if kind == "DaemonSet":
            continue
        # The app and diffkeeper-init write as 65532: fsGroup opens root-owned volumes to them.
        checks.result(f"{label}: fsGroup 65532 for the non-root writers",
                      spec.get("securityContext", {}).get("fsGroup") == 65532,
                      f"securityContext: {spec.get('securityContext')}")
        native = find(inits, "diffkeeper-sidecar")
        classic = find(containers, "diffkeeper-sidecar")
        checks.result(f"{label}: exactly one diffkeeper-sidecar", (native is None) != (classic is None), "")
        if native or classic:
            check_sidecar(checks, f"{label}/diffkeeper-sidecar", native or classic, native is not None,
                          sidecar_flags, caps_wanted, volumes, tracefs)


def init_args(objects, kind="Deployment"):
    for _label, k, spec in pod_specs(objects):
        if k == kind:
            return args_of(find(spec.get("initContainers", []), "diffkeeper-init") or {})
    return []


def volume(objects, kind, name):
    for _label, k, spec in pod_specs(objects):
        if k == kind:
            return next((v for v in spec.get("volumes", []) if v["name"] == name), {})
    return {}


def sidecar_caps(name):
    """The capabilities the sidecar must add: BPF and PERFMON, unless an old-kernel component
    (no CAP_BPF before 5.8; RLIMIT_MEMLOCK charging before 5.11) is in the build."""
    if "kernel-pre-5.8" in name:
        return ["SYS_ADMIN", "SYS_RESOURCE"]
    if "kernel-pre-5.11" in name:
        return ["BPF", "PERFMON", "SYS_RESOURCE"]
    return ["BPF", "PERFMON"]


def wants_tracefs(name):
    """Whether the build has the kretprobe-tracefs component (the node's tracefs in the sidecar)."""
    return "kretprobe-tracefs" in name


def check_tampered(checks, name, objects, init_flags, sidecar_flags):
    """The tracefs checks bite: each tampered copy of a kretprobe-tracefs rendering must fail."""
    def sidecar_and_init(objs):
        spec = next(s for _l, k, s in pod_specs(objs) if k == "Deployment")
        inits = spec["initContainers"]
        return find(inits, "diffkeeper-sidecar") or find(spec["containers"], "diffkeeper-sidecar"), inits[0], spec

    def tracefs_mount(container):
        return next(m for m in container["volumeMounts"] if m["mountPath"] == SIDECAR_TRACEFS)

    def read_only(objs):
        tracefs_mount(sidecar_and_init(objs)[0])["readOnly"] = True

    def into_init(objs):
        sidecar, init, _spec = sidecar_and_init(objs)
        mount = tracefs_mount(sidecar)
        sidecar["volumeMounts"].remove(mount)
        init["volumeMounts"].append(mount)

    def also_into_init(objs):
        sidecar, init, _spec = sidecar_and_init(objs)
        init["volumeMounts"].append(dict(tracefs_mount(sidecar)))

    def below_sys(objs):
        sidecar = sidecar_and_init(objs)[0]
        tracefs_mount(sidecar)["mountPath"] = HOST_TRACEFS
        sidecar["args"] = [a.replace(SIDECAR_TRACEFS, HOST_TRACEFS) for a in sidecar["args"]]

    def created_if_missing(objs):
        spec = sidecar_and_init(objs)[2]
        volume = next(v for v in spec["volumes"] if v.get("hostPath", {}).get("path") == HOST_TRACEFS)
        volume["hostPath"]["type"] = "DirectoryOrCreate"

    def no_flag(objs):
        sidecar = sidecar_and_init(objs)[0]
        sidecar["args"] = [a for a in sidecar["args"] if not a.startswith("--tracefs-dir")]

    for what, tamper in (("mounted read-only", read_only), ("mounted into the init container instead", into_init),
                         ("mounted into the init container too", also_into_init),
                         ("mounted at /sys/kernel/tracing", below_sys),
                         ("hostPath type DirectoryOrCreate", created_if_missing),
                         ("without --tracefs-dir", no_flag)):
        copy = yaml.safe_load(yaml.safe_dump(objects))
        try:
            tamper(copy)
        except (StopIteration, KeyError) as err:
            checks.result(f"{name}: the checks reject the tracefs {what}", False,
                          f"cannot tamper: the rendering has no such tracefs mount ({err!r})")
            continue
        quiet = Checks(quiet=True)
        check_pods(quiet, name, copy, init_flags, sidecar_flags, sidecar_caps(name))
        checks.result(f"{name}: the checks reject the tracefs {what}", quiet.failures > 0,
                      "every check passed on the tampered rendering")
        print(f"INFO {name}, tracefs {what}: failed as it must: {'; '.join(quiet.failed)}")


def check_scenario(checks, name, objects):
    """What makes each overlay the seed scenario it stands for."""
    args = init_args(objects)
    if name == "k8s/base":
        checks.result(f"{name}: per-pod emptyDir cache", "emptyDir" in volume(objects, "Deployment", "btf-cache"), "")
    elif name.endswith("/air-gapped"):
        checks.result(f"{name}: downloads disabled, baked dir used",
               "--disable-btfhub-download" in args and "--baked-btf-dir=/opt/diffkeeper/btf" in args, str(args))
    elif name.endswith("/strict-firewall"):
        mirror = [a for a in args if a.startswith("--btfhub-mirror=https://")]
        ca = [a.split("=", 1)[1] for a in args if a.startswith("--ca-file=")]
        ca_volume = volume(objects, "Deployment", "mirror-ca").get("configMap", {}).get("name", "")
        configmaps = [o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == ca_volume]
        checks.result(f"{name}: internal https mirror", bool(mirror), str(args))
        checks.result(f"{name}: --ca-file inside the CA ConfigMap's mount, whose ConfigMap has ca.crt",
               bool(ca) and ca[0].startswith("/etc/diffkeeper/mirror-ca/") and bool(configmaps)
               and os.path.basename(ca[0]) in configmaps[0].get("data", {}), f"{ca} {ca_volume}")
    elif name.endswith("/node-cache"):
        node = "/var/cache/diffkeeper/btf"
        checks.result(f"{name}: DaemonSet fills the node cache on hostPath {node}",
               volume(objects, "DaemonSet", "btf-cache").get("hostPath", {}).get("path") == node, "")
        checks.result(f"{name}: pods mount the node cache",
               volume(objects, "Deployment", "btf-cache").get("hostPath", {}).get("path") == node
               and "emptyDir" not in volume(objects, "Deployment", "btf-cache"), "")
        checks.result(f"{name}: pods' init never downloads", "--disable-btfhub-download" in args, str(args))


# ---------------------------------------------------------------- main
def main():
    checks = Checks()
    bin_dir = sys.argv[1]
    init_flags = binary_flags(bin_dir, "diffkeeper-init")
    sidecar_flags = binary_flags(bin_dir, "diffkeeper-sidecar")
    checks.result("diffkeeper-init --help lists its flags", "--btf-cache-dir" in init_flags, str(sorted(init_flags)))
    checks.result("diffkeeper-sidecar --help lists its flags", "--state-dir" in sidecar_flags, str(sorted(sidecar_flags)))

    all_kustomizations = kustomizations()
    for path in check_inventory(checks, all_kustomizations):
        for version in VERSIONS:
            ok, out = validate(path, version)
            checks.result(f"kubernetes-validate --strict {version}: {rel(path)}", ok, out)

    out_dir = tempfile.mkdtemp(prefix="diffkeeper-k8s-")
    builds = [(d, doc) for d, kind, doc in all_kustomizations if kind == "Kustomization"]
    # Components compose with the scenario overlays: node-cache on a pre-1.29 cluster, and the
    # old-kernel capability sets on top of other overlays (before classic-sidecar).
    combos = {
        "node-cache + classic-sidecar component": ("overlays/node-cache", ["classic-sidecar"]),
        "base + kernel-pre-5.8 component": ("base", ["kernel-pre-5.8"]),
        "air-gapped + kernel-pre-5.11 + classic-sidecar components":
            ("overlays/air-gapped", ["kernel-pre-5.11", "classic-sidecar"]),
        "node-cache + kernel-pre-5.8 + classic-sidecar components":
            ("overlays/node-cache", ["kernel-pre-5.8", "classic-sidecar"]),
        # The node's tracefs for kprobe mode's maxactive: alone, with either old-kernel component
        # in either order (neither touches what the other patches), before classic-sidecar.
        "base + kretprobe-tracefs component": ("base", ["kretprobe-tracefs"]),
        "base + kretprobe-tracefs + kernel-pre-5.8 components": ("base", ["kretprobe-tracefs", "kernel-pre-5.8"]),
        "base + kernel-pre-5.8 + kretprobe-tracefs components": ("base", ["kernel-pre-5.8", "kretprobe-tracefs"]),
        "base + kretprobe-tracefs + kernel-pre-5.11 components": ("base", ["kretprobe-tracefs", "kernel-pre-5.11"]),
        "base + kernel-pre-5.11 + kretprobe-tracefs components": ("base", ["kernel-pre-5.11", "kretprobe-tracefs"]),
        "base + kretprobe-tracefs + classic-sidecar components": ("base", ["kretprobe-tracefs", "classic-sidecar"]),
        "node-cache + kernel-pre-5.8 + kretprobe-tracefs + classic-sidecar components":
            ("overlays/node-cache", ["kernel-pre-5.8", "kretprobe-tracefs", "classic-sidecar"]),
        "air-gapped + kretprobe-tracefs + kernel-pre-5.11 + classic-sidecar components":
            ("overlays/air-gapped", ["kretprobe-tracefs", "kernel-pre-5.11", "classic-sidecar"]),
    }
    # Pairs that must render the same whichever comes first.
    same_either_way = [("base + kretprobe-tracefs + kernel-pre-5.8 components",
                        "base + kernel-pre-5.8 + kretprobe-tracefs components"),
                       ("base + kretprobe-tracefs + kernel-pre-5.11 components",
                        "base + kernel-pre-5.11 + kretprobe-tracefs components")]
    for title, (base, components) in combos.items():
        combo = os.path.join(out_dir, re.sub(r"[^a-z0-9.]+", "-", title))
        os.makedirs(combo)
        write_kustomization(combo, base, components)
        builds.append((combo, {"title": title}))

    # In the wrong order a component's patch cannot find the sidecar: the build must fail
    # loudly instead of leaving BPF/PERFMON on a kernel that does not know them, or the tracefs
    # mount on another container.
    for component in ("kernel-pre-5.8", "kretprobe-tracefs"):
        wrong = os.path.join(out_dir, f"wrong-order-{component}")
        os.makedirs(wrong)
        write_kustomization(wrong, "base", ("classic-sidecar", component))
        rc, _rendered, err = render(wrong)
        checks.result(f"classic-sidecar before {component} fails the build (never silently)", rc != 0, err[:300])

    rendered_by_name = {}
    for directory, doc in builds:
        name = rel(directory) if directory.startswith(REPO) else doc["title"]
        rc, rendered, err = render(directory)
        rendered_by_name[name] = rendered if rc == 0 else None
        checks.result(f"kustomize build {name}", rc == 0 and rendered.strip() != "", err)
        if rc != 0:
            continue
        other = kubectl_kustomize(directory)
        if other is not None:
            checks.result(f"kubectl kustomize {name} renders the same", other == rendered, other[:300])
        out_file = os.path.join(out_dir, name.replace("/", "_").replace(" ", "") + ".yaml")
        with open(out_file, "w") as f:
            f.write(rendered)
        objects = load_yaml_docs(out_file)
        for version in VERSIONS:
            ok, out = validate(out_file, version)
            checks.result(f"kubernetes-validate --strict {version}: kustomize build {name}", ok, out)
            if ok:
                passed = re.findall(r"passed for resource (\S+)", out)
                print(f"INFO kubernetes-validate --strict -k {version} {name}: passed for {', '.join(passed)}")
        native = any(find(s.get("initContainers", []), "diffkeeper-sidecar") for _l, _k, s in pod_specs(objects))
        ok, out = validate(out_file, PRE_SIDECAR_VERSION)
        if native:
            checks.result(f"{name}: native sidecar rejected by the {PRE_SIDECAR_VERSION} schema (strict validation bites)",
                   not ok and "restartPolicy" in out, out)
        else:
            checks.result(f"{name}: classic sidecar validates on {PRE_SIDECAR_VERSION} too", ok, out)
        check_pods(checks, name, objects, init_flags, sidecar_flags, sidecar_caps(name))
        if name == "base + kretprobe-tracefs component" or name == "base + kretprobe-tracefs + classic-sidecar components":
            check_tampered(checks, name, objects, init_flags, sidecar_flags)
        check_scenario(checks, name, objects)
    for one, other in same_either_way:
        a, b = rendered_by_name.get(one), rendered_by_name.get(other)
        checks.result(f"{one} and {other} render the same", a is not None and a == b, "")
    shutil.rmtree(out_dir)
    return 1 if checks.failures else 0


if __name__ == "__main__":
    sys.exit(main())
