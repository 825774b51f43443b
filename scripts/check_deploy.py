#!/usr/bin/env python3
"""Check rendered Kubernetes manifests for pgswitch (kubectl kustomize or
helm template output) for what the deploy files promise, beyond what the
Kubernetes schemas can say.

    check_deploy.py --shape standalone|sidecar [--external-secret NAME]... FILE

FILE holds the rendered documents (several, separated by ---). Prints each
check as it passes and ends with a count; exits 1 on any failure, each
named by its document (kind/name), the field and what was expected, and 2
on a usage error or a file that can't be read. Run by
scripts/validate-deploy.sh.

Every container (init containers included):
  - runs as non-root: runAsNonRoot true and a non-zero runAsUser, in its
    own securityContext or the pod's;
  - readOnlyRootFilesystem true, allowPrivilegeEscalation false, not
    privileged, capabilities.drop contains ALL, seccompProfile RuntimeDefault
    (or Localhost), in its own securityContext or the pod's (seccomp);
  - resources.requests and resources.limits both set cpu and memory;
  - port names are valid (at most 15 characters) and probes name ports that
    exist;
  - every Secret and ConfigMap it names (env, envFrom, volumes) is in the
    rendered output (or named with --external-secret), with the keys asked for.
The pgswitch container (named "pgswitch"):
  - readinessProbe httpGet /readyz and livenessProbe httpGet /healthz, on
    the metrics_listen port, which listens beyond loopback (the kubelet
    probes the pod's IP);
  - reads its config (--config / PGSWITCH_CONFIG) from a mounted ConfigMap
    whose pgswitch.toml uses only keys of config/pgswitch.example.toml and
    holds no password; the server's password comes from a Secret;
  - terminationGracePeriodSeconds is above its preStop sleep +
    shutdown_timeout + server_reset_timeout (from the file, env or args;
    defaults 30s and 5s).
standalone: a Deployment of pgswitch with at least 2 pods (replicas or the
  HPA's minReplicas), listening beyond loopback; a Service and a headless
  Service selecting its pods, the latter named in peers with the client
  port; a PodDisruptionBudget selecting them; a HorizontalPodAutoscaler on
  CPU for the Deployment; a ConfigMap and a Secret; prometheus.io/scrape
  "true" and prometheus.io/port on the pod template.
sidecar: a Deployment whose pods run pgswitch on 127.0.0.1 and an app
  container whose DATABASE_URL points at 127.0.0.1:<pgswitch's port>, with
  its password from a Secret; pgswitch outlives the app on shutdown: a native
  sidecar (init container with restartPolicy Always) or a preStop sleep.
"""

import argparse
import os
import re
import sys

try:
    import yaml
except ImportError:  # pragma: no cover
    sys.exit("check_deploy.py: needs PyYAML (scripts/validate-deploy.sh installs it)")
try:
    import tomllib
except ImportError:  # Python < 3.11
    try:
        import tomli as tomllib
    except ImportError:  # pragma: no cover
        sys.exit("check_deploy.py: needs Python 3.11+ or the tomli package")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(REPO, "config", "pgswitch.example.toml")
WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job")
PORT_NAME = re.compile(r"^(?=.*[a-z])[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
DEFAULTS = {"shutdown_timeout": "30s", "server_reset_timeout": "5s",
            "listen": "127.0.0.1:6432", "metrics_listen": ""}
# PGSWITCH_* variables and flags that beat the file's keys (README
# "Command line and environment").
ENV_KEYS = {"PGSWITCH_LISTEN": "listen", "PGSWITCH_METRICS_LISTEN": "metrics_listen",
            "PGSWITCH_PEERS": "peers", "PGSWITCH_TLS_CERT": "tls_cert_file",
            "PGSWITCH_CLIENT_TLS": "client_tls"}
FLAG_KEYS = {"--listen": "listen", "--metrics-listen": "metrics_listen",
             "--peer": "peers", "--tls-cert": "tls_cert_file", "--client-tls": "client_tls"}


class Checker:
    def __init__(self, source, quiet=False):
        self.source = source
        self.quiet = quiet
        self.passed = 0
        self.failed = []

    def ok(self, where, what):
        self.passed += 1
        if not self.quiet:
            print(f"  ok    {where}: {what}")

    def fail(self, where, what):
        self.failed.append(f"{where}: {what}")
        if not self.quiet:
            print(f"  FAIL  {where}: {what}")

    def check(self, cond, where, what, why=""):
        if cond:
            self.ok(where, what)
        else:
            self.fail(where, what + (f" ({why})" if why else ""))
        return bool(cond)


def doc_id(doc):
    return f"{doc.get('kind', '?')}/{(doc.get('metadata') or {}).get('name', '?')}"


def example_keys(path):
    """Keys of the [pgswitch] table in the example, commented-out ones too."""
    keys, inside = set(), False
    with open(path, encoding="utf-8") as f:
        for line in f:
            s = line.strip()
            if s.startswith("["):
                inside = s == "[pgswitch]"
                continue
            m = re.match(r"^#?\s?([a-z_]+)\s*=", s)
            if inside and m:
                keys.add(m.group(1))
    if not keys:
        sys.exit(f"check_deploy.py: no [pgswitch] keys found in {path}")
    return keys


UNITS = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1, "sec": 1, "secs": 1, "second": 1,
         "seconds": 1, "m": 60, "min": 60, "mins": 60, "minute": 60, "minutes": 60,
         "h": 3600, "hr": 3600, "hrs": 3600, "hour": 3600, "hours": 3600,
         "d": 86400, "day": 86400, "days": 86400}


