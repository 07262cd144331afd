#!/usr/bin/env python3
"""Generates tests/integration/fixtures/cs_routes.json: every method and path of the spec's
Client-Server OpenAPI (deprecated operations left out), for the scenario that checks each one is
routed (tests/integration/scenarios/spec_routes.py).

Usage (from the repository root; needs python3-yaml and the spec checkout):
    python3 scripts/gen_cs_routes.py --spec PATH/TO/matrix-spec [-o tests/integration/fixtures/cs_routes.json]
The output is checked in: the tests never need the spec.
"""
import argparse
import glob
import json
import os

import yaml


def routes(spec):
    out = []
    for path in sorted(glob.glob(os.path.join(spec, "data/api/client-server/*.yaml"))):
        doc = yaml.safe_load(open(path, encoding="utf-8"))
        servers = doc.get("servers") or [{}]
        base = servers[0].get("variables", {}).get("basePath", {}).get("default", "")
        for template, ops in (doc.get("paths") or {}).items():
            for method, op in ops.items():
                if method not in ("get", "put", "post", "delete") or op.get("deprecated"):
                    continue
                out.append({"method": method.upper(), "path": (base + template).strip(),
                            "file": os.path.basename(path)})
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spec", required=True)
    parser.add_argument("-o", "--output", default="tests/integration/fixtures/cs_routes.json")
    args = parser.parse_args()
    found = routes(args.spec)
    with open(args.output, "w", encoding="utf-8") as f:
        f.write("[\n" + ",\n".join(json.dumps(r) for r in found) + "\n]\n")
    print(f"{len(found)} operations written to {args.output}")


if __name__ == "__main__":
    main()
