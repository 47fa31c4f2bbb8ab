#!/usr/bin/env python3
"""Generates crates/registry/src/openapi/definitions.json.gz: every upstream
Kubernetes OpenAPI definition (descriptions, types, formats, required, $refs
and the x-kubernetes-* extensions) in Swagger 2.0 form, from the JSON schemas
of the PyPI data package `kubernetes-validate`:

    pip download --no-deps kubernetes-validate && unzip kubernetes_validate-*.whl
    gen_openapi_definitions.py \
        .../kubernetes-json-schema/v1.33.0-local/_definitions.json \
        ~/.cargo/registry/src/*/k8s-openapi-0.29.0/src/v1_33 \
        crates/registry/src/openapi/definitions.json.gz

kubernetes-validate turned upstream's swagger into JSON Schema; this undoes
exactly those edits so the result has upstream's shape again:
- `"type": [T, "null"]` becomes `"type": T`;
- the `enum` it added to `apiVersion`/`kind` of every kind is dropped (the
  v2 spec has no enums);
- `#/$defs/X` refs become `#/definitions/X`;
- IntOrString and Quantity, which it rewrote as `oneOf`, get upstream's
  definitions back (`type: string`, `format: int-or-string` for IntOrString)
  with the descriptions taken from k8s-openapi's generated sources (its
  `schemars` impls carry upstream's text verbatim).
"""
import gzip
import json
import re
import sys

defs_path, k8s_openapi_src, out = sys.argv[1:4]
src = json.load(open(defs_path))["$defs"]


def upstream_description(rel):
    text = open(f"{k8s_openapi_src}/{rel}").read()
    m = re.search(r'"description": ("(?:[^"\\]|\\.)*")', text)
    if not m:
        sys.exit(f"no description in {rel}")
    return json.loads(m.group(1))


SPECIAL = {
    "io.k8s.apimachinery.pkg.util.intstr.IntOrString": {
        "description": upstream_description("apimachinery/pkg/util/intstr/int_or_string.rs"),
        "format": "int-or-string",
        "type": "string",
    },
    "io.k8s.apimachinery.pkg.api.resource.Quantity": {
        "description": upstream_description("apimachinery/pkg/api/resource/quantity.rs"),
        "type": "string",
    },
}

KNOWN = {"description", "type", "$ref", "properties", "items", "required", "format",
         "additionalProperties", "enum"}


def convert(s, where):
    out = {}
    for k, v in s.items():
        if k == "enum":
            continue  # added by kubernetes-validate (apiVersion/kind only)
        if k == "type":
            types = [t for t in (v if isinstance(v, list) else [v]) if t != "null"]
            if len(types) != 1:
                sys.exit(f"{where}: type {v}")
            out[k] = types[0]
        elif k == "$ref":
            out[k] = "#/definitions/" + v.split("/")[-1]
        elif k == "properties":
            out[k] = {p: convert(ps, f"{where}.{p}") for p, ps in v.items()}
        elif k in ("items", "additionalProperties") and isinstance(v, dict):
            out[k] = convert(v, f"{where}[]")
        elif k in KNOWN or k.startswith("x-kubernetes-"):
            out[k] = v
        else:
            sys.exit(f"{where}: unexpected keyword {k}")
    return out


defs = {}
for name, d in src.items():
    defs[name] = SPECIAL.get(name) or convert(d, name)

# Self-check: every $ref resolves.
def refs(s):
    if "$ref" in s:
        yield s["$ref"].split("/")[-1]
    for p in s.get("properties", {}).values():
        yield from refs(p)
    for k in ("items", "additionalProperties"):
        if isinstance(s.get(k), dict):
            yield from refs(s[k])

missing = {r for d in defs.values() for r in refs(d) if r not in defs}
if missing:
    sys.exit(f"unresolved refs: {sorted(missing)}")

data = {
    "source": "kubernetes-validate " + defs_path.split("kubernetes-json-schema/")[-1].split("/")[0],
    "definitions": defs,
}
raw = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
# mtime=0 keeps the output byte-identical across runs.
with open(out, "wb") as f:
    f.write(gzip.compress(raw, compresslevel=9, mtime=0))
print(len(defs), "definitions,", len(raw), "bytes raw", file=sys.stderr)