def seconds(text):
    """Seconds in a duration as pgswitch reads it ("30s", "1m30s", "500ms")."""
    parts = re.findall(r"(\d+)\s*([a-z]+)", str(text))
    if not parts or re.sub(r"[\d\sa-z]", "", str(text)) or any(u not in UNITS for _, u in parts):
        raise ValueError(f"cannot read the duration {text!r}")
    return sum(int(n) * UNITS[u] for n, u in parts)


def host_port(addr):
    host, _, port = str(addr).rpartition(":")
    return host.strip("[]"), int(port) if port.isdigit() else None


def is_loopback(host):
    return host in ("localhost", "::1") or host.startswith("127.")


def label_match(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def load(path):
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if isinstance(d, dict)]


class Render:
    def __init__(self, docs, external_secrets):
        self.docs = docs
        self.by_kind = {}
        for d in self.docs:
            self.by_kind.setdefault(d.get("kind"), []).append(d)
        self.external = set(external_secrets)

    def named(self, kind, name):
        for d in self.by_kind.get(kind, []):
            if (d.get("metadata") or {}).get("name") == name:
                return d
        return None

    def keys(self, doc):
        return set((doc.get("data") or {}).keys()) | set((doc.get("stringData") or {}).keys())


def containers(pod):
    for c in pod.get("initContainers") or []:
        yield "initContainers", c
    for c in pod.get("containers") or []:
        yield "containers", c


def check_container(ck, r, where, pod, c):
    psc = pod.get("securityContext") or {}
    sc = c.get("securityContext") or {}
    w = f"{where} container {c.get('name')}"

    def eff(key):
        return sc[key] if key in sc else psc.get(key)

    ck.check(eff("runAsNonRoot") is True, w, "runAsNonRoot is true",
             f"securityContext.runAsNonRoot is {eff('runAsNonRoot')!r} in the container and the pod")
    uid = eff("runAsUser")
    ck.check(isinstance(uid, int) and uid > 0, w, f"runAsUser is non-zero ({uid})",
             "set securityContext.runAsUser to a non-zero number (the image's USER is a name)")
    ck.check(sc.get("readOnlyRootFilesystem") is True, w, "readOnlyRootFilesystem is true",
             f"securityContext.readOnlyRootFilesystem is {sc.get('readOnlyRootFilesystem')!r}")
    ck.check(sc.get("allowPrivilegeEscalation") is False, w, "allowPrivilegeEscalation is false",
             f"securityContext.allowPrivilegeEscalation is {sc.get('allowPrivilegeEscalation')!r}")
    ck.check(sc.get("privileged") is not True, w, "not privileged", "securityContext.privileged is true")
    drop = ((sc.get("capabilities") or {}).get("drop")) or []
    ck.check("ALL" in drop, w, "capabilities.drop contains ALL",
             f"securityContext.capabilities.drop is {drop!r}")
    add = ((sc.get("capabilities") or {}).get("add")) or []
    ck.check(not add, w, "adds no capabilities", f"securityContext.capabilities.add is {add!r}")
    seccomp = (eff("seccompProfile") or {}).get("type")
    ck.check(seccomp in ("RuntimeDefault", "Localhost"), w, f"seccompProfile is {seccomp}",
             "set securityContext.seccompProfile.type: RuntimeDefault (pod or container)")
    res = c.get("resources") or {}
    for part in ("requests", "limits"):
        got = res.get(part) or {}
        missing = [k for k in ("cpu", "memory") if k not in got]
        ck.check(not missing, w, f"resources.{part} set cpu and memory ({got.get('cpu')}, {got.get('memory')})",
                 f"resources.{part} lacks {', '.join(missing)}")
    ports = {p.get("name"): p.get("containerPort") for p in c.get("ports") or [] if p.get("name")}
    for name in ports:
        ck.check(len(name) <= 15 and PORT_NAME.match(name), w, f"port name {name!r} is valid",
                 "port names are at most 15 lowercase letters, digits and '-'")
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        port = ((c.get(probe) or {}).get("httpGet") or {}).get("port")
        if isinstance(port, str):
            ck.check(port in ports, w, f"{probe} port {port!r} is a port of the container",
                     f"no port named {port!r} in ports")
    # References to Secrets and ConfigMaps.
    for e in c.get("env") or []:
        vf = e.get("valueFrom") or {}
        for kind, ref in (("Secret", vf.get("secretKeyRef")), ("ConfigMap", vf.get("configMapKeyRef"))):
            if ref:
                check_ref(ck, r, w, f"env {e.get('name')}", kind, ref.get("name"), ref.get("key"),
                          ref.get("optional"))
    for ef in c.get("envFrom") or []:
        for kind, ref in (("Secret", ef.get("secretRef")), ("ConfigMap", ef.get("configMapRef"))):
            if ref:
                check_ref(ck, r, w, "envFrom", kind, ref.get("name"), None, ref.get("optional"))


