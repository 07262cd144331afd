#!/usr/bin/env python3
"""Generates src/api/schema/request_schemas.gen.cpp: every Client-Server request-body schema of the
spec, keyed by method and path template, for the validator in src/api/schema/.

Usage (from the repository root; needs python3-yaml and the spec checkout):
    python3 scripts/gen_request_schemas.py --spec PATH/TO/matrix-spec [-o src/api/schema/request_schemas.gen.cpp]

It reads data/api/client-server/*.yaml, resolves every $ref, merges allOf, keeps only the
JSON-Schema keywords the validator checks, and applies the deliberate relaxations listed in
SKIP / OVERRIDES below (each says why). The output is checked in: the build never needs the spec.
"""
import argparse
import glob
import json
import os
import re
import sys

import yaml

# Keywords the validator understands; everything else (description, example, format, pattern,
# title, x-*) is dropped. `pattern` is dropped on purpose: the spec's patterns are identifier
# prefixes ("^@", "^!") that handlers check precisely with their own errcodes.
KEEP = {"type", "properties", "required", "additionalProperties", "items", "enum", "minimum",
        "maximum", "minLength", "maxLength", "minItems", "maxItems", "minProperties",
        "maxProperties", "oneOf", "anyOf", "patternProperties"}

# Free-form bodies (event content, account data) or bodies that are not JSON: no schema at all.
SKIP = {
    ("PUT", "/_matrix/client/v3/rooms/{}/send/{}/{}"),        # event content is free-form
    ("PUT", "/_matrix/client/v3/rooms/{}/state/{}/{}"),       # state event content is free-form
    ("PUT", "/_matrix/client/v3/user/{}/account_data/{}"),    # account data is free-form
    ("PUT", "/_matrix/client/v3/user/{}/rooms/{}/account_data/{}"),
}

STRING_OR_NULL = {"type": ["string", "null"]}

# Schemas the spec states in prose (or too strictly for real clients), keyed like the table.
OVERRIDES = {
    # profile.yaml describes one generic {keyName} body; the value types are prose. null clears
    # the field (Synapse and our handler accept it).
    ("PUT", "/_matrix/client/v3/profile/{}/displayname"): {
        "type": "object", "properties": {"displayname": STRING_OR_NULL}, "required": ["displayname"]},
    ("PUT", "/_matrix/client/v3/profile/{}/avatar_url"): {
        "type": "object", "properties": {"avatar_url": STRING_OR_NULL}, "required": ["avatar_url"]},
    # Any other key (v1.16): a body without the key is the spec's M_MISSING_PARAM (the handler
    # says so), not the M_BAD_JSON that minProperties would give `{}`; custom values are any JSON.
    ("PUT", "/_matrix/client/v3/profile/{}/{}"): {"type": "object"},
}


def patch(method, path, schema):
    """Relaxations of the spec's schemas, each for a real client or a spec-mandated errcode."""
    props = schema.get("properties", {})
    if (method, path) == ("POST", "/_matrix/client/v3/pushers/set"):
        # `kind: null` deletes a pusher and then only pushkey and app_id matter (the spec's prose;
        # Synapse checks the rest only when creating): the handler checks the other fields.
        props["kind"] = STRING_OR_NULL
        schema["required"] = ["kind", "app_id", "pushkey"]
        # data.format has one value in the spec, but Synapse passes any format on to the push
        # gateway and clients rely on that.
        props.get("data", {}).get("properties", {}).get("format", {}).pop("enum", None)
    if path in ("/_matrix/client/v3/room_keys/version", "/_matrix/client/v3/room_keys/version/{}"):
        # Backups are opaque to the server: like Synapse, any algorithm name is stored, and
        # auth_data may be a string (SyTest's key-backup tests send one); the handler checks size.
        props.get("algorithm", {}).pop("enum", None)
        if "auth_data" in props:
            props["auth_data"] = {"type": ["object", "string"]}
    if path.startswith("/_matrix/client/v3/room_keys/keys"):
        # Likewise each key's session_data (opaque to the server) may be a string.
        def opaque_session_data(node):
            if isinstance(node, dict):
                for k, v in node.items():
                    if k == "properties" and isinstance(v, dict) and "session_data" in v:
                        v["session_data"] = {"type": ["object", "string"]}
                    opaque_session_data(v)
            elif isinstance(node, list):
                for v in node:
                    opaque_session_data(v)
        opaque_session_data(schema)
    if (method, path) == ("POST", "/_matrix/client/v3/keys/upload"):
        # device_keys missing one of its keys is a malformed key object: the handler answers
        # M_BAD_JSON, as Synapse does (SyTest "Rejects invalid device keys"), not M_MISSING_PARAM.
        props.get("device_keys", {}).pop("required", None)
    if (method, path) == ("POST", "/_matrix/client/v3/login"):
        # An unknown login type must answer M_UNKNOWN (login.yaml), not a generic enum error.
        props.get("type", {}).pop("enum", None)
    if (method, path) == ("POST", "/_matrix/client/v3/rooms/{}/receipt/{}/{}"):
        # A thread_id that is not a string must answer M_INVALID_PARAM (receipts.yaml's 400), not
        # the validator's M_BAD_JSON: the handler checks its type.
        props.pop("thread_id", None)
    return schema


