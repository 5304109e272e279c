#!/usr/bin/env python3
"""The Helm chart k8s/helm/diffkeeper against the kustomize tree k8s/: one source of truth.

For each scenario the chart's values-*.yaml files name, Helm renders the chart and kustomize
renders the matching overlay (or the base with the matching components); both must give the same
objects. manifests_test.py validates and checks the kustomize side, so the chart inherits those
checks; the state recorder's checks (check_recorder: the store's PVC, --store, DAC_READ_SEARCH,
init's read-only restore into the state volume) also run on the chart's own rendering, and the
default rendering must have none of it. The chart is also linted in strict mode for every scenario.

Helm: no helm binary is packaged for Debian 12 or on PyPI, so Helm's own Go engine (Helm v4, the
PyPI package helm-python-sdk, installed by scripts/setup.sh) loads, lints and renders the chart
offline: the same code `helm lint` and `helm template` run.

usage: helm_chart_test.py [BIN_DIR]   (prints PASS/FAIL lines for tests/packaging/run.sh; BIN_DIR unused)
"""

import os
import re
import sys
import tempfile

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from manifests_test import K8S, Checks, check_recorder, render, write_kustomization  # noqa: E402

CHART = os.path.join(K8S, "helm", "diffkeeper")
MIRROR_CA = os.path.join(K8S, "overlays", "strict-firewall", "mirror-ca.crt")
# kustomize's configMapGenerator appends a content hash to the name; the chart's name has none.
GENERATED_NAME = re.compile(r"\b(diffkeeper-mirror-ca)-[a-z0-9]{10}\b")

# scenario: (values files of the chart, extra values, kustomize overlay or (base, components))
SCENARIOS = {
    "default (per-pod cache)": ([], {}, "base"),
    "classic sidecar (< 1.29)": (["values-classic-sidecar.yaml"], {}, "overlays/classic-sidecar"),
    "mixed-node hostPath cache": (["values-node-cache.yaml"], {}, "overlays/node-cache"),
    "air-gapped bundle": (["values-air-gapped.yaml"], {}, "overlays/air-gapped"),
    "private mirror": (["values-private-mirror.yaml"], {"init": {"mirror": {"caCert": "FILE"}}},
                       "overlays/strict-firewall"),
    "old kernels 4.18-5.7": (["values-kernel-pre-5.8.yaml"], {}, ("base", ["kernel-pre-5.8"])),
    "old kernels 5.8-5.10": (["values-kernel-pre-5.11.yaml"], {}, ("base", ["kernel-pre-5.11"])),
    "old kernels 4.18-5.7, kprobe mode, < 1.29": (
        ["values-kernel-pre-5.8.yaml", "values-kretprobe-tracefs.yaml", "values-classic-sidecar.yaml"], {},
        ("base", ["kernel-pre-5.8", "kretprobe-tracefs", "classic-sidecar"])),
    "state recorder": (["values-state-recorder.yaml"], {}, ("base", ["state-recorder"])),
    "state recorder, kernels 5.8-5.10, node cache, < 1.29": (
        ["values-node-cache.yaml", "values-kernel-pre-5.11.yaml", "values-state-recorder.yaml",
         "values-classic-sidecar.yaml"], {},
        ("overlays/node-cache", ["kernel-pre-5.11", "state-recorder", "classic-sidecar"])),
}


def merge(into, values):
    """Helm's merge of -f files: maps merge key by key, everything else is replaced."""
    for key, value in values.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            merge(into[key], value)
        else:
            into[key] = value
    return into


def scenario_values(files, extra):
    values = {}
    for name in files:
        with open(os.path.join(CHART, name)) as f:
            merge(values, yaml.safe_load(f) or {})
    if extra.get("init", {}).get("mirror", {}).get("caCert") == "FILE":
        # What `--set-file init.mirror.caCert=mirror-ca.crt` passes.
        with open(MIRROR_CA) as f:
            extra = {"init": {"mirror": {"caCert": f.read()}}}
    return merge(values, extra)


