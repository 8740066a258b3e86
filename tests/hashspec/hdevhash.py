#!/usr/bin/env python3
"""hdevhash: an independent implementation of hdev's environment hash, schema version 2
(and version 1, which an environment without sources is hashed at).

Written from docs/HASH.md alone (standard library only: tomllib, hashlib, json), so that
the specification, not hdev's source, is what the hash means. It assumes the Envfile is
valid (`hdev validate` accepts it): it applies the defaults and expansions the
specification describes, and does not repeat hdev's checks.

Usage:
    hdevhash.py ENVFILE [--lock FILE | --no-lock] [--box NAME=DIGEST]... [--source NAME=TREE]... [--json]

Source trees (docs/HASH.md, "Sources"): the tree given with `--source NAME=TREE`, else
the lock file's `tree` of `[sources.NAME]` while it stands for the Envfile's source (same
`git`, ref and `subdir`).

Box digests (docs/HASH.md, "Box digests"), first found wins: the Envfile's own
`sha256`; the pin in the lock file (`ENVFILE.lock` beside the Envfile unless `--lock` or
`--no-lock`); a digest given with `--box NAME=DIGEST` (what hdev's box store holds);
for a recipe box, the recipe digest; for a file box that is not a box archive, the
sha256 of its bytes. A box archive's digest must be given with `--box`.

Output: the environment hash and each machine's hash, one per line
(`machine NAME DIGEST`, then `environment DIGEST`); with `--json` an object
`{"hash", "schema_version", "machines", "boxes", "files"}`.
"""

from __future__ import annotations

import argparse
import hashlib
import ipaddress
import json
import os
import sys
import tomllib

SCHEMA_VERSION = 2
SOURCE_PREFIX = "source:"


def source_of(path: str) -> str | None:
    """The source a `source:NAME/PATH` path names."""
    if not path.startswith(SOURCE_PREFIX):
        return None
    return path[len(SOURCE_PREFIX):].split("/", 1)[0]


def synced_folder(f: dict) -> dict:
    if "source" in f:
        return {"host": SOURCE_PREFIX + f["source"].rstrip("/"), "guest": f["guest"], "readonly": True}
    readonly = True if f["host"].startswith(SOURCE_PREFIX) else f.get("readonly", False)
    return {"host": f["host"], "guest": f["guest"], "readonly": readonly}

# Unicode White_Space, what the size and duration readers trim.
WHITE_SPACE = "\t\n\x0b\x0c\r \x85\xa0\u1680" + "".join(
    chr(c) for c in range(0x2000, 0x200B)
) + "\u2028\u2029\u202f\u205f\u3000"


class SpecError(Exception):
    """The input is outside what the specification defines (or not valid)."""


# ---------------------------------------------------------------------------------------
# Canonical JSON and digests


