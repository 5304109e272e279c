#!/usr/bin/env python3
"""Describes an OCI archive (an `oci-archive:` tar of an OCI image layout) as JSON on stdout.

    scripts/oci_inspect.py [--summary] ARCHIVE

For the image index in it: its media type and digest, and per manifest the platform, the digest,
the config's digest and architecture/os, the compressed and uncompressed layer bytes, the regular
files of the layers, and for each ELF file under usr/local/bin its machine (x86_64, aarch64, ...)
and whether it is static (no PT_INTERP). scripts/image.sh prints a summary from it; the image test
asserts on it. --summary prints one line per manifest instead. Exits 1 with a message naming the problem when ARCHIVE is not such an archive.
"""
import gzip
import io
import json
import struct
import sys
import tarfile

INDEX_TYPES = {
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
}
ELF_MACHINES = {3: "i386", 40: "arm", 62: "x86_64", 183: "aarch64", 243: "riscv64"}
PT_INTERP = 3


class BadArchive(Exception):
    pass


def elf_info(data):
    """(machine, static) of an ELF64 little-endian file, or None when it is not one."""
    if len(data) < 64 or data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        return None
    (machine,) = struct.unpack_from("<H", data, 18)
    (phoff,) = struct.unpack_from("<Q", data, 32)
    phentsize, phnum = struct.unpack_from("<HH", data, 54)
    static = True
    for i in range(phnum):
        off = phoff + i * phentsize
        if off + 4 > len(data):
            raise BadArchive(f"truncated ELF program header table at {off}")
        (p_type,) = struct.unpack_from("<I", data, off)
        if p_type == PT_INTERP:
            static = False
    return {"machine": ELF_MACHINES.get(machine, f"e_machine={machine}"), "static": static}


def inspect(path):
    try:
        archive = tarfile.open(path)
    except (OSError, tarfile.TarError) as e:
        raise BadArchive(f"{path}: not a tar archive ({e})")
    with archive:
        def blob(digest):
            algo, _, hexd = digest.partition(":")
            try:
                return archive.extractfile(f"blobs/{algo}/{hexd}").read()
            except (KeyError, AttributeError):
                raise BadArchive(f"{path}: blob {digest} is missing")

        try:
            top = json.loads(archive.extractfile("index.json").read())
        except (KeyError, AttributeError):
            raise BadArchive(f"{path}: no index.json (not an OCI image layout archive)")
        entries = top.get("manifests", [])
        index = top
        index_desc = {"mediaType": "application/vnd.oci.image.index.v1+json", "digest": None}
        # `podman manifest push --all` writes index.json pointing at the pushed index blob.
        if len(entries) == 1 and entries[0].get("mediaType") in INDEX_TYPES:
            index_desc = entries[0]
            index = json.loads(blob(index_desc["digest"]))
        result = {
            "index_media_type": index.get("mediaType", index_desc["mediaType"]),
            "index_digest": index_desc["digest"],
            "manifests": [],
        }
        for desc in index.get("manifests", []):
            manifest = json.loads(blob(desc["digest"]))
            config = json.loads(blob(manifest["config"]["digest"]))
            plat = desc.get("platform", {})
            entry = {
                "platform": f"{plat.get('os', '?')}/{plat.get('architecture', '?')}",
                "digest": desc["digest"],
                "media_type": desc.get("mediaType"),
                "config_digest": manifest["config"]["digest"],
                "config_platform": f"{config.get('os', '?')}/{config.get('architecture', '?')}",
                "user": config.get("config", {}).get("User", ""),
                "labels": config.get("config", {}).get("Labels") or {},
                "compressed_bytes": sum(layer["size"] for layer in manifest["layers"]),
                "uncompressed_bytes": 0,
                "files": [],
                "elf": {},
            }
            for layer in manifest["layers"]:
                raw = blob(layer["digest"])
                if layer["mediaType"].endswith("gzip"):
                    raw = gzip.decompress(raw)
                entry["uncompressed_bytes"] += len(raw)
                with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
                    for member in tar:
                        name = member.name.lstrip("./")
                        if member.isdir():
                            entry["files"].append(name.rstrip("/") + "/")
                            continue
                        entry["files"].append(name)
                        if member.isfile() and name.startswith("usr/local/bin/"):
                            info = elf_info(tar.extractfile(member).read())
                            entry["elf"][name] = info or {"machine": "not ELF", "static": False}
            result["manifests"].append(entry)
        return result


def summary(d):
    lines = [f"index {d['index_digest']} ({d['index_media_type']})"]
    for m in d["manifests"]:
        machines = ", ".join(sorted({e["machine"] for e in m["elf"].values()})) or "none"
        lines.append(f"  {m['platform']:12} {m['digest']}  {m['uncompressed_bytes']} bytes"
                     f" ({m['compressed_bytes']} compressed), binaries: {machines}")
    return "\n".join(lines)


def main():
    args = sys.argv[1:]
    brief = args[:1] == ["--summary"]
    if brief:
        args = args[1:]
    if len(args) != 1:
        sys.exit("usage: oci_inspect.py [--summary] ARCHIVE")
    try:
        d = inspect(args[0])
    except BadArchive as e:
        sys.exit(f"oci_inspect: {e}")
    if brief:
        print(summary(d))
    else:
        json.dump(d, sys.stdout, indent=1)
        print()


if __name__ == "__main__":
    main()