def check_ref(ck, r, where, what, kind, name, key, optional):
    doc = r.named(kind, name)
    if doc is None:
        if kind == "Secret" and name in r.external:
            ck.ok(where, f"{what}: Secret {name} is expected to exist in the cluster (--external-secret)")
            return
        ck.check(bool(optional), where, f"{what}: {kind} {name} is in the rendered output",
                 f"{kind} {name} is not rendered")
        return
    if key is None or optional:
        ck.ok(where, f"{what}: {kind} {name} is rendered")
        return
    ck.check(key in r.keys(doc), where, f"{what}: {kind} {name} has key {key!r}",
             f"{kind} {name} has keys {sorted(r.keys(doc))}")


def env_map(c):
    return {e.get("name"): e for e in c.get("env") or []}


def env_value(c, name):
    e = env_map(c).get(name)
    return None if e is None else e.get("value")


def secret_backed(c, ref_text):
    """Whether every $(VAR) in the password part of a URL is an env var from a Secret."""
    m = re.match(r"^[a-z]+://[^:@/]*:([^@]*)@", ref_text or "")
    if not m:
        return False, "the URL has no password"
    vars_ = re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", m.group(1))
    if not vars_:
        return False, f"the password {m.group(1)!r} is written in the manifest"
    envs = env_map(c)
    for v in vars_:
        if not ((envs.get(v) or {}).get("valueFrom") or {}).get("secretKeyRef"):
            return False, f"$({v}) is not set from a secretKeyRef"
    return True, ""


def pgswitch_config(ck, r, where, pod, c, allowed):
    """The effective settings of a pgswitch container: file, then env, then flags."""
    args = [str(a) for a in (c.get("command") or [])[1:] + (c.get("args") or [])]
    path = None
    for i, a in enumerate(args):
        if a == "--config" and i + 1 < len(args):
            path = args[i + 1]
        elif a.startswith("--config="):
            path = a.split("=", 1)[1]
    path = path or env_value(c, "PGSWITCH_CONFIG")
    w = f"{where} container pgswitch"
    settings = dict(DEFAULTS)
    if not ck.check(path, w, f"reads a config file ({path})", "no --config argument or PGSWITCH_CONFIG"):
        return settings
    volumes = {v.get("name"): v for v in pod.get("volumes") or []}
    text = None
    for m in c.get("volumeMounts") or []:
        mp = m.get("mountPath", "").rstrip("/")
        vol = volumes.get(m.get("name")) or {}
        cm = vol.get("configMap")
        if not cm:
            continue
        if m.get("subPath"):
            rel = m["subPath"] if path == mp else None
        elif path.startswith(mp + "/"):
            rel = path[len(mp) + 1:]
        else:
            rel = None
        if rel is None:
            continue
        for item in cm.get("items") or []:
            if item.get("path") == rel:
                rel = item.get("key")
        doc = r.named("ConfigMap", cm.get("name"))
        if ck.check(doc is not None, w, f"config volume's ConfigMap {cm.get('name')} is rendered",
                    "ConfigMap not in the rendered output"):
            text = (doc.get("data") or {}).get(rel)
            ck.check(text is not None, w, f"ConfigMap {cm.get('name')} has key {rel!r} for {path}",
                     f"keys: {sorted((doc.get('data') or {}).keys())}")
        break
    if not ck.check(text is not None, w, f"{path} comes from a mounted ConfigMap",
                    "no configMap volume is mounted there"):
        return settings
    try:
        toml = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        ck.fail(w, f"pgswitch.toml is not valid TOML: {e}")
        return settings
    table = toml.get("pgswitch") or {}
    unknown = sorted(set(table) - allowed)
    ck.check(not unknown, w, f"pgswitch.toml's [pgswitch] keys are all in config/pgswitch.example.toml ({len(table)})",
             f"unknown keys {unknown}")
    others = sorted(set(toml) - {"pgswitch", "databases", "users"})
    ck.check(not others, w, "pgswitch.toml has no unknown tables", f"tables {others}")
    leaked = [f"users[{i}].password" for i, u in enumerate(toml.get("users") or []) if "password" in u or "server_password" in u]
    leaked += [f"databases[{i}].primary" for i, d in enumerate(toml.get("databases") or [])
               if re.match(r"^[a-z]+://[^:@/]*:[^@]+@", str(d.get("primary", "")))]
    ck.check(not leaked, w, "pgswitch.toml (a ConfigMap) holds no password", f"passwords in {leaked}: use the Secret")
    settings.update(table)
    envs = env_map(c)
    for var, key in ENV_KEYS.items():
        if var in envs and envs[var].get("value") is not None:
            v = envs[var]["value"]
            settings[key] = [p for p in v.split(",") if p] if key == "peers" else v
    flag_peers = []
    for i, a in enumerate(args):
        name, eq, val = a.partition("=")
        if name in FLAG_KEYS:
            val = val if eq else (args[i + 1] if i + 1 < len(args) else "")
            if FLAG_KEYS[name] == "peers":
                flag_peers.append(val)
            else:
                settings[FLAG_KEYS[name]] = val
    if flag_peers:
        settings["peers"] = flag_peers
    return settings


