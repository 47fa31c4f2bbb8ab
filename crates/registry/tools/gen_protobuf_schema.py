#!/usr/bin/env python3
"""Generates crates/server/src/protobuf/schema.rs: the message table the
protobuf→JSON decoder walks.

Inputs (neither is vendored):
  * the k8s-pb crate's generated prost sources (field tags and wire types),
    e.g. ~/.cargo/registry/src/*/k8s-pb-0.9.0/src
  * the Kubernetes JSON schemas from the PyPI data package
    `kubernetes-validate` (JSON field names, `required`, and
    x-kubernetes-group-version-kind), e.g.
      pip download --no-deps kubernetes-validate && unzip kubernetes_validate-*.whl
      .../kubernetes-json-schema/v1.33.0-local/_definitions.json
    (later wheels still ship v1.33.0-local: 1.37.0's gives this table)

Usage: gen_protobuf_schema.py K8S_PB_SRC DEFINITIONS_JSON OUT_RS

Proto field names in Kubernetes' generated.proto are the JSON names, but
prost snake-cases them (podIPs → pod_ips), so names are recovered by matching
prost fields to schema properties case- and punctuation-insensitively.
"""
import json
import os
import re
import sys

SPECIAL = {
    "io.k8s.apimachinery.pkg.apis.meta.v1.Time": "T",
    "io.k8s.apimachinery.pkg.apis.meta.v1.MicroTime": "U",
    "io.k8s.apimachinery.pkg.apis.meta.v1.Duration": "D",
    "io.k8s.apimachinery.pkg.util.intstr.IntOrString": "I",
    "io.k8s.apimachinery.pkg.api.resource.Quantity": "Q",
    "io.k8s.apimachinery.pkg.runtime.RawExtension": "R",
    "io.k8s.apimachinery.pkg.apis.meta.v1.FieldsV1": "R",
    "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSON": "R",
    "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaPropsOrArray": "A",
    "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaPropsOrBool": "B",
    "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaPropsOrStringArray": "S",
}
SCALARS = {"string": "s", "bool": "b", "int32": "i", "int64": "l", "double": "d", "bytes": "y"}
PREFIXES = [
    ("api", "io.k8s.api"),
    ("apimachinery", "io.k8s.apimachinery"),
    ("apiextensions_apiserver", "io.k8s.apiextensions-apiserver"),
    ("kube_aggregator", "io.k8s.kube-aggregator"),
]


def norm(s):
    return re.sub(r"[^a-z0-9]", "", s.lower())


def module_of(path, root):
    rel = os.path.relpath(path, root)[: -len(".rs")]
    parts = rel.split(os.sep)
    if parts[-1] in ("mod", "lib"):
        parts = parts[:-1]
    return parts


def def_name(mod_parts, struct):
    if not mod_parts:
        return None
    for rust, go in PREFIXES:
        if mod_parts[0] == rust:
            return ".".join([go] + mod_parts[1:] + [struct])
    return None


def resolve(mod_parts, ty):
    # strip wrappers
    for w in ("::core::option::Option<", "::prost::alloc::vec::Vec<", "::prost::alloc::boxed::Box<"):
        while ty.startswith(w):
            ty = ty[len(w):-1].strip()
    if ty.startswith("::prost::alloc::collections::BTreeMap<"):
        ty = ty[len("::prost::alloc::collections::BTreeMap<"):-1]
        if "," not in ty:
            raise SystemExit(f"bad map type {ty!r} in {mod_parts}")
        ty = ty.split(",", 1)[1].strip()
        return resolve(mod_parts, ty)
    parts = ty.split("::")
    cur = list(mod_parts)
    while parts and parts[0] == "super":
        cur.pop()
        parts.pop(0)
    if parts and parts[0] == "crate":
        cur = []
        parts.pop(0)
    return cur + parts[:-1], parts[-1]


