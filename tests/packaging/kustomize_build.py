#!/usr/bin/env python3
"""`kustomize build DIR` without a kustomize binary: calls the kustomize Go API (sigs.k8s.io/kustomize/api)
compiled into the shared library that PyPI's `pykustomize` wheel ships. Only the library is used, through
ctypes (the wheel's Python layer wants Python >= 3.14 and cffi; scripts/setup.sh installs it with
--no-deps --ignore-requires-python). Prints the rendered YAML; exits 1 with kustomize's own error."""

import ctypes
import importlib.util
import json
import os
import sys


def load_library() -> ctypes.CDLL:
    spec = importlib.util.find_spec("pykustomize")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("kustomize_build: the pykustomize wheel is not installed (run scripts/setup.sh)")
    lib_path = os.path.join(spec.submodule_search_locations[0], "_lib", "linux-amd64", "libpykustomize.so")
    try:
        lib = ctypes.CDLL(lib_path)
    except OSError as err:
        sys.exit(f"kustomize_build: cannot load {lib_path}: {err}")
    lib.pykustomize_build.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_void_p)]
    lib.pykustomize_build.restype = ctypes.c_int
    lib.pykustomize_last_error.restype = ctypes.c_void_p
    lib.pykustomize_free.argtypes = [ctypes.c_void_p]
    return lib


def build(directory: str) -> str:
    lib = load_library()
    # The same defaults as `kustomize build`: files only from inside the kustomization root, no plugins.
    options = json.dumps({"load_restrictions": 0, "reorder": "unspecified", "add_managedby_label": False,
                          "enable_plugins": False, "enable_helm": False, "helm_command": ""})
    result = ctypes.c_void_p()
    status = lib.pykustomize_build(os.path.abspath(directory).encode(), options.encode(), ctypes.byref(result))
    if status != 0:
        err = lib.pykustomize_last_error()
        message = ctypes.string_at(err).decode() if err else "unknown error"
        sys.exit(f"kustomize build {directory}: {message}")
    try:
        return ctypes.string_at(result.value).decode()
    finally:
        lib.pykustomize_free(result)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: kustomize_build.py KUSTOMIZATION_DIR")
    sys.stdout.write(build(sys.argv[1]))