cache = {}


def load(path):
    if path not in cache:
        with open(path) as f:
            cache[path] = yaml.safe_load(f)
    return cache[path]


def resolve(node, base):
    """Replaces every $ref by the (resolved) document it names; keys beside a $ref win."""
    if isinstance(node, dict):
        if "$ref" in node:
            file_part, _, frag = node["$ref"].partition("#")
            path = os.path.normpath(os.path.join(os.path.dirname(base), file_part)) if file_part else base
            target = load(path)
            for part in [p for p in frag.split("/") if p]:
                target = target[part]
            out = dict(resolve(target, path))
            out.update(resolve({k: v for k, v in node.items() if k != "$ref"}, base))
            return out
        return {k: resolve(v, base) for k, v in node.items()}
    if isinstance(node, list):
        return [resolve(x, base) for x in node]
    return node


def merge_all_of(a, b):
    """allOf of two object schemas as one: properties merged, required united."""
    out = dict(a)
    for k, v in b.items():
        if k == "properties":
            props = dict(out.get("properties", {}))
            for pk, pv in v.items():
                props[pk] = merge_all_of(props[pk], pv) if pk in props else pv
            out["properties"] = props
        elif k == "required":
            out["required"] = sorted(set(out.get("required", [])) | set(v))
        else:
            out[k] = v
    return out


def clean(s):
    """Keeps the validator's keywords, merges allOf, recursively."""
    if not isinstance(s, dict):
        return s
    if "allOf" in s:
        merged = {k: v for k, v in s.items() if k != "allOf"}
        for part in s["allOf"]:
            merged = merge_all_of(merged, part)
        return clean(merged)
    out = {}
    for k, v in s.items():
        if k not in KEEP:
            continue
        if k in ("properties", "patternProperties"):
            out[k] = {pk: clean(pv) for pk, pv in v.items()}
        elif k in ("items", "additionalProperties"):
            out[k] = clean(v) if isinstance(v, dict) else v
        elif k in ("oneOf", "anyOf"):
            out[k] = [clean(x) for x in v]
        else:
            out[k] = v
    if out.get("additionalProperties") in (True, {}):
        del out["additionalProperties"]  # the default: anything
    return out


def either(a, b):
    """One schema for two spec entries of one path (invite by user ID or by 3PID): any property
    either allows, required only what both require."""
    props = dict(a.get("properties", {}))
    for k, v in b.get("properties", {}).items():
        props[k] = v if k not in props or props[k] == v else {"anyOf": [props[k], v]}
    out = {"type": "object", "properties": props}
    req = sorted(set(a.get("required", [])) & set(b.get("required", [])))
    if req:
        out["required"] = req
    return out


def template(base, path):
    return base + re.sub(r"\{[^}/]+\}", "{}", path)


def generate(spec_dir):
    table = {}
    for fn in sorted(glob.glob(os.path.join(spec_dir, "data/api/client-server/*.yaml"))):
        doc = load(fn)
        base = doc.get("servers", [{}])[0].get("variables", {}).get("basePath", {}).get("default", "")
        for path, ops in (doc.get("paths") or {}).items():
            for method, op in ops.items():
                body = op.get("requestBody") if isinstance(op, dict) else None
                if not body:
                    continue
                schema = resolve(body, fn).get("content", {}).get("application/json", {}).get("schema")
                if not schema:
                    continue  # not a JSON body (media uploads)
                key = (method.upper(), template(base, path.strip()))  # inviting.yaml has "invite "
                if key in SKIP:
                    continue
                schema = clean(schema)
                table[key] = either(table[key], schema) if key in table else schema
    for key, schema in OVERRIDES.items():
        table[key] = schema
    return [{"method": m, "path": p, "schema": patch(m, p, s)} for (m, p), s in sorted(table.items())]


HEADER = """// GENERATED by scripts/gen_request_schemas.py from the Matrix spec's OpenAPI files
// (data/api/client-server/*.yaml): do not edit by hand. To regenerate after a spec update:
//   python3 scripts/gen_request_schemas.py --spec PATH/TO/matrix-spec
// and commit the result. Each entry: method, path template ("{}" per path parameter), and the
// request body's JSON Schema with $refs resolved, allOf merged and only the keywords the
// validator checks (see the script for the deliberate relaxations).
#include "api/schema/request_schemas.hpp"

namespace trestle::api::schema {

std::string_view request_schemas_json() {
  static constexpr std::string_view kJson = R"json(
"""

FOOTER = """)json";
  return kJson;
}

}  // namespace trestle::api::schema
"""


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser()
    ap.add_argument("--spec", required=True, help="a checkout of github.com/matrix-org/matrix-spec")
    ap.add_argument("-o", "--output", default=os.path.join(here, "../src/api/schema/request_schemas.gen.cpp"))
    args = ap.parse_args()
    entries = generate(args.spec)
    text = ",\n".join(json.dumps(e, sort_keys=True, separators=(",", ":")) for e in entries)
    with open(args.output, "w") as f:
        f.write(HEADER + "[\n" + text + "\n]\n" + FOOTER)
    print(f"{len(entries)} request schemas -> {os.path.normpath(args.output)}", file=sys.stderr)


if __name__ == "__main__":
    main()