def objects(text):
    """Rendered YAML as {(kind, name): object}, generated names without their hash."""
    found = {}
    for doc in yaml.safe_load_all(GENERATED_NAME.sub(r"\1", text)):
        if doc:
            # Pod volumes are a map keyed by name (their order means nothing; kustomize's
            # strategic merge moves a replaced volume to the front).
            pod = doc.get("spec", {}).get("template", {}).get("spec", {})
            if "volumes" in pod:
                pod["volumes"] = sorted(pod["volumes"], key=lambda v: v["name"])
            found[(doc["kind"], doc["metadata"]["name"])] = doc
    return found


def differences(left, right, path=""):
    """Where two parsed objects differ, as short path strings."""
    if isinstance(left, dict) and isinstance(right, dict):
        out = []
        for key in sorted(set(left) | set(right), key=str):
            if key not in left or key not in right:
                out.append(f"{path}/{key}: only in {'helm' if key in left else 'kustomize'}")
            else:
                out += differences(left[key], right[key], f"{path}/{key}")
        return out
    if isinstance(left, list) and isinstance(right, list) and len(left) == len(right):
        return [d for i, (a, b) in enumerate(zip(left, right)) for d in differences(a, b, f"{path}/{i}")]
    return [] if left == right else [f"{path}: helm {left!r} != kustomize {right!r}"]


def check_state_recorder(checks, scenario, values, rendered):
    """With stateRecorder.enabled, the kustomize component's checks on the chart's objects;
    without, no store anywhere (the recorder is off by default)."""
    if values.get("stateRecorder", {}).get("enabled"):
        check_recorder(checks, f"helm template ({scenario})", rendered)
        return
    text = yaml.safe_dump_all(rendered)
    leaked = [w for w in ("PersistentVolumeClaim", "--store", "--restore-from", "DAC_READ_SEARCH") if w in text]
    checks.result(f"helm template ({scenario}): no state recorder unless enabled", not leaked, str(leaked))


def kustomize(source, tmp):
    if isinstance(source, str):
        directory = os.path.normpath(os.path.join(K8S, source))
    else:
        base, components = source
        directory = tempfile.mkdtemp(dir=tmp)
        write_kustomization(directory, base, components)
    rc, rendered, err = render(directory)
    return rendered if rc == 0 else None, err


def main():
    try:
        import helm_python
    except ImportError:
        sys.exit("helm_chart_test: the helm-python-sdk package is not installed (run scripts/setup.sh)")
    checks = Checks()
    chart = helm_python.Chart.load(CHART)
    print(f"INFO chart {chart.name} {chart.version}, Helm engine {helm_python._native.helm_sdk_version()}")
    with tempfile.TemporaryDirectory() as tmp:
        for scenario, (files, extra, source) in SCENARIOS.items():
            values = scenario_values(files, extra)
            report = helm_python.lint(CHART, values, strict=True, kube_version="v1.29.0")
            problems = [m for m in report.get("messages", []) if m.get("severity", 0) >= 2] + report.get("errors", [])
            checks.result(f"helm lint --strict ({scenario})", not problems, str(problems)[:600])
            try:
                rendered = "\n---\n".join(chart.render(values, name="diffkeeper", namespace="default").values())
            except helm_python.HelmError as err:
                checks.result(f"helm template ({scenario})", False, str(err))
                continue
            expected, err = kustomize(source, tmp)
            if expected is None:
                checks.result(f"kustomize build ({scenario})", False, err)
                continue
            helm_objects, kustomize_objects = objects(rendered), objects(expected)
            check_state_recorder(checks, scenario, values, list(helm_objects.values()))
            kinds = ", ".join(f"{k}/{n}" for k, n in sorted(helm_objects))
            print(f"INFO helm template with {' '.join(['-f ' + f for f in files]) or 'the defaults'}: {kinds}")
            checks.result(f"helm and kustomize render the same objects ({scenario})",
                          set(helm_objects) == set(kustomize_objects),
                          f"helm: {sorted(helm_objects)}, kustomize: {sorted(kustomize_objects)}")
            for key in sorted(set(helm_objects) & set(kustomize_objects)):
                diff = differences(helm_objects[key], kustomize_objects[key])
                checks.result(f"helm and kustomize agree on {key[0]}/{key[1]} ({scenario})", not diff,
                              "; ".join(diff[:8]))
    return 1 if checks.failures else 0


if __name__ == "__main__":
    sys.exit(main())
