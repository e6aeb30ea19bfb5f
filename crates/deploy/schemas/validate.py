"""Checks rendered Kubernetes manifests against published schemas, offline.

    validate.py check [--kubernetes-version V]... [--schema API_VERSION/KIND=FILE]... FILE...
    validate.py derive CRD_YAML VERSION > FILE

`check` validates every object of every YAML stream: built-in kinds with
kubernetes-validate's strict schemas (unknown fields are errors, as with
`kubectl apply`'s default strict field validation), custom resources with the
`openAPIV3Schema` given by `--schema`. A kind with no schema fails: kubernetes-validate
alone only warns about those, which would let a wrong apiVersion through. One line
per object, `ok ...` or `FAIL ...`; exit status 1 when anything failed.

`derive` prints a CRD version's `openAPIV3Schema` without descriptions or `status` (what
a manifest never sets), as the file `--schema` takes.

Run with the interpreter of the virtualenv `cargo xtask test` installs from
requirements.txt beside this file.
"""

import argparse
import json
import sys

import jsonschema
import kubernetes_validate
import yaml


def strict(schema):
    """The schema with unknown fields refused wherever the API server's strict field
    validation refuses them: objects that list their properties, unless they preserve
    unknown fields."""
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    result = {key: strict(value) for key, value in schema.items()}
    if (
        "properties" in schema
        and "additionalProperties" not in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        result["additionalProperties"] = False
    return result


FORMATS = jsonschema.FormatChecker()


# OpenAPI's integer formats, which JSON Schema validators do not know.
@FORMATS.checks("int32")
def is_int32(value):
    return not isinstance(value, int) or -(2**31) <= value < 2**31


@FORMATS.checks("int64")
def is_int64(value):
    return not isinstance(value, int) or -(2**63) <= value < 2**63


def location(path):
    return ".".join(str(part) for part in path) or "(top level)"


def check_custom(document, schema, versions):
    """Problems of a custom resource against its CRD schema."""
    validator = jsonschema.Draft202012Validator(schema, format_checker=FORMATS)
    problems = [
        f"{location(error.absolute_path)}: {error.message}"
        for error in sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
    ]
    # The CRD leaves `metadata` to the API server, which checks it as ObjectMeta; so do
    # we, through a kind whose schema is ObjectMeta and nothing required besides.
    carrier = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": document.get("metadata")}
    problems += check_builtin(carrier, versions)
    return problems


def check_builtin(document, versions):
    problems = []
    for version in versions:
        try:
            kubernetes_validate.validate(document, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            problems.append(f"{location(error.path)}: {error.message} (Kubernetes {version})")
        except kubernetes_validate.SchemaNotFoundError as error:
            problems.append(error.message)
    return problems


def describe(document):
    if not isinstance(document, dict):
        return "(not an object)"
    name = (document.get("metadata") or {}).get("name", "(no name)")
    return f"{document.get('kind', '(no kind)')}/{name}"


def check(arguments):
    versions = arguments.kubernetes_version or [kubernetes_validate.latest_version()]
    custom = {}
    for entry in arguments.schema:
        kind, _, path = entry.partition("=")
        with open(path) as file:
            custom[kind] = strict(json.load(file))
    failed = False
    for path in arguments.files:
        with open(path) as file:
            documents = [d for d in yaml.safe_load_all(file) if d is not None]
        if not documents:
            print(f"FAIL {path}: no objects")
            failed = True
        for document in documents:
            if not isinstance(document, dict):
                problems = ["not a mapping"]
            else:
                key = f"{document.get('apiVersion')}/{document.get('kind')}"
                if key in custom:
                    problems = check_custom(document, custom[key], versions)
                else:
                    problems = check_builtin(document, versions)
            for problem in problems:
                print(f"FAIL {path} {describe(document)}: {problem}")
            if problems:
                failed = True
            else:
                print(f"ok {path} {describe(document)}")
    return 1 if failed else 0


def without_descriptions(schema):
    if isinstance(schema, list):
        return [without_descriptions(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    return {k: without_descriptions(v) for k, v in schema.items() if k != "description"}


def derive(arguments):
    with open(arguments.crd) as file:
        crd = yaml.safe_load(file)
    versions = [v for v in crd["spec"]["versions"] if v["name"] == arguments.version]
    if not versions:
        sys.exit(f"{arguments.crd} has no version {arguments.version}")
    schema = without_descriptions(versions[0]["schema"]["openAPIV3Schema"])
    schema["properties"].pop("status", None)
    json.dump(schema, sys.stdout, indent=1, sort_keys=True)
    print()
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    checking = commands.add_parser("check")
    checking.add_argument("--kubernetes-version", action="append", default=[])
    checking.add_argument("--schema", action="append", default=[])
    checking.add_argument("files", nargs="+")
    deriving = commands.add_parser("derive")
    deriving.add_argument("crd")
    deriving.add_argument("version")
    arguments = parser.parse_args()
    return check(arguments) if arguments.command == "check" else derive(arguments)


if __name__ == "__main__":
    sys.exit(main())