def check_pgswitch(ck, r, where, pod, section, c, allowed):
    w = f"{where} container pgswitch"
    settings = pgswitch_config(ck, r, where, pod, c, allowed)
    ports = {p.get("name"): p.get("containerPort") for p in c.get("ports") or []}
    mhost, mport = host_port(settings.get("metrics_listen") or ":")
    ck.check(mport is not None and not is_loopback(mhost), w,
             f"metrics_listen {settings.get('metrics_listen')!r} is reachable from the kubelet",
             "set metrics_listen to 0.0.0.0:9930 (the probes reach the pod's IP)")

    def probe(kind, path):
        get = ((c.get(kind) or {}).get("httpGet")) or {}
        port = get.get("port")
        port = ports.get(port, port) if isinstance(port, str) else port
        ck.check(get.get("path") == path, w, f"{kind} is httpGet {path}",
                 f"{kind}.httpGet.path is {get.get('path')!r}")
        ck.check(port is not None and port == mport, w, f"{kind} probes the metrics port ({port})",
                 f"metrics_listen's port is {mport}")

    probe("readinessProbe", "/readyz")
    probe("livenessProbe", "/healthz")

    primary = env_value(c, "PGSWITCH_PRIMARY")
    if primary is not None:
        good, why = secret_backed(c, primary)
        ck.check(good, w, "PGSWITCH_PRIMARY's password comes from a Secret", why)
        settings["_primary_password"] = good
    else:
        e = env_map(c).get("PGSWITCH_PRIMARY")
        good = e is not None and bool((e.get("valueFrom") or {}).get("secretKeyRef"))
        ck.check(good, w, "PGSWITCH_PRIMARY comes from a Secret", "PGSWITCH_PRIMARY is not set")
        settings["_primary_password"] = good

    # The drain: the kubelet's SIGKILL must come after the preStop hook and
    # pgswitch's own shutdown.
    grace = pod.get("terminationGracePeriodSeconds", 30)
    pre = ((c.get("lifecycle") or {}).get("preStop")) or {}
    sleep = 0
    if "sleep" in pre:
        sleep = int((pre.get("sleep") or {}).get("seconds", 0))
    elif "exec" in pre:
        cmd = [str(x) for x in (pre["exec"].get("command") or [])]
        if cmd and os.path.basename(cmd[0]) == "sleep" and len(cmd) > 1:
            sleep = seconds(cmd[1] if not cmd[1].isdigit() else cmd[1] + "s")
    try:
        shut = seconds(settings.get("shutdown_timeout"))
        reset = seconds(settings.get("server_reset_timeout"))
    except ValueError as e:
        ck.fail(w, str(e))
        return settings
    need = sleep + shut + reset
    ck.check(isinstance(grace, int) and grace > need, where,
             f"terminationGracePeriodSeconds {grace} > preStop sleep {sleep:g} + shutdown_timeout {shut:g}"
             f" + server_reset_timeout {reset:g} = {need:g}",
             "the kubelet would SIGKILL pgswitch mid-drain")
    settings["_preStop"] = sleep
    settings["_section"] = section
    return settings


