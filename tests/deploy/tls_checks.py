"""Checks of the TLS wiring shared by the kustomize and Helm tests: gateway <-> router mutual TLS
from cert-manager Certificates (one private CA, the Secrets mounted as directories so renewals
reach running pods, the settings pointing into them), and the public Ingress (HTTPS only,
redirect). Each returns the list of problems it found."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Any

from tests.deploy.manifests import GATEWAY_LABEL, ROUTER_LABEL, Manifest, name, xrouter_workloads

ROUTER_FILES = {"XROUTER_ROUTER_TLS_CERT": "tls.crt", "XROUTER_ROUTER_TLS_KEY": "tls.key",
                "XROUTER_ROUTER_TLS_CLIENT_CA": "ca.crt"}
GATEWAY_FILES = {"XROUTER_GATEWAY_ROUTER_TLS_CERT": "tls.crt",
                 "XROUTER_GATEWAY_ROUTER_TLS_KEY": "tls.key",
                 "XROUTER_GATEWAY_ROUTER_TLS_CA": "ca.crt"}


def _by(docs: list[Manifest], kind: str, field: str) -> dict[str, Manifest]:
    out = {}
    for doc in docs:
        if doc["kind"] == kind:
            key = doc["metadata"]["name"] if field == "name" else doc["spec"][field]
            out[key] = doc
    return out


def _env(container: Mapping[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container.get("env", [])}


def _mounted_secret(doc: Manifest, container: Mapping[str, Any], path: str) -> str | None:
    """The Secret mounted (as a directory, without subPath) at the directory of `path`."""
    volumes = {v["name"]: v for v in doc["spec"]["template"]["spec"].get("volumes", [])}
    directory = str(PurePosixPath(path).parent)
    for mount in container.get("volumeMounts", []):
        if mount["mountPath"] == directory and "subPath" not in mount:
            secret = volumes.get(mount["name"], {}).get("secret")
            return None if secret is None else str(secret["secretName"])
    return None


def _side(docs: list[Manifest], doc: Manifest, files: Mapping[str, str],
          usage: str) -> tuple[list[str], Manifest | None]:
    certificates = _by(docs, "Certificate", "secretName")
    container = doc["spec"]["template"]["spec"]["containers"][0]
    env = _env(container)
    problems: list[str] = []
    secrets = set()
    for setting, file in files.items():
        path = env.get(setting, "")
        if PurePosixPath(path).name != file:
            problems.append(f"{name(doc)}: {setting}={path!r} is not a {file}")
            continue
        secrets.add(_mounted_secret(doc, container, path))
    if len(secrets) != 1 or None in secrets:
        return [*problems, f"{name(doc)}: TLS files not from one Secret mounted as a directory "
                           f"({sorted(map(str, secrets))})"], None
    certificate = certificates.get(str(secrets.pop()))
    if certificate is None:
        return [*problems, f"{name(doc)}: its TLS Secret comes from no rendered Certificate"], None
    if usage not in certificate["spec"].get("usages", []):
        problems.append(f"{name(certificate)}: usages lack {usage!r}")
    return problems, certificate


def _issuer_problems(docs: list[Manifest], certificates: list[Manifest]) -> list[str]:
    issuers = _by(docs, "Issuer", "name")
    refs = {(c["spec"]["issuerRef"]["name"], c["spec"]["issuerRef"].get("kind")) for c in certificates}
    if len(refs) != 1:
        return [f"the router's and gateway's certificates have issuers {sorted(refs)}"]
    issuer_name, kind = refs.pop()
    issuer = issuers.get(issuer_name)
    if kind != "Issuer" or issuer is None or "ca" not in issuer["spec"]:
        return [f"issuer {issuer_name!r} is no rendered CA Issuer"]
    ca = _by(docs, "Certificate", "secretName").get(issuer["spec"]["ca"]["secretName"])
    if ca is None or ca["spec"].get("isCA") is not True:
        return [f"issuer {issuer_name!r}: its CA secret comes from no isCA Certificate"]
    return []


def grpc_mtls_problems(docs: list[Manifest]) -> list[str]:
    """The router serves mTLS and the gateway presents a client certificate, both from
    cert-manager Certificates of one private CA Issuer; the router's certificate names the host
    the gateway dials; no plaintext escape hatch."""
    found = xrouter_workloads(docs)
    if set(found) != {GATEWAY_LABEL, ROUTER_LABEL}:
        return [f"workloads found: {sorted(found)}"]
    router, gateway = found[ROUTER_LABEL], found[GATEWAY_LABEL]
    problems, router_cert = _side(docs, router, ROUTER_FILES, "server auth")
    more, gateway_cert = _side(docs, gateway, GATEWAY_FILES, "client auth")
    problems += more
    if "XROUTER_ROUTER_INSECURE" in _env(router["spec"]["template"]["spec"]["containers"][0]):
        problems.append(f"{name(router)}: sets XROUTER_ROUTER_INSECURE")
    if router_cert is None or gateway_cert is None:
        return problems
    problems += _issuer_problems(docs, [router_cert, gateway_cert])
    target = _env(gateway["spec"]["template"]["spec"]["containers"][0])["XROUTER_ROUTER_TARGET"]
    host = target.removeprefix("dns:///").rsplit(":", 1)[0]
    if host not in router_cert["spec"].get("dnsNames", []):
        problems.append(f"{name(router_cert)}: dnsNames lack {host!r}, the gateway's target")
    return problems


def ingress_problems(docs: list[Manifest], service: str) -> list[str]:
    """One Ingress to the gateway's Service: TLS for every host it routes, its Secret from a
    rendered Certificate naming those hosts, HTTP redirected to HTTPS (HSTS is the
    controller's own setting: docs/security.md)."""
    ingresses = [d for d in docs if d["kind"] == "Ingress"]
    if len(ingresses) != 1:
        return [f"{len(ingresses)} Ingresses"]
    ingress = ingresses[0]
    spec, notes = ingress["spec"], ingress["metadata"].get("annotations", {})
    problems = []
    hosts = {rule["host"] for rule in spec["rules"]}
    backends = {p["backend"]["service"]["name"] for rule in spec["rules"]
                for p in rule["http"]["paths"]}
    if backends != {service}:
        problems.append(f"{name(ingress)}: backends {sorted(backends)} != [{service!r}]")
    certificates = _by(docs, "Certificate", "secretName")
    for tls in spec.get("tls", []):
        certificate = certificates.get(tls["secretName"])
        if certificate is None or set(certificate["spec"]["dnsNames"]) != set(tls["hosts"]):
            problems.append(f"{name(ingress)}: {tls['secretName']} is no Certificate of "
                            f"{tls['hosts']}")
        hosts -= set(tls["hosts"])
    if hosts or not spec.get("tls"):
        problems.append(f"{name(ingress)}: hosts without TLS: {sorted(hosts)}")
    for annotation in ("ssl-redirect", "force-ssl-redirect"):
        if notes.get(f"nginx.ingress.kubernetes.io/{annotation}") != "true":
            problems.append(f"{name(ingress)}: nginx.ingress.kubernetes.io/{annotation} != true")
    return problems
