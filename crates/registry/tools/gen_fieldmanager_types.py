#!/usr/bin/env python3
"""Generates crates/registry/src/fieldmanager/types_table.rs: the
server-side-apply type information (how every list and map of every built-in
kind merges) from the JSON schemas of the PyPI data package
`kubernetes-validate`, the same input as gen_strategic_keys.py:

    pip download --no-deps kubernetes-validate && unzip kubernetes_validate-*.whl
    gen_fieldmanager_types.py .../kubernetes-json-schema/v1.33.0-local/_definitions.json \
        crates/registry/src/fieldmanager/types_table.rs

Rules, as upstream's OpenAPI -> structured-merge-diff conversion
(kube-openapi pkg/schemaconv) applies them:
- `x-kubernetes-list-type` decides a list (atomic | set | map with
  `x-kubernetes-list-map-keys`); where absent, `x-kubernetes-patch-strategy`
  containing `merge` makes a map list keyed by `x-kubernetes-patch-merge-key`
  (a set when there is no key); any other list is atomic.
- `x-kubernetes-map-type: atomic` on a definition or a property makes that
  map/struct atomic (a property's marker overrides its definition's).
- A definition without properties, type or items (RawExtension, JSON, ...)
  is "deduced": maps granular, lists atomic.

Compaction: a field whose type is a scalar or an atomic list behaves exactly
like an undeclared field (which the Rust side treats as deduced), so only
struct, map, set/map-list and deduced fields are listed. Only definitions
reachable from a served kind are kept.

The schemas carry no `default`s; upstream's only defaulted list-map key among
built-ins is `protocol` ("TCP", ContainerPort and ServicePort), written here
as `protocol=TCP`.
"""
import json
import sys

defs_path, out = sys.argv[1:3]
defs = json.load(open(defs_path))["$defs"]

KEY_DEFAULTS = {"protocol": "TCP"}


def ref_name(s):
    r = s.get("$ref") or (s.get("allOf") or [{}])[0].get("$ref")
    return r.split("/")[-1] if r else None


def types_of(s):
    t = s.get("type")
    if t is None:
        return set()
    return {t} if isinstance(t, str) else set(t)


order = []  # definitions in table order
index = {}


def def_id(name):
    if name not in index:
        index[name] = len(order)
        order.append(name)
    return index[name]


def def_kind(name):
    d = defs[name]
    if "properties" in d:
        return "struct"
    t = types_of(d) - {"null"}
    if "object" in t and "additionalProperties" not in d:
        return "deduced"
    if not t and "oneOf" not in d and "items" not in d:
        return "deduced"
    if "array" in t or "object" in t:
        return "schema"  # an inline list/map definition: expand
    return "scalar"


def type_expr(s, map_type=None):
    """Type expression of a property schema; None = behaves as undeclared."""
    name = ref_name(s)
    if name is not None:
        k = def_kind(name)
        if k == "struct":
            expr = str(def_id(name))
            mt = s.get("x-kubernetes-map-type", map_type)
            if mt == "granular" and defs[name].get("x-kubernetes-map-type") == "atomic":
                # a property overriding an atomic definition: emit a granular copy
                expr = str(def_id(name + "#granular"))
            elif mt == "atomic" and defs[name].get("x-kubernetes-map-type") != "atomic":
                expr = "!" + expr
            return expr
        if k == "deduced":
            return "d"
        if k == "schema":
            return type_expr({**defs[name], **{k2: v for k2, v in s.items() if k2.startswith("x-")}})
        return None
    t = types_of(s) - {"null"}
    if "array" in t:
        items = s.get("items") or {}
        lt = s.get("x-kubernetes-list-type")
        ps = s.get("x-kubernetes-patch-strategy", "")
        mk = s.get("x-kubernetes-patch-merge-key")
        if lt is None and "merge" in ps.split(","):
            lt = "map" if mk else "set"
            keys = [mk] if mk else []
        else:
            keys = s.get("x-kubernetes-list-map-keys", [])
        elem = type_expr(items) or "s"
        if lt == "set":
            return "[=" + elem
        if lt == "map":
            ks = ",".join(k + ("=" + KEY_DEFAULTS[k] if k in KEY_DEFAULTS else "") for k in keys)
            return "[" + ks + ";" + elem
        return None  # atomic list
    if "object" in t:
        ap = s.get("additionalProperties")
        if ap is None or ap is True or ap == {}:
            return "d"
        elem = type_expr(ap) or "s"
        if s.get("x-kubernetes-map-type") == "atomic":
            return "{!" + elem
        return "{" + elem
    if not t and "oneOf" not in s and "items" not in s and "enum" not in s:
        return "d"
    return None