def pod_of(doc):
    spec = doc.get("spec") or {}
    if doc.get("kind") == "Pod":
        return spec, doc.get("metadata") or {}
    tmpl = spec.get("template") or {}
    return tmpl.get("spec") or {}, tmpl.get("metadata") or {}


def run(docs, shape, external, allowed, source, quiet=False):
    """All the checks on one rendering; returns the Checker."""
    r = Render(docs, external)
    ck = Checker(source, quiet)
    src = os.path.basename(source)
    if not quiet:
        print(f"check_deploy.py: {source} ({shape}): {len(r.docs)} documents: "
              + ", ".join(doc_id(d) for d in r.docs))

    pg = []  # (doc, pod, podmeta, section, container, settings)
    for kind in WORKLOADS + ("Pod",):
        for doc in r.by_kind.get(kind, []):
            where = f"{doc_id(doc)} ({src})"
            pod, meta = pod_of(doc)
            psc = pod.get("securityContext") or {}
            seccomp = (psc.get("seccompProfile") or {}).get("type")
            ck.check(seccomp == "RuntimeDefault", where, "pod seccompProfile is RuntimeDefault",
                     f"spec.securityContext.seccompProfile.type is {seccomp!r}")
            ck.check(psc.get("runAsNonRoot") is True, where, "pod runAsNonRoot is true",
                     f"spec.securityContext.runAsNonRoot is {psc.get('runAsNonRoot')!r}")
            for v in pod.get("volumes") or []:
                if v.get("configMap"):
                    check_ref(ck, r, where, f"volume {v.get('name')}", "ConfigMap",
                              v["configMap"].get("name"), None, v["configMap"].get("optional"))
                if v.get("secret"):
                    check_ref(ck, r, where, f"volume {v.get('name')}", "Secret",
                              v["secret"].get("secretName"), None, v["secret"].get("optional"))
            for section, c in containers(pod):
                check_container(ck, r, where, pod, c)
                if c.get("name") == "pgswitch":
                    s = check_pgswitch(ck, r, where, pod, section, c, allowed)
                    pg.append((doc, pod, meta, section, c, s))

    if not ck.check(len(pg) == 1, src, f"one pgswitch container in the workloads (found {len(pg)})",
                    "expected exactly one container named pgswitch"):
        return ck
    doc, pod, meta, section, c, s = pg[0]
    where = f"{doc_id(doc)} ({src})"
    labels = meta.get("labels") or {}
    lhost, lport = host_port(s.get("listen"))
    ck.check(doc.get("kind") == "Deployment", where, "pgswitch runs in a Deployment", f"it runs in a {doc.get('kind')}")
    ck.check(r.by_kind.get("ConfigMap"), src, "a ConfigMap is rendered", "no ConfigMap")
    secrets = [d for d in r.by_kind.get("Secret", [])]
    ck.check(secrets or r.external, src, "a Secret is rendered (or named as external)", "no Secret")

    if shape == "standalone":
        ck.check(section == "containers", where, "pgswitch is a regular container", f"it is in {section}")
        ck.check(lport is not None and not is_loopback(lhost), where,
                 f"listen {s.get('listen')!r} is reachable through a Service", "listen on 0.0.0.0")
        hpas = [h for h in r.by_kind.get("HorizontalPodAutoscaler", [])
                if ((h.get("spec") or {}).get("scaleTargetRef") or {}).get("name") == doc["metadata"]["name"]
                and ((h.get("spec") or {}).get("scaleTargetRef") or {}).get("kind") == "Deployment"]
        if ck.check(hpas, where, "a HorizontalPodAutoscaler scales the Deployment", "no HPA targets it"):
            hs = hpas[0]["spec"]
            cpu = [m for m in hs.get("metrics") or []
                   if m.get("type") == "Resource" and (m.get("resource") or {}).get("name") == "cpu"]
            hw = f"{doc_id(hpas[0])} ({src})"
            ck.check(cpu, hw, "scales on CPU", "no Resource metric named cpu")
            ck.check(hs.get("minReplicas", 1) >= 2, hw,
                     f"minReplicas {hs.get('minReplicas', 1)} >= 2", "one pod is no pool of instances")
        else:
            reps = (doc.get("spec") or {}).get("replicas", 1)
            ck.check(reps >= 2, where, f"replicas {reps} >= 2", "standalone runs several instances")
        svcs = [d for d in r.by_kind.get("Service", []) if label_match((d.get("spec") or {}).get("selector"), labels)]
        plain = [d for d in svcs if (d["spec"].get("clusterIP") != "None")]
        headless = [d for d in svcs if d["spec"].get("clusterIP") == "None"]
        client_ports = {p.get("name") for p in c.get("ports") or [] if p.get("containerPort") == lport} | {lport}
        for d in plain:
            tps = [p.get("targetPort", p.get("port")) for p in d["spec"].get("ports") or []]
            ck.check(any(t in client_ports for t in tps), f"{doc_id(d)} ({src})",
                     f"forwards to pgswitch's client port {lport}", f"targetPorts {tps}")
        ck.check(plain, where, "a Service selects the pods" + "".join(": " + doc_id(d) for d in plain[:1]),
                 "no non-headless Service selects the pod labels")
        if ck.check(headless, where, "a headless Service selects the pods" + "".join(": " + doc_id(d) for d in headless[:1]),
                    "no Service with clusterIP: None selects the pod labels"):
            peers = s.get("peers") or []
            names = set()
            for h in headless:
                n = h["metadata"]["name"]
                for p in h["spec"].get("ports") or []:
                    names.add((n, p.get("port")))
            hits = [p for p in peers
                    if (host_port(p)[0].split(".")[0], host_port(p)[1]) in names and host_port(p)[1] == lport]
            ck.check(hits, where, f"peers {peers} name the headless Service on the client port {lport}",
                     f"headless Services and ports: {sorted(names)}")
            for h in headless:
                ck.check(h["spec"].get("publishNotReadyAddresses") is True, f"{doc_id(h)} ({src})",
                         "publishNotReadyAddresses is true",
                         "unready pods (primary down) would not get cancel requests")
        pdbs = [d for d in r.by_kind.get("PodDisruptionBudget", [])
                if label_match(((d.get("spec") or {}).get("selector") or {}).get("matchLabels"), labels)]
        ck.check(pdbs, where, "a PodDisruptionBudget selects the pods", "none matches the pod labels")
        ann = meta.get("annotations") or {}
        ck.check(ann.get("prometheus.io/scrape") == "true", where, "pod annotation prometheus.io/scrape is \"true\"",
                 f"it is {ann.get('prometheus.io/scrape')!r}")
        mport = host_port(s.get("metrics_listen") or ":")[1]
        ck.check(str(ann.get("prometheus.io/port")) == str(mport), where,
                 f"pod annotation prometheus.io/port is the metrics port {mport}",
                 f"it is {ann.get('prometheus.io/port')!r}")
        # pgswitch refuses a non-loopback listen while a user needs no
        # password; TLS keeps the traffic private (README "listen").
        has_tls = bool(s.get("tls_cert_file"))
        ck.check(has_tls or s.get("_primary_password"), where,
                 "listens beyond loopback with " + ("TLS" if has_tls else "a password user (PGSWITCH_PRIMARY has a password)"),
                 "no TLS and no password in PGSWITCH_PRIMARY")
    else:
        ck.check(lport is not None and is_loopback(lhost), where,
                 f"pgswitch listens on loopback ({s.get('listen')})", "a sidecar serves its own pod only")
        native = section == "initContainers" and c.get("restartPolicy") == "Always"
        ck.check(native or (section == "containers" and s.get("_preStop", 0) > 0), where,
                 "pgswitch outlives the app on shutdown: "
                 + ("native sidecar (init container, restartPolicy Always)" if native
                    else f"preStop sleep {s.get('_preStop', 0):g}s"),
                 "make it an init container with restartPolicy: Always, or give it a preStop sleep")
        apps = [x for x in pod.get("containers") or [] if x.get("name") != "pgswitch"]
        if ck.check(apps, where, "an app container runs beside pgswitch", "no other container"):
            found = False
            for app in apps:
                url = env_value(app, "DATABASE_URL")
                if url is None:
                    continue
                found = True
                aw = f"{where} container {app.get('name')}"
                m = re.match(r"^postgres(?:ql)?://[^@]*@([^/:?]+):(\d+)(/|$)", url)
                ck.check(m and is_loopback(m.group(1)) and int(m.group(2)) == lport, aw,
                         f"DATABASE_URL points at pgswitch ({m.group(1)}:{m.group(2)})" if m else "DATABASE_URL points at pgswitch",
                         f"DATABASE_URL is {url!r}, pgswitch listens on {s.get('listen')}")
                good, why = secret_backed(app, url)
                ck.check(good, aw, "DATABASE_URL's password comes from a Secret", why)
            ck.check(found, where, "an app container sets DATABASE_URL", "no container but pgswitch sets DATABASE_URL")
    return ck


