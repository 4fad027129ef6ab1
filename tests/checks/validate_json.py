#!/usr/bin/env python3
"""Validates JSON documents against a JSON Schema (draft 2020-12 or 07).

usage: validate_json.py SCHEMA FILE...
Exit 0 when every FILE is valid, 1 when one is not (errors on stderr), 77
(ctest/automake "skipped") when the jsonschema module is missing: install
python3-jsonschema (Debian) to run it.
"""
import json
import sys

try:
    import jsonschema
except ImportError:
    print("validate_json.py: python3-jsonschema is not installed", file=sys.stderr)
    sys.exit(77)


def main():
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    with open(sys.argv[1], encoding="utf-8") as f:
        schema = json.load(f)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    validator = cls(schema, format_checker=cls.FORMAT_CHECKER)
    bad = 0
    for path in sys.argv[2:]:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
        errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
        for e in errors[:20]:
            loc = "/".join(str(p) for p in e.absolute_path)
            print(f"{path}: /{loc}: {e.message[:300]}", file=sys.stderr)
        bad += bool(errors)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
