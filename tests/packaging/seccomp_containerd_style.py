#!/usr/bin/env python3
"""Podman's stock seccomp profile changed the way containerd's default reads: bpf(2) allowed with
CAP_BPF and perf_event_open(2) with CAP_PERFMON. Podman's own profile (Debian 12's podman 4.3)
denies both (EPERM) unless the container has CAP_SYS_ADMIN; containerd's has no such rule. This is
what Kubernetes' RuntimeDefault means on a current containerd node.

usage: seccomp_containerd_style.py PODMAN_PROFILE OUT
"""
import json
import sys

if len(sys.argv) != 3:
    sys.exit("usage: seccomp_containerd_style.py PODMAN_PROFILE OUT")
with open(sys.argv[1]) as f:
    profile = json.load(f)
for rule in profile["syscalls"]:
    if rule["action"] == "SCMP_ACT_ERRNO" and "CAP_SYS_ADMIN" in rule.get("excludes", {}).get("caps", []):
        rule["names"] = [n for n in rule["names"] if n not in ("bpf", "perf_event_open")]
profile["syscalls"] = [r for r in profile["syscalls"] if r["names"]]
for syscall, cap in (("bpf", "CAP_BPF"), ("perf_event_open", "CAP_PERFMON")):
    profile["syscalls"].append({"names": [syscall], "action": "SCMP_ACT_ALLOW", "args": [], "includes": {"caps": [cap]}})
with open(sys.argv[2], "w") as f:
    json.dump(profile, f)