def finish(ck):
    print(f"check_deploy.py: {ck.source}: {ck.passed} checks passed, {len(ck.failed)} failed")
    for f in ck.failed:
        print(f"check_deploy.py: FAILED {f}", file=sys.stderr)
    return 1 if ck.failed else 0


# ------------------------------------------------------------- self-test ----
# Each mutation removes or breaks one promised field in a copy of a rendering
# that passes; the checks must then fail, naming that field.

def _workload(docs):
    for d in docs:
        if d.get("kind") in WORKLOADS:
            pod, _ = pod_of(d)
            if any(c.get("name") == "pgswitch" for _, c in containers(pod)):
                return d
    raise LookupError("no workload with a pgswitch container")


def _pod(docs):
    return pod_of(_workload(docs))[0]


def _pgswitch(docs):
    return next(c for _, c in containers(_pod(docs)) if c.get("name") == "pgswitch")


def _app(docs):
    return next(c for c in _pod(docs).get("containers") or [] if c.get("name") != "pgswitch")


def _drop_kind(kind, pred=lambda d: True):
    def f(docs):
        keep = [d for d in docs if not (d.get("kind") == kind and pred(d))]
        if len(keep) == len(docs):
            raise LookupError(f"no {kind} to remove")
        docs[:] = keep
    return f


