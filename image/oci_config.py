"""The Dockerfile's run-time metadata as `umoci config` arguments, one per line.

scripts/build-image.sh builds the same image without a daemon; reading USER, WORKDIR, ENV,
VOLUME, EXPOSE, ENTRYPOINT and CMD from the Dockerfile keeps the two images' configs one.
(HEALTHCHECK is a Docker extension that OCI image configs do not have; Kubernetes uses the
chart's probes instead.)
"""

import json
import shlex
import sys
from pathlib import Path


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined = text.replace("\\\n", " ")
    result = []
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        result.append((word.upper(), rest.strip()))
    return result


def umoci_arguments(dockerfile: Path) -> list[str]:
    args: list[str] = []
    for word, rest in instructions(dockerfile.read_text(encoding="utf-8")):
        if word == "USER":
            args.append(f"--config.user={rest}")
        elif word == "WORKDIR":
            args.append(f"--config.workingdir={rest}")
        elif word == "ENV":
            args += [f"--config.env={pair}" for pair in shlex.split(rest)]
        elif word == "VOLUME":
            args += [f"--config.volume={v}" for v in json.loads(rest)]
        elif word == "EXPOSE":
            args += [f"--config.exposedports={p}/tcp" for p in rest.split()]
        elif word == "ENTRYPOINT":
            args += [f"--config.entrypoint={a}" for a in json.loads(rest)]
        elif word == "CMD":
            args += [f"--config.cmd={a}" for a in json.loads(rest)]
    return args


if __name__ == "__main__":
    print("\n".join(umoci_arguments(Path(sys.argv[1]))))
