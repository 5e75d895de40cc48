"""Finds and reads OCI 1.1 referrers with clients no one here wrote, for tests/it/referrers.rs.

The oras Python SDK (PyPI `oras`) reads OCI layouts (validating them) and registries; the
in-toto attestation bindings (PyPI `in-toto-attestation`) parse each in-toto statement
strictly (protobuf JSON: an unknown or mistyped field is an error) and validate it, and the
SLSA provenance v1 predicate is parsed into its protobuf message the same way.

usage:
  oci_referrers.py layout DIR
  oci_referrers.py archive FILE.tar
  oci_referrers.py registry HOST REPO SUBJECT...     (reads the sha256-<hex> tag schema)
  oci_referrers.py foreign HOST REPO SUBJECT SIZE    (pushes another tool's referrer first)

Prints one JSON object on stdout: {"referrers": [...]} (or {"digest": ...} for foreign).
"""
import json
import os
import pathlib
import sys
import tarfile
import tempfile

import oras.layout
import oras.oci
import oras.provider
from google.protobuf import json_format
from in_toto_attestation.predicates.provenance.v1 import provenance_pb2
from in_toto_attestation.v1 import statement_pb2
from in_toto_attestation.v1.resource_descriptor import ResourceDescriptor
from in_toto_attestation.v1.statement import Statement

INDEX = "application/vnd.oci.image.index.v1+json"
IN_TOTO = "application/vnd.in-toto+json"


def statement_summary(raw: bytes) -> dict:
    """Parses and validates an in-toto statement with a SLSA provenance v1 predicate."""
    pb = json_format.Parse(raw.decode(), statement_pb2.Statement())
    Statement.copy_from_pb(pb).validate()
    prov = json_format.ParseDict(
        json_format.MessageToDict(pb.predicate), provenance_pb2.Provenance()
    )
    bd, rd = prov.build_definition, prov.run_details
    for dep in list(bd.resolved_dependencies) + list(rd.byproducts):
        ResourceDescriptor.copy_from_pb(dep).validate()
    if not bd.build_type or not rd.builder.id:
        raise ValueError("SLSA provenance v1 needs buildType and builder.id")
    ext = json_format.MessageToDict(bd.external_parameters)
    return {
        "type": pb.type,
        "predicateType": pb.predicate_type,
        "subjects": [dict(s.digest) for s in pb.subject],
        "buildType": bd.build_type,
        "builderId": rd.builder.id,
        "cargo": ext.get("cargo"),
        "platform": ext.get("platform"),
        "prebuiltBinary": ext.get("prebuiltBinary"),
        "rustc": json_format.MessageToDict(bd.internal_parameters).get("rustc"),
        "byproducts": [{"name": b.name, "digest": dict(b.digest)} for b in rd.byproducts],
        "resolved": [
            {"name": d.name, "uri": d.uri, "digest": dict(d.digest)}
            for d in bd.resolved_dependencies
        ],
    }


def referrer_summary(descriptor: dict, manifest: dict, blob: bytes) -> dict:
    out = {
        "digest": descriptor["digest"],
        "artifactType": descriptor.get("artifactType"),
        "listedAnnotations": descriptor.get("annotations", {}),
        "manifestArtifactType": manifest.get("artifactType"),
        "subject": manifest.get("subject", {}).get("digest"),
        "layerMediaType": manifest["layers"][0]["mediaType"],
    }
    if manifest.get("artifactType") == IN_TOTO:
        out["statement"] = statement_summary(blob)
    return out


def from_layout(path: str) -> list:
    layout = oras.layout.NewLayout(path)  # validates oci-layout, index.json and the blobs
    index = json.loads(pathlib.Path(path, "index.json").read_text())
    found = []
    for d in index["manifests"]:
        if "artifactType" not in d:
            continue
        manifest = json.loads(layout.digest_to_blob_path(d["digest"]).read_bytes())
        blob = layout.digest_to_blob_path(manifest["layers"][0]["digest"]).read_bytes()
        found.append(referrer_summary(d, manifest, blob))
    return found


def from_registry(host: str, repo: str, subjects: list) -> list:
    reg = oras.provider.Registry(insecure=True)
    found = []
    for subject in subjects:
        tag = subject.replace(":", "-", 1)
        index = reg.get_manifest(f"{host}/{repo}:{tag}", allowed_media_type=[INDEX])
        for d in index["manifests"]:
            ref = f"{host}/{repo}@{d['digest']}"
            manifest = reg.get_manifest(ref)
            with tempfile.TemporaryDirectory() as tmp:
                out = os.path.join(tmp, "blob")
                reg.download_blob(reg.get_container(ref), manifest["layers"][0]["digest"], out)
                blob = pathlib.Path(out).read_bytes()
            s = referrer_summary(d, manifest, blob)
            s["tag"] = tag
            found.append(s)
    return found


def push_foreign(host: str, repo: str, subject: str, size: int) -> str:
    """Another tool's referrer of `subject` (a signature-like artifact, pushed with oras),
    listed under the fallback tag as that tool would."""
    reg = oras.provider.Registry(insecure=True)
    with tempfile.TemporaryDirectory() as tmp:
        sig = os.path.join(tmp, "signature.txt")
        pathlib.Path(sig).write_text("not ours\n")
        subj = oras.oci.Subject(
            mediaType="application/vnd.oci.image.manifest.v1+json", digest=subject, size=size
        )
        resp = reg.push(
            f"{host}/{repo}:foreign",
            files=[f"{sig}:application/vnd.example.signature"],
            subject=subj,
            disable_path_validation=True,
            quiet=True,
        )
    digest = resp.headers["Docker-Content-Digest"]
    manifest = reg.get_manifest(f"{host}/{repo}@{digest}")
    index = {
        "schemaVersion": 2,
        "mediaType": INDEX,
        "manifests": [
            {
                "mediaType": manifest["mediaType"],
                "digest": digest,
                "size": len(json.dumps(manifest)),
                "artifactType": "application/vnd.example.signature",
            }
        ],
    }
    # The size must be the stored manifest's: read it back as bytes.
    raw = reg.do_request(
        f"http://{host}/v2/{repo}/manifests/{digest}",
        "GET",
        headers={"Accept": manifest["mediaType"]},
    ).content
    index["manifests"][0]["size"] = len(raw)
    tag = subject.replace(":", "-", 1)
    r = reg.do_request(
        f"http://{host}/v2/{repo}/manifests/{tag}",
        "PUT",
        headers={"Content-Type": INDEX},
        data=json.dumps(index).encode(),
    )
    if r.status_code not in (200, 201):
        raise SystemExit(f"PUT {tag}: {r.status_code} {r.text}")
    return digest


def main(argv: list) -> None:
    kind = argv[1]
    if kind == "layout":
        print(json.dumps({"referrers": from_layout(argv[2])}))
    elif kind == "archive":
        with tempfile.TemporaryDirectory() as tmp:
            with tarfile.open(argv[2]) as t:
                t.extractall(tmp, filter="data")
            print(json.dumps({"referrers": from_layout(tmp)}))
    elif kind == "registry":
        print(json.dumps({"referrers": from_registry(argv[2], argv[3], argv[4:])}))
    elif kind == "foreign":
        print(json.dumps({"digest": push_foreign(argv[2], argv[3], argv[4], int(argv[5]))}))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