def _pgswitch_toml(docs, edit):
    path = "/etc/pgswitch/pgswitch.toml"
    for d in docs:
        if d.get("kind") == "ConfigMap" and "pgswitch.toml" in (d.get("data") or {}):
            d["data"]["pgswitch.toml"] = edit(d["data"]["pgswitch.toml"])
            return
    raise LookupError(f"no ConfigMap with {path}")


def _del(obj, *path):
    for k in path[:-1]:
        obj = obj[k]
    del obj[path[-1]]


def _set_env(c, name, value):
    for e in c.get("env") or []:
        if e.get("name") == name:
            e.clear()
            e.update({"name": name, "value": value})
            return
    raise LookupError(f"no env {name}")


def _no_run_as_non_root(docs):
    _del(_pod(docs), "securityContext", "runAsNonRoot")
    _del(_pgswitch(docs), "securityContext", "runAsNonRoot")


def _root_user(docs):
    _pod(docs)["securityContext"]["runAsUser"] = 0
    _pgswitch(docs)["securityContext"]["runAsUser"] = 0


def _no_seccomp(docs):
    _del(_pod(docs), "securityContext", "seccompProfile")
    _del(_pgswitch(docs), "securityContext", "seccompProfile")


COMMON = [
    ("pod and container runAsNonRoot removed", _no_run_as_non_root, "runAsNonRoot"),
    ("runAsUser 0", _root_user, "runAsUser"),
    ("readOnlyRootFilesystem removed",
     lambda d: _del(_pgswitch(d), "securityContext", "readOnlyRootFilesystem"), "readOnlyRootFilesystem"),
    ("capabilities.drop removed",
     lambda d: _del(_pgswitch(d), "securityContext", "capabilities", "drop"), "capabilities.drop"),
    ("allowPrivilegeEscalation true",
     lambda d: _pgswitch(d)["securityContext"].update(allowPrivilegeEscalation=True), "allowPrivilegeEscalation"),
    ("seccompProfile removed", _no_seccomp, "seccompProfile"),
    ("resources.limits removed", lambda d: _del(_pgswitch(d), "resources", "limits"), "resources.limits"),
    ("resources.requests.memory removed",
     lambda d: _del(_pgswitch(d), "resources", "requests", "memory"), "resources.requests"),
    ("readinessProbe removed", lambda d: _del(_pgswitch(d), "readinessProbe"), "readinessProbe"),
    ("livenessProbe on /readyz",
     lambda d: _pgswitch(d)["livenessProbe"]["httpGet"].update(path="/readyz"), "livenessProbe"),
    ("terminationGracePeriodSeconds 30",
     lambda d: _pod(d).update(terminationGracePeriodSeconds=30), "terminationGracePeriodSeconds"),
    ("terminationGracePeriodSeconds removed (default 30)",
     lambda d: _del(_pod(d), "terminationGracePeriodSeconds"), "terminationGracePeriodSeconds"),
    ("shutdown_timeout raised to 2m in pgswitch.toml",
     lambda d: _pgswitch_toml(d, lambda t: re.sub(r"(?m)^shutdown_timeout = .*$", 'shutdown_timeout = "2m"', t)
                              if re.search(r"(?m)^shutdown_timeout = ", t) else t + '\nshutdown_timeout = "2m"\n'),
     "terminationGracePeriodSeconds"),
    ("unknown key in pgswitch.toml",
     lambda d: _pgswitch_toml(d, lambda t: t.replace("[pgswitch]", "[pgswitch]\nbogus_key = 1", 1)), "unknown keys"),
    ("password in pgswitch.toml",
     lambda d: _pgswitch_toml(d, lambda t: t + '\n[[users]]\nname = "app"\npassword = "secret"\n'),
     "holds no password"),
    ("PGSWITCH_PRIMARY with a literal password",
     lambda d: _set_env(_pgswitch(d), "PGSWITCH_PRIMARY", "postgres://app:secret@db:5432/app"),
     "PGSWITCH_PRIMARY"),
    ("Secret removed", _drop_kind("Secret"), "Secret"),
    ("ConfigMap removed", _drop_kind("ConfigMap"), "ConfigMap"),
]