def parse_k8s_pb(root):
    msgs = {}  # def name -> list of fields
    for dirpath, _, files in os.walk(root):
        for f in files:
            if not f.endswith(".rs"):
                continue
            path = os.path.join(dirpath, f)
            mod = module_of(path, root)
            lines = open(path).read().split("\n")
            i = 0
            while i < len(lines):
                m = re.match(r"pub struct (\w+) \{", lines[i])
                if not m:
                    i += 1
                    continue
                struct = m.group(1)
                fields = []
                i += 1
                while not lines[i - 1].rstrip().endswith("{}") and not lines[i].startswith("}"):
                    a = re.match(r"\s*#\[prost\((.*)\)\]\s*$", lines[i])
                    if a:
                        attr = a.group(1)
                        i += 1
                        decl = lines[i].strip()
                        while not decl.endswith(",") or decl.count("<") != decl.count(">"):
                            i += 1
                            decl = decl + " " + lines[i].strip()
                        fm = re.match(r"pub (?:r#)?(\w+):\s*(.*),$", decl)
                        fields.append((attr, fm.group(1), fm.group(2).replace(" ", "")))
                    i += 1
                dn = def_name(mod, struct)
                if dn:
                    msgs[dn] = (mod, fields)
                i += 1
    return msgs


def main():
    src, defs_path, out = sys.argv[1:4]
    defs = json.load(open(defs_path))["$defs"]
    defs_by_norm = {norm(k): k for k in defs}
    pb = parse_k8s_pb(src)
    # Map prost struct (PodIp) to its schema name (PodIP).
    pb_by_norm = {}
    for dn, v in pb.items():
        pb_by_norm[norm(dn)] = (dn, v)

    def canon(dn):
        return defs_by_norm.get(norm(dn), dn)

    # First pass: each message's fields with their tags, kinds and types.
    raw = {}  # canonical name -> [(tag, rust, kind, attr, code)]
    for dn, (mod, fields) in pb.items():
        out_fields = []
        for attr, rust, ty in fields:
            tag = int(re.search(r'tag = "(\d+)"', attr).group(1))
            kind = attr.split(",")[0].split("=")[0].strip()
            if kind == "btree_map":
                spec = re.search(r'btree_map = "string, (\w+)"', attr).group(1)
                if spec == "message":
                    m, s = resolve(mod, ty)
                    code = "M" + canon(def_name(m, s))
                else:
                    code = "M" + SCALARS[spec]
            elif kind == "message":
                m, s = resolve(mod, ty)
                code = "m" + canon(def_name(m, s))
            else:
                code = SCALARS[kind]
            out_fields.append((tag, rust, kind, attr, code))
        raw[canon(dn)] = out_fields

    # Go structs embedded with `json:",inline"` are a named field in the
    # .proto but no property of the parent in the schema: their fields are
    # the parent's (Volume.volumeSource, Probe.handler, ...). One is
    # recognised by its name missing from the parent's properties while
    # most of the names it contributes (through its own inline fields too)
    # are there. Such a sub-message (VolumeSource, ProbeHandler, ...) is
    # often no schema definition of its own, so its field names are looked
    # up in the properties of the parents it is inlined into, which gives
    # the exact spelling (downwardAPI, scaleIO) rather than a guess.
    props = {n: {norm(p): p for p in defs.get(n, {}).get("properties", {})} for n in raw}
    inline = set()  # (parent, tag)

    def contributed(n, seen=()):
        names = set()
        for tag, rust, kind, _, code in raw.get(n, []):
            if (n, tag) in inline and code[1:] not in seen:
                names |= contributed(code[1:], seen + (n,))
            else:
                names.add(norm(rust))
        return names

    changed = True
    while changed:
        changed = False
        for n, fields in raw.items():
            for tag, rust, kind, attr, code in fields:
                sub = code[1:]
                if ((n, tag) in inline or kind != "message" or ", repeated" in attr
                        or sub in SPECIAL or sub not in raw or norm(rust) in props[n]):
                    continue
                names = contributed(sub)
                hits = len(names & set(props[n]))
                if hits and hits * 2 > len(names):
                    inline.add((n, tag))
                    changed = True
            # An inline sub-message's fields are spelled as its parent's.
            for tag, _, _, _, code in fields:
                if (n, tag) in inline:
                    sub = code[1:]
                    missing = {k: v for k, v in props[n].items() if k not in props[sub]}
                    if missing:
                        props[sub].update(missing)
                        changed = True
    for n, tag in sorted(inline):
        print(f"inline: {n} field {tag}", file=sys.stderr)

    table = {}  # canonical name -> fields
    for name, fields in raw.items():
        required = set(defs.get(name, {}).get("required", []))
        out_fields = []
        for tag, rust, kind, attr, code in fields:
            json_name = props[name].get(norm(rust))
            if (name, tag) in inline:
                # Empty, like the Go tag `json:",inline"`.
                json_name = ""
            elif json_name is None:
                parts = rust.split("_")
                json_name = parts[0] + "".join(p[:1].upper() + p[1:] for p in parts[1:])
            label = "r" if ", repeated" in attr else ""
            req = "!" if json_name in required else ""
            out_fields.append((tag, json_name, label + code, req))
        table[name] = out_fields

    # Roots: every definition with a GVK, plus the envelope's own types.
    roots = {}
    for name, d in defs.items():
        for gvk in d.get("x-kubernetes-group-version-kind", []):
            if name in table:
                av = gvk["version"] if not gvk["group"] else gvk["group"] + "/" + gvk["version"]
                roots[(av, gvk["kind"])] = name
    # Reachability keeps the table to what a request body can contain.
    seen = []
    index = {}
    stack = sorted(set(roots.values()))
    while stack:
        n = stack.pop()
        if n in index or n in SPECIAL:
            continue
        index[n] = len(seen)
        seen.append(n)
        for _, _, code, _ in table.get(n, []):
            ref = code.lstrip("r")
            if ref[:1] in ("m", "M") and len(ref) > 2:
                stack.append(ref[1:])

    def enc(code):
        rep = "r" if code.startswith("r") else ""
        c = code.lstrip("r")
        if c[0] in ("m", "M") and len(c) > 2:
            ref = c[1:]
            tail = SPECIAL.get(ref) or str(index[ref])
            return rep + c[0] + tail
        return rep + c

    lines = []
    for n in seen:
        fs = " ".join(f"{t}:{j}:{enc(c)}{r}" for t, j, c, r in table[n])
        lines.append(f"{n} {fs}".rstrip())
    kinds = [f"{av} {k} {index[n]}" for (av, k), n in sorted(roots.items()) if n in index]
    with open(out, "w") as f:
        f.write("// @generated by crates/registry/tools/gen_protobuf_schema.py from the k8s-pb 0.9\n")
        f.write("// prost sources and the kubernetes-validate v1.33 JSON schemas. Do not edit.\n")
        f.write("//\n// MESSAGES: one line per message, `name tag:jsonName:type[!]...`; type is\n")
        f.write("// s string, b bool, i int32, l int64, d double, y bytes, m<N> message N\n")
        f.write("// (line index) or m<T|U|D|I|Q|R|A|B|S> for the specially encoded types,\n")
        f.write("// M<...> a map from string to that type, a leading r = repeated, ! = required.\n")
        f.write("// An empty jsonName is a Go struct embedded with `json:\",inline\"`: its\n")
        f.write("// fields belong to the enclosing JSON object.\n")
        f.write("// KINDS: `apiVersion kind message-index`.\n\n")
        f.write("pub(super) const MESSAGES: &str = \"\\\n")
        for l in lines:
            f.write(l.replace("\\", "\\\\").replace('"', '\\"') + "\n\\\n")
        f.write("\";\n\npub(super) const KINDS: &str = \"\\\n")
        for l in kinds:
            f.write(l + "\n\\\n")
        f.write("\";\n")
    print(f"{len(seen)} messages, {len(kinds)} kinds", file=sys.stderr)


main()