def canonical_json(value) -> bytes:
    """Keys sorted at every level, no whitespace, UTF-8, only `"`, `\\` and controls escaped."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def sha256_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def file_hex(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            block = f.read(1 << 20)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


def lossy(name: bytes) -> str:
    return name.decode("utf-8", errors="replace")


def _tree_into(h, root: bytes, rel: bytes) -> None:
    folder = os.path.join(root, rel) if rel else root
    for name in sorted(os.listdir(folder)):
        rel_child = os.path.join(rel, name) if rel else name
        path = os.path.join(root, rel_child)
        st = os.lstat(path)
        shown = lossy(rel_child)
        if os.path.stat.S_ISDIR(st.st_mode):
            h.update(f"dir {shown}\n".encode())
            _tree_into(h, root, rel_child)
        elif os.path.stat.S_ISLNK(st.st_mode):
            target = lossy(os.readlink(path))
            h.update(f"link {shown} {target}\n".encode())
        else:
            x = "x" if st.st_mode & 0o111 else "-"
            h.update(f"file {shown} {x} {file_hex(path)}\n".encode())


def digest_path(path: str) -> str:
    """A file: `sha256:` of its bytes (a link is followed); a folder: `tree-sha256:`."""
    st = os.lstat(path)
    if os.path.stat.S_ISDIR(st.st_mode):
        h = hashlib.sha256()
        _tree_into(h, os.fsencode(path), b"")
        return "tree-sha256:" + h.hexdigest()
    return "sha256:" + file_hex(path)


# ---------------------------------------------------------------------------------------
# Values as the Envfile spells them


def parse_size(s: str) -> int:
    t = s.strip(WHITE_SPACE)
    end = 0
    while end < len(t) and (t[end] in "0123456789."):
        end += 1
    num, unit = t[:end], t[end:].strip(WHITE_SPACE)
    if not num:
        raise SpecError(f"size `{s}` does not start with a number")
    n = float(num)
    mult = {
        "B": 1,
        "K": 1 << 10, "k": 1 << 10, "KiB": 1 << 10,
        "M": 1 << 20, "MiB": 1 << 20,
        "G": 1 << 30, "GiB": 1 << 30,
        "T": 1 << 40, "TiB": 1 << 40,
        "KB": 1000, "kB": 1000,
        "MB": 1000**2, "GB": 1000**3, "TB": 1000**4,
    }.get(unit)
    if mult is None:
        raise SpecError(f"size `{s}` has no known unit")
    b = n * float(mult)
    if b < 1.0 or b > float(1 << 50):
        raise SpecError(f"size `{s}` is out of range")
    return int(b)


def parse_duration_ms(s: str) -> int:
    t = s.strip(WHITE_SPACE)
    end = 0
    while end < len(t) and t[end] in "0123456789":
        end += 1
    num, unit = t[:end], t[end:]
    mult = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000}.get(unit)
    if not num or mult is None:
        raise SpecError(f"duration `{s}` is not a whole number and a unit")
    ms = int(num) * mult
    if ms >= 1 << 64:
        raise SpecError(f"duration `{s}` is out of range")
    return ms


def parse_port(s: str) -> int:
    digits = s[1:] if s.startswith("+") else s
    if not digits or not all(c in "0123456789" for c in digits) or not 1 <= int(digits) <= 65535:
        raise SpecError(f"`{s}` is not a port")
    return int(digits)


def ipv4(s: str) -> ipaddress.IPv4Address:
    return ipaddress.IPv4Address(s)


def parse_port_map(s: str) -> dict:
    spec, protocol = s, "tcp"
    if "/" in s:
        spec, proto = s.rsplit("/", 1)
        if proto not in ("tcp", "udp"):
            raise SpecError(f"port mapping `{s}`: unknown protocol")
        protocol = proto
    parts = spec.split(":")
    host_ip = host = None
    if len(parts) == 1:
        guest = parse_port(parts[0])
    elif len(parts) == 2:
        host, guest = parse_port(parts[0]), parse_port(parts[1])
    elif len(parts) == 3:
        host_ip = str(ipv4(parts[0]))
        host, guest = parse_port(parts[1]), parse_port(parts[2])
    else:
        raise SpecError(f"port mapping `{s}` has too many `:`")
    return {"host_ip": host_ip, "host": host, "guest": guest, "protocol": protocol}


def scalar_string(v) -> str:
    """An environment variable or extra var: strings as they are, booleans and integers
    as text (an integer's value in decimal, however it is written)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return v
    raise SpecError(f"`{v!r}` is not a string, integer or boolean")


def i32(n: int) -> int:
    return (n + (1 << 31)) % (1 << 32) - (1 << 31)


# ---------------------------------------------------------------------------------------
# The model


def provision_step(step: dict) -> dict:
    name = step.get("name")
    if "shell" in step:
        return {"kind": "shell", "name": name, "inline": step["shell"]}
    if "script" in step:
        return {"kind": "script", "name": name, "path": step["script"], "args": list(step.get("args", []))}
    if "file" in step:
        return {
            "kind": "file",
            "name": name,
            "source": step["file"],
            "destination": step["destination"],
        }
    if "ansible" in step:
        extra = {k: scalar_string(v) for k, v in step.get("extra_vars", {}).items()}
        return {"kind": "ansible", "name": name, "playbook": step["ansible"], "extra_vars": extra}
    raise SpecError(f"a provision step of no known kind: {step!r}")


def step_inputs(step: dict) -> list[str]:
    key = {"shell": None, "script": "path", "file": "source", "ansible": "playbook"}[step["kind"]]
    return [step[key]] if key else []


def healthcheck(v) -> dict | None:
    if v is None:
        return None
    if isinstance(v, str):
        return {"command": v, "interval_ms": 500, "timeout_ms": 5000, "retries": 60}
    return {
        "command": v["command"],
        "interval_ms": parse_duration_ms(v["interval"]) if "interval" in v else 500,
        "timeout_ms": parse_duration_ms(v["timeout"]) if "timeout" in v else 5000,
        "retries": v.get("retries", 60),
    }


def instance_names(group: str, m: dict) -> list[str]:
    count = m.get("count", 1)
    return [f"{group}-{i}" for i in range(1, count + 1)] if count > 1 else [group]


def machines_of(doc: dict) -> dict[str, dict]:
    """Every machine instance, `count` expanded, keyed by instance name."""
    defs = doc.get("machine", {})
    groups = {g: instance_names(g, m) for g, m in defs.items()}
    instances = {n for names in groups.values() for n in names}
    vms = {n for g, m in defs.items() if m.get("backend") == "libvirt" for n in groups[g]}
    out = {}
    for g, m in defs.items():
        deps: list[str] = []
        for d in m.get("depends_on", []):
            if d in groups:
                deps.extend(groups[d])
            elif d in instances:
                deps.append(d)
            else:
                raise SpecError(f"machine `{g}` depends on unknown `{d}`")
        host = m.get("host")
        if host in vms and host not in deps:
            deps.append(host)  # a container in a VM's Docker engine waits for the VM
        base = {"box": m["box"]} if "box" in m else {"image": m["image"]}
        command = m.get("command")
        if isinstance(command, str):
            command = ["/bin/sh", "-c", command]
        replicated = len(groups[g]) > 1
        for index, name in enumerate(groups[g]):
            networks = []
            for a in m.get("networks", []):
                if isinstance(a, str):
                    a = {"name": a}
                address = None
                if "address" in a:
                    address = str(ipv4(a["address"]) + index)
                networks.append({"network": a["name"], "address": address})
            out[name] = {
                "name": name,
                "group": g,
                "replica": index + 1 if replicated else None,
                "backend": m["backend"],
                "base": base,
                "cpus": m.get("cpus", 1),
                "memory": parse_size(m["memory"]) if "memory" in m else None,
                "disk": parse_size(m["disk"]) if "disk" in m else None,
                "networks": networks,
                "ports": [parse_port_map(p) for p in m.get("ports", [])],
                "synced_folders": [synced_folder(f) for f in m.get("synced_folders", [])],
                "env": {k: scalar_string(v) for k, v in m.get("env", {}).items()},
                "command": command,
                "provision": [provision_step(s) for s in m.get("provision", [])],
                "depends_on": list(deps),
                "healthcheck": healthcheck(m.get("healthcheck")),
                "libvirt_uri": m.get("libvirt_uri"),
                "accel": m.get("accel"),
            }
    return out


def subnet_parts(s: str) -> tuple[str, int]:
    addr, prefix = s.split("/")
    return str(ipv4(addr)), int(prefix)


# ---------------------------------------------------------------------------------------
# Box digests


def path_key(p: str) -> list:
    """How Rust orders paths: component by component (root < `.` < `..` < a name)."""
    absolute = p.startswith("/")
    comps = [(0, b"")] if absolute else []
    for i, part in enumerate(p.split("/")):
        if part == "":
            continue
        if part == ".":
            if i == 0 and not absolute:
                comps.append((1, b""))
            continue
        comps.append((2, b"") if part == ".." else (3, part.encode()))
    return comps


def recipe_digest(folder: str) -> str:
    folder = os.path.realpath(folder)
    with open(os.path.join(folder, "box.toml"), "rb") as f:
        recipe = tomllib.load(f)
    h = hashlib.sha256()
    h.update(f"recipe {digest_path(folder)}\n".encode())
    includes = sorted((rel, os.path.realpath(os.path.join(folder, rel))) for rel in recipe.get("include", []))
    for rel, p in includes:
        h.update(f"include {rel} {digest_path(p)}\n".encode())
    for p in sorted(recipe.get("inputs", []), key=path_key):
        # Named as written; a relative input is read from the recipe's folder.
        h.update(f"input {p} {file_hex(os.path.join(folder, p))}\n".encode())
    return "sha256:" + h.hexdigest()


def is_box_archive(path: str) -> bool:
    with open(path, "rb") as f:
        head = f.read(512)
    name = b"manifest.json"
    return len(head) == 512 and head.startswith(name + b"\0") and head[257:262] == b"ustar"


def box_digests(doc: dict, env_dir: str, pins: dict[str, str], given: dict[str, str]) -> dict[str, str]:
    out = {}
    for name, b in doc.get("box", {}).items():
        if "sha256" in b:
            out[name] = "sha256:" + b["sha256"].removeprefix("sha256:").lower()
        elif name in pins:
            out[name] = pins[name]
        elif name in given:
            out[name] = given[name]
        elif "recipe" in b:
            out[name] = recipe_digest(os.path.join(env_dir, b["recipe"]))
        elif "file" in b and not is_box_archive(os.path.join(env_dir, b["file"])):
            out[name] = "sha256:" + file_hex(os.path.join(env_dir, b["file"]))
        elif "url" in b:
            out[name] = "unresolved"
        else:
            raise SpecError(f"box `{name}` is a box archive: give its digest with --box {name}=DIGEST")
    return out


def box_def(name: str, b: dict) -> dict:
    kind = next(k for k in ("recipe", "file", "url") if k in b)
    sha = b.get("sha256")
    return {
        "name": name,
        "source": {kind: b[kind]},
        "sha256": sha.removeprefix("sha256:").lower() if sha is not None else None,
        "version": b.get("version"),
    }


# ---------------------------------------------------------------------------------------
# The hashes


def machine_sources(m: dict, doc: dict) -> list[str]:
    """The sources machine `m` uses: provisioning, synced folders, its box's recipe or file."""
    paths = [p for s in m["provision"] for p in step_inputs(s)]
    paths += [f["host"] for f in m["synced_folders"]]
    if "box" in m["base"]:
        b = doc.get("box", {}).get(m["base"]["box"], {})
        paths += [b[k] for k in ("recipe", "file") if k in b]
    return sorted({n for n in map(source_of, paths) if n is not None})


def source_ref(s: dict) -> str:
    key = next(k for k in ("rev", "tag", "branch") if k in s)
    return f"{key} {s[key]}"


def source_trees(doc: dict, locked: dict, given: dict[str, str]) -> dict[str, str]:
    out = {}
    for name, s in doc.get("source", {}).items():
        pin = locked.get(name)
        subdir = s["subdir"].strip("/") if "subdir" in s else None
        stands = pin is not None and pin.get("git") == s["git"] and pin.get("ref") == source_ref(s) \
            and pin.get("subdir") == subdir
        if name in given:
            out[name] = given[name]
        elif stands:
            out[name] = pin["tree"]
        else:
            out[name] = "unresolved"
    return out


def compute(envfile: str, pins: dict[str, str], given: dict[str, str],
            locked_sources: dict | None = None, given_trees: dict[str, str] | None = None) -> dict:
    with open(envfile, "rb") as f:
        doc = tomllib.load(f)
    trees = source_trees(doc, locked_sources or {}, given_trees or {})
    schema = SCHEMA_VERSION if doc.get("source") else 1
    env_dir = os.path.realpath(os.path.dirname(envfile) or ".")
    resolve = lambda p: p if os.path.isabs(p) else os.path.join(env_dir, p)  # noqa: E731
    boxes = box_digests(doc, env_dir, pins, given)
    machines = machines_of(doc)
    subnets = {n: subnet_parts(v["subnet"]) for n, v in doc.get("network", {}).items()}

    files: dict[str, str] = {}
    for m in machines.values():
        for step in m["provision"]:
            for p in step_inputs(step):
                if p not in files and source_of(p) is None:
                    files[p] = digest_path(resolve(p))

    machine_hashes = {}
    for name, m in machines.items():
        base = boxes.get(m["base"]["box"], "unresolved") if "box" in m["base"] else None
        doc_m = {
            "schema": schema,
            "machine": m,
            "files": {p: files[p] for s in m["provision"] for p in step_inputs(s) if p in files},
            "base": base,
            "networks": {
                a["network"]: "{}/{}".format(*subnets[a["network"]]) for a in m["networks"]
            },
        }
        if schema > 1:
            doc_m["sources"] = {n: trees[n] for n in machine_sources(m, doc)}
        machine_hashes[name] = sha256_of(canonical_json(doc_m))

    e = doc["env"]
    settings = {
        "name": e["name"],
        "description": e.get("description"),
        "libvirt_uri": e.get("libvirt_uri"),
        "parallel": e.get("parallel", 8),
        "accel": e.get("accel", "auto"),
    }
    if e.get("host_paths", False):
        settings["host_paths"] = True
    tests = []
    for t in doc.get("test", []):
        item = {
            "name": t["name"],
            "machine": t["machine"],
            "run": t["run"],
            "expect_exit": i32(t.get("expect_exit", 0)),
            "expect_output": t.get("expect_output"),
        }
        if "timeout" in t:
            item["timeout_ms"] = parse_duration_ms(t["timeout"])
        tests.append(item)
    env_doc = {
        "schema": schema,
        "settings": settings,
        "boxes": {n: [box_def(n, b), boxes[n]] for n, b in doc.get("box", {}).items()},
        "networks": {
            n: {"name": n, "subnet": {"addr": a, "prefix": p}} for n, (a, p) in subnets.items()
        },
        "machines": machine_hashes,
        "tests": tests,
    }
    if schema > 1:
        env_doc["sources"] = trees
    return {
        "hash": sha256_of(canonical_json(env_doc)),
        "schema_version": schema,
        "machines": machine_hashes,
        "boxes": boxes,
        "files": files,
    }


def read_lock(path: str) -> dict:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        return {}


def lock_pins(lock: dict) -> dict[str, str]:
    return {name: b["digest"] for name, b in lock.get("boxes", {}).items()}


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("envfile")
    ap.add_argument("--lock", help="lock file whose box pins count (default: ENVFILE.lock)")
    ap.add_argument("--no-lock", action="store_true", help="read no lock file")
    ap.add_argument("--box", action="append", default=[], metavar="NAME=DIGEST")
    ap.add_argument("--source", action="append", default=[], metavar="NAME=TREE")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    given = {}
    for b in args.box:
        name, sep, digest = b.partition("=")
        if not sep:
            ap.error(f"--box {b}: expected NAME=DIGEST")
        given[name] = digest
    trees = {}
    for t in args.source:
        name, sep, tree = t.partition("=")
        if not sep:
            ap.error(f"--source {t}: expected NAME=TREE")
        trees[name] = tree
    lock = {} if args.no_lock else read_lock(args.lock or args.envfile + ".lock")
    try:
        report = compute(args.envfile, lock_pins(lock), given, lock.get("sources", {}), trees)
    except (SpecError, OSError, KeyError, ValueError, tomllib.TOMLDecodeError) as e:
        print(f"hdevhash: {args.envfile}: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report, indent=2, sort_keys=True))
    else:
        for name, h in sorted(report["machines"].items()):
            print(f"machine {name} {h}")
        print(f"environment {report['hash']}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