STANDALONE = [
    ("headless Service removed",
     _drop_kind("Service", lambda d: (d.get("spec") or {}).get("clusterIP") == "None"), "headless Service"),
    ("client Service removed",
     _drop_kind("Service", lambda d: (d.get("spec") or {}).get("clusterIP") != "None"), "a Service selects"),
    ("PodDisruptionBudget removed", _drop_kind("PodDisruptionBudget"), "PodDisruptionBudget"),
    ("HorizontalPodAutoscaler removed", _drop_kind("HorizontalPodAutoscaler"), "HorizontalPodAutoscaler"),
    ("prometheus.io/scrape removed",
     lambda d: _del(_workload(d), "spec", "template", "metadata", "annotations", "prometheus.io/scrape"),
     "prometheus.io/scrape"),
    ("peers removed from pgswitch.toml",
     lambda d: _pgswitch_toml(d, lambda t: re.sub(r"(?m)^peers = .*$", "", t)), "peers"),
    ("listen on loopback",
     lambda d: _pgswitch_toml(d, lambda t: re.sub(r'(?m)^listen = .*$', 'listen = "127.0.0.1:6432"', t)), "listen"),
]

SIDECAR = [
    ("DATABASE_URL pointing at the server",
     lambda d: _set_env(_app(d), "DATABASE_URL", "postgres://$(DB_USER):$(DB_PASSWORD)@db:5432/app"), "DATABASE_URL"),
    ("DATABASE_URL with a literal password",
     lambda d: _set_env(_app(d), "DATABASE_URL", "postgres://app:secret@127.0.0.1:6432/app"), "DATABASE_URL"),
    ("app container's securityContext removed", lambda d: _del(_app(d), "securityContext"), "container app"),
    ("pgswitch neither native sidecar nor preStop sleep",
     lambda d: (_pgswitch(d).pop("restartPolicy", None), _pgswitch(d).pop("lifecycle", None)), "outlives the app"),
]


def self_test(docs, shape, external, allowed, source, verbose):
    base = run(docs, shape, external, allowed, source, quiet=True)
    if base.failed:
        print(f"check_deploy.py --self-test: {source} fails before any change:", file=sys.stderr)
        for f in base.failed:
            print(f"  {f}", file=sys.stderr)
        return 1
    import copy
    missed = skipped = 0
    cases = COMMON + (STANDALONE if shape == "standalone" else SIDECAR)
    for name, mutate, expect in cases:
        mutated = copy.deepcopy(docs)
        try:
            mutate(mutated)
        except (LookupError, KeyError, StopIteration) as e:
            # e.g. no Secret to remove where the Secret is external.
            print(f"  skipped {name}: not in this rendering ({e})")
            skipped += 1
            continue
        ck = run(mutated, shape, external, allowed, source, quiet=True)
        hits = [f for f in ck.failed if expect in f]
        if hits:
            if verbose:
                print(f"  caught {name}: {hits[0]}")
        else:
            missed += 1
            print(f"  MISSED {name}: expected a failure mentioning {expect!r}, got {ck.failed or 'none'}")
    tried = len(cases) - skipped
    print(f"check_deploy.py --self-test: {source}: {tried - missed} of {tried} broken copies caught"
          + (f", {skipped} not applicable" if skipped else "") + ("" if verbose else " (-v names each)"))
    return 1 if missed else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shape", choices=("standalone", "sidecar"), required=True)
    ap.add_argument("--external-secret", action="append", default=[],
                    help="a Secret the manifests may name without rendering it")
    ap.add_argument("--example", default=EXAMPLE, help="the example config whose keys are allowed")
    ap.add_argument("--self-test", action="store_true",
                    help="break one field at a time in copies of FILE and check that each is caught")
    ap.add_argument("-v", "--verbose", action="store_true", help="with --self-test: name each caught break")
    ap.add_argument("file")
    a = ap.parse_args()
    try:
        docs = load(a.file)
        allowed = example_keys(a.example)
    except (OSError, yaml.YAMLError) as e:
        print(f"check_deploy.py: {e}", file=sys.stderr)
        return 2
    if a.self_test:
        return self_test(docs, a.shape, a.external_secret, allowed, a.file, a.verbose)
    return finish(run(docs, a.shape, a.external_secret, allowed, a.file))


if __name__ == "__main__":
    sys.exit(main())
