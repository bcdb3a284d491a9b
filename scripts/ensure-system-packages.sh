#!/usr/bin/env bash
# Installs the Debian packages the test suite needs, only when one is missing (`make test` runs this
# first). Each tool maps to its package; `apt-get update` runs once, and only when something is missing.
# Not root and no sudo, or apt fails: prints the exact command to run and exits non-zero.
set -euo pipefail

# tool -> Debian package. promtool comes with `prometheus` (--no-install-recommends keeps it small).
declare -A PACKAGE_OF=(
    [redis-server]=redis-server
    [chromium]=chromium
    [promtool]=prometheus
    [jq]=jq
    [curl]=curl
)

missing=()
for tool in redis-server chromium promtool jq curl; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        missing+=("${PACKAGE_OF[$tool]}")
    fi
done

if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi

install_cmd="apt-get update && apt-get install -y --no-install-recommends ${missing[*]}"
echo "ensure-system-packages: missing Debian packages: ${missing[*]}" >&2

if [ "$(id -u)" -eq 0 ]; then
    run=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    run=(sudo -n)
else
    echo "ensure-system-packages: not root; install them with:" >&2
    echo "    sudo sh -c '$install_cmd'" >&2
    exit 1
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure-system-packages: no apt-get on this machine; install the equivalents of: ${missing[*]}" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
if ! "${run[@]}" apt-get update -qq \
    || ! "${run[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"; then
    echo "ensure-system-packages: apt failed; install them with:" >&2
    echo "    ${run[*]:+${run[0]} }sh -c '$install_cmd'" >&2
    exit 1
fi

for tool in redis-server chromium promtool jq curl; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "ensure-system-packages: '$tool' still missing after installing; install package ${PACKAGE_OF[$tool]}" >&2
        exit 1
    fi
done
echo "ensure-system-packages: installed ${missing[*]}" >&2
