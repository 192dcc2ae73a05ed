#!/bin/sh
# The build steps of the mammo-node image, run as root INSIDE the image's root filesystem:
# by the Dockerfile (RUN) and by scripts/build-image.sh (chroot), so both builds are one.
#
#   install.sh system   Debian packages of image/apt-packages.txt, the non-root user, volumes
#   install.sh python   the pinned venv /opt/venv: torch==2.13.0 + pyproject.toml's dependencies
#                       under constraints.txt; from /tmp/wheels when present (offline), else
#                       from PyPI with TORCH_INDEX_URL (CPU build by default) as extra index
#                       and /opt/mammo-node on the venv's path with the `mammo-node` command
#   install.sh app      byte-compile the source tree (copied to /opt/mammo-node beforehand: the
#                       root filesystem is read-only at run time) and check that the node starts
#
# Expects image/, pyproject.toml and constraints.txt at /opt/mammo-node before `system`, and
# node/, orthanc/, models/, dicom_sr_templates/ there before `app`.
set -eu
APP=/opt/mammo-node
VENV=/opt/venv
USER_ID=10001
DATA=/var/lib/mammo-node

system() {
  export DEBIAN_FRONTEND=noninteractive
  # Never start Debian's Orthanc service while installing (exit 101: "do not start").
  printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
  chmod +x /usr/sbin/policy-rc.d
  apt-get update -q
  # shellcheck disable=SC2046
  apt-get install -y -qq --no-install-recommends $(grep -v '^#' "$APP/image/apt-packages.txt")
  apt-get clean
  rm -rf /var/lib/apt/lists/* /usr/sbin/policy-rc.d
  getent group mammo >/dev/null || groupadd --system --gid "$USER_ID" mammo
  getent passwd mammo >/dev/null ||
    useradd --system --uid "$USER_ID" --gid mammo --home-dir "$DATA" --shell /usr/sbin/nologin mammo
  # The only writable places at run time (declared volumes): the data directory and /tmp.
  install -d -o mammo -g mammo -m 0750 "$DATA"
  chmod 1777 /tmp
}

python_deps() {
  python3 -m venv "$VENV"
  requirements=$("$VENV/bin/python" - "$APP/pyproject.toml" <<'PY'
import sys, tomllib
with open(sys.argv[1], "rb") as f:
    print("\n".join(tomllib.load(f)["project"]["dependencies"]))
PY
)
  printf '%s\n' "$requirements" >/tmp/requirements.txt
  if [ -d /tmp/wheels ]; then
    set -- --no-index --find-links /tmp/wheels
  else
    set -- --extra-index-url "${TORCH_INDEX_URL:-https://download.pytorch.org/whl/cpu}"
  fi
  # torch first and pinned exactly (as the Makefile does): monai must never pull another build.
  "$VENV/bin/pip" install -q --no-cache-dir --no-compile "$@" -c "$APP/constraints.txt" torch==2.13.0
  "$VENV/bin/pip" install -q --no-cache-dir --no-compile "$@" -c "$APP/constraints.txt" -r /tmp/requirements.txt
  rm -f /tmp/requirements.txt
  # Byte-compiled now: nothing can write __pycache__ at run time.
  "$VENV/bin/python" -m compileall -q -j 0 -x 'torch/testing/_internal/py3[0-9]+_' "$VENV/lib" >/dev/null  # (torch ships a 3.12-only test file)
  # The node finds models/, orthanc/ and dicom_sr_templates/ beside node/ (node.config.PROJECT_ROOT):
  # the tree stays whole and is put on the venv's path, as an editable install would.
  site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
  echo "$APP" >"$site/mammo_node.pth"
  cat >"$VENV/bin/mammo-node" <<PY
#!$VENV/bin/python
import sys
from node.cli import main
sys.exit(main())
PY
  chmod 0755 "$VENV/bin/mammo-node"
  ln -sf "$VENV/bin/mammo-node" /usr/local/bin/mammo-node
}

app() {
  "$VENV/bin/python" -m compileall -q -j 0 "$APP/node" "$APP/orthanc" >/dev/null
  "$VENV/bin/mammo-node" --version
}

case "${1:-}" in
  system) system ;;
  python) python_deps ;;
  app) app ;;
  *) echo "usage: install.sh system|python|app" >&2; exit 2 ;;
esac
