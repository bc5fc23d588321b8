#!/usr/bin/env bash
# Builds the production image on the stand-in base (test/container/base-image.sh) with BuildKit,
# giving the build this machine's CA bundle as the `ca` secret (the package registries are
# reachable from inside a build only with it here; it never lands in a layer). Prints the build
# time and the image size.
#   test/container/build-image.sh [TAG]
set -euo pipefail
cd "$(dirname "$0")/../.."
tag=${1:-vision-trainer:test}
base=${BASE_IMAGE:-vision-trainer-test/node-bookworm:20}
docker=${DOCKER:-docker}
ca=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
say() { printf '[build-image] %s\n' "$*" >&2; }

secret=()
[[ -s "$ca" ]] && secret=(--secret "id=ca,src=$ca")
started=$(date +%s)
say "building $tag on $base"
DOCKER_BUILDKIT=1 "$docker" build --progress=plain --build-arg "BASE_IMAGE=$base" "${secret[@]}" -t "$tag" .
seconds=$(( $(date +%s) - started ))
size=$("$docker" image inspect "$tag" --format '{{.Size}}')
say "built $tag in ${seconds} s; image size $(awk -v b="$size" 'BEGIN { printf "%.2f GB", b / 1e9 }')"