# Go non-pointer struct fields that are optional in the schema: a typed
# object always carries them (as `{}`), which upstream's Update tracking sees.
# Required fields are always present too (`null` or `{}`).
NON_POINTER = {"metadata", "spec", "status", "strategy", "updateStrategy", "template",
               "jobTemplate", "loadBalancer", "daemonEndpoints", "nodeInfo", "resources"}


def always_present(defname, prop, s):
    if prop not in NON_POINTER or ref_name(s) is None or def_kind(ref_name(s)) != "struct":
        return False
    short = defname.split(".")[-1]
    if prop == "template" and short == "ReplicationControllerSpec":
        return False
    if prop == "resources" and short not in ("Container", "EphemeralContainer", "PersistentVolumeClaimSpec"):
        return False
    return True


kinds = []
for name, d in sorted(defs.items()):
    for gvk in d.get("x-kubernetes-group-version-kind", []):
        if gvk["kind"].endswith("List") or gvk["group"] == "" and gvk["version"] != "v1":
            continue
        if name.startswith("io.k8s.apimachinery.pkg.apis.meta."):
            continue
        if def_kind(name) != "struct":
            continue
        gv = (gvk["group"] + "/" if gvk["group"] else "") + gvk["version"]
        kinds.append((gv, gvk["kind"], def_id(name)))
kinds = sorted(set(kinds))

lines = []
i = 0
while i < len(order):  # order grows while walking
    full = order[i]
    name = full.split("#")[0]
    d = defs[name]
    flags = "a" if d.get("x-kubernetes-map-type") == "atomic" and not full.endswith("#granular") else "-"
    parts = []
    required = set(d.get("required", []))
    for prop, s in sorted(d.get("properties", {}).items()):
        e = type_expr(s)
        if e is not None:
            if prop in required or always_present(name, prop, s):
                e = "+" + e
            parts.append(prop + "=" + e)
    short = full.replace("io.k8s.api.", "").replace("io.k8s.apimachinery.pkg.apis.", "").replace(
        "io.k8s.apiextensions-apiserver.pkg.apis.", "").replace("io.k8s.kube-aggregator.pkg.apis.", "")
    lines.append(" ".join([short, flags] + parts))
    i += 1

with open(out, "w") as f:
    f.write("// @generated by crates/registry/tools/gen_fieldmanager_types.py from the\n")
    f.write("// kubernetes-validate v1.33 JSON schemas. Do not edit.\n//\n")
    f.write("// TYPES: line N = definition N: `name flags field=type...`, flags `a` = atomic\n")
    f.write("// struct. Types: `s` scalar, `d` deduced, `N` definition, `!N` atomic use of\n")
    f.write("// definition N, `{T` map, `{!T` atomic map, `[=T` set, `[k1,k2;T` map list\n")
    f.write("// (`k=v`: key default); `+T`: always present in a typed object (required,\n")
    f.write("// or a Go non-pointer struct). Scalar and atomic-list fields are omitted: they\n")
    f.write("// behave as undeclared (deduced) fields. KINDS: `apiVersion kind definition`.\n\n")
    f.write('pub(super) const TYPES: &str = "\\\n')
    for l in lines:
        f.write(l + "\n\\\n")
    f.write('";\n\npub(super) const KINDS: &str = "\\\n')
    for gv, k, n in kinds:
        f.write(f"{gv} {k} {n}\n\\\n")
    f.write('";\n')
print(len(lines), "definitions,", len(kinds), "kinds", file=sys.stderr)
