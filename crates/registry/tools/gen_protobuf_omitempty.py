#!/usr/bin/env python3
"""Generates crates/server/src/protobuf/omitempty.rs: for every upstream API
struct, the JSON names of its *value* (non-pointer) scalar fields tagged
`omitempty` (or `omitzero`).

Why: Go's protobuf marshaller writes non-pointer fields even when they hold
their zero value, while its JSON encoder leaves them out when they are
`omitempty`. So a protobuf body from kubectl or helm carries
`generation: 0`, `minReadySeconds: 0`, `paused: false`, `""` that the same
object sent as JSON would not. A zero in a *pointer* field, though, is
meaningful (`replicas: 0`, `storageClassName: ""`) and Go only writes it
when it is set. Pointer-ness exists only in the Go types, not in any
schema, hence this table.

Inputs: git directories (bare mirrors or checkouts) of the Go API modules
  k8s.io/api, k8s.io/apimachinery, k8s.io/apiextensions-apiserver,
  k8s.io/kube-aggregator
read with `git show HEAD:<path>`.

Usage: gen_protobuf_omitempty.py API_GIT APIMACHINERY_GIT APIEXTENSIONS_GIT AGGREGATOR_GIT OUT_RS
"""
import re
import subprocess
import sys

SCALARS = {"string", "bool", "int", "int32", "int64", "float64", "uint64", "uint32", "byte"}


def git_files(gitdir, pattern):
    out = subprocess.run(
        ["git", "--git-dir", gitdir, "ls-tree", "-r", "--name-only", "HEAD"],
        check=True, capture_output=True, text=True,
    ).stdout.split()
    return [p for p in out if re.search(pattern, p)]


def git_show(gitdir, path):
    return subprocess.run(
        ["git", "--git-dir", gitdir, "show", f"HEAD:{path}"],
        check=True, capture_output=True, text=True,
    ).stdout


STRUCT = re.compile(r"^type (\w+) struct \{\s*$")
NAMED = re.compile(r"^type (\w+) (\w+)\s*(//.*)?$")
FIELD = re.compile(r"^\s*(\w+)\s+([^`\s]+)\s+`([^`]*)`")


def parse(src):
    """(structs: name -> [(json, gotype, omitempty)], named scalars)."""
    structs, named = {}, {}
    cur = None
    for line in src.splitlines():
        if cur is None:
            m = STRUCT.match(line)
            if m:
                cur = m.group(1)
                structs[cur] = []
                continue
            m = NAMED.match(line)
            if m:
                named[m.group(1)] = m.group(2)
            continue
        if line.startswith("}"):
            cur = None
            continue
        m = FIELD.match(line)
        if not m:
            continue
        tag = re.search(r'json:"([^"]*)"', m.group(3))
        if not tag:
            continue
        parts = tag.group(1).split(",")
        if not parts[0] or parts[0] == "-":
            continue
        omit = "omitempty" in parts[1:] or "omitzero" in parts[1:]
        structs[cur].append((parts[0], m.group(2), omit))
    return structs, named


def is_value_scalar(gotype, named):
    seen = 0
    while gotype not in SCALARS and seen < 5:
        base = gotype.split(".")[-1]
        if base not in named:
            return False
        gotype = named[base]
        seen += 1
    return gotype in SCALARS


def main():
    if len(sys.argv) != 6:
        raise SystemExit(__doc__)
    api, machinery, apiext, agg, out = sys.argv[1:]
    sources = []  # (definition prefix, gitdir, path)
    for p in git_files(api, r"^[a-z0-9]+/v[0-9a-z]+/types\.go$"):
        group, version = p.split("/")[:2]
        sources.append((f"io.k8s.api.{group}.{version}", api, p))
    for p in ["pkg/apis/meta/v1/types.go", "pkg/apis/meta/v1/group_version.go"]:
        sources.append(("io.k8s.apimachinery.pkg.apis.meta.v1", machinery, p))
    # Named scalars of k8s.io/apimachinery/pkg/types (types.UID, ...).
    shared_named = {}
    for p in git_files(machinery, r"^pkg/types/[a-z_]+\.go$"):
        if not p.endswith("_test.go"):
            shared_named.update(parse(git_show(machinery, p))[1])
    for p in git_files(apiext, r"^pkg/apis/apiextensions/v1/types[a-z_]*\.go$"):
        sources.append(("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1", apiext, p))
    for p in git_files(agg, r"^pkg/apis/apiregistration/v1/types\.go$"):
        sources.append(("io.k8s.kube-aggregator.pkg.apis.apiregistration.v1", agg, p))

    parsed = []
    named_by_prefix = {}
    for prefix, gitdir, path in sources:
        structs, named = parse(git_show(gitdir, path))
        parsed.append((prefix, structs))
        named_by_prefix.setdefault(prefix, {}).update(named)
    # Named types from meta/v1 are used across groups (metav1.*).
    shared = dict(shared_named)
    shared.update(named_by_prefix.get("io.k8s.apimachinery.pkg.apis.meta.v1", {}))

    lines = []
    for prefix, structs in parsed:
        named = dict(shared)
        named.update(named_by_prefix[prefix])
        for name, fields in sorted(structs.items()):
            omit = [j for j, t, o in fields if o and not t.startswith("*") and is_value_scalar(t, named)]
            # Pointers to scalars: a zero there was set on purpose.
            ptr = ["*" + j for j, t, o in fields if t.startswith("*") and is_value_scalar(t[1:], named)]
            lines.append(" ".join([f"{prefix}.{name}"] + omit + ptr))
    lines.sort()
    with open(out, "w") as f:
        f.write("// @generated by crates/registry/tools/gen_protobuf_omitempty.py from the Go\n")
        f.write("// types of k8s.io/api, apimachinery, apiextensions-apiserver and\n")
        f.write("// kube-aggregator. Do not edit.\n//\n")
        f.write("// One line per struct: its definition name, then the JSON names of its\n")
        f.write("// value (non-pointer) scalar fields tagged omitempty, whose zero values\n")
        f.write("// protobuf carries but JSON omits; then `*name` for pointers to scalars\n")
        f.write("// (a zero there was set on purpose and is kept).\n\n")
        f.write('pub(super) const OMIT_ZERO: &str = "\\\n')
        for l in lines:
            f.write(l + "\n\\\n")
        f.write('";\n')
    print(f"{len(lines)} structs")


if __name__ == "__main__":
    main()
