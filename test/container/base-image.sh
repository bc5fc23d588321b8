#!/usr/bin/env bash
# A stand-in for the Dockerfile's default base (node:20-bookworm-slim) when no image registry is
# reachable: Debian bookworm from Debian's own packages (debootstrap), plus this machine's
# Node.js (the files of its nodejs package, Node >= 20.19 as the package needs). The Dockerfile
# installs Python and everything else itself. Built once; later runs reuse the image.
#   test/container/base-image.sh [TAG]
set -euo pipefail
tag=${1:-vision-trainer-test/node-bookworm:20}
docker=${DOCKER:-docker}
say() { printf '[base-image] %s\n' "$*" >&2; }

if "$docker" image inspect "$tag" >/dev/null 2>&1; then
  say "$tag exists"
  exit 0
fi
for tool in debootstrap node dpkg; do
  command -v "$tool" >/dev/null || { say "needs $tool (apt-get install debootstrap; Node.js from a nodejs package)"; exit 1; }
done
node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 19) ? 0 : 1)' \
  || { say "this machine's Node.js $(node --version) is older than 20.19"; exit 1; }
dpkg -S "$(readlink -f "$(command -v node)")" >/dev/null 2>&1 || { say "node is not from a Debian package here; cannot copy it"; exit 1; }
[[ -d /usr/lib/node_modules/npm ]] || { say "npm is not in /usr/lib/node_modules/npm"; exit 1; }

# Outside the repository (and large): the root filesystem is removed once imported.
work=$(mktemp -d "${TMPDIR:-/var/tmp}/vt-base-XXXXXX")
trap 'rm -rf "$work"' EXIT
say "debootstrap bookworm (minbase) into $work/rootfs"
debootstrap --variant=minbase bookworm "$work/rootfs" http://deb.debian.org/debian >"$work/debootstrap.log" 2>&1 \
  || { tail -20 "$work/debootstrap.log" >&2; exit 1; }
say "adding Node.js $(node --version) and npm $(npm --version) (the nodejs package's files, npm as installed)"
# npm may have been upgraded after the package was installed: its folder is taken as it is now.
{
  dpkg -L nodejs | while IFS= read -r f; do
    if [[ ( -f "$f" || -L "$f" ) && "$f" != /usr/lib/node_modules/* ]]; then printf '%s\n' "${f#/}"; fi
  done
  printf '%s\n' usr/lib/node_modules
} | tar -C / -cf - -T - | tar -C "$work/rootfs" -xf -
rm -rf "$work/rootfs"/var/lib/apt/lists/* "$work/rootfs"/var/cache/apt/*.bin
chroot "$work/rootfs" /usr/bin/env -i PATH=/usr/bin:/bin npm --version >/dev/null || { say "node and npm do not run inside the new root filesystem"; exit 1; }
say "importing as $tag"
tar -C "$work/rootfs" -c . | "$docker" import \
  -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  -c 'CMD ["node"]' - "$tag" >/dev/null
say "done: $("$docker" image inspect "$tag" --format '{{.Size}}' | awk '{printf "%.0f MB", $1/1e6}')"
