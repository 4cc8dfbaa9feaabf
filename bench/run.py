"""qimg benchmarks: prints a table of numbers measured in this run (never asserted in tests).

- start to first ssh login: a qimg image against the start of the public Qarnot example
  (`ssh-keygen -A`, keys appended to root's authorized_keys);
- the ssh layer's size: qimg's, the installed size of the packages themselves, a plain install;
- `qimg --help` wall time against a bare interpreter.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import docker

from qimg.builder.build import build_image
from qimg.builder.spec import ImageSpec
from qimg.launcher import local
from qimg.launcher.ssh import Endpoint, make_throwaway_identity, wait_until_ready

RUNS = 5
BASE = "debian:bookworm-slim"
# The start of the public Qarnot ssh example, plus one line printing the host key so that the same
# pinned login measures both. Host keys baked in by the package are removed (else every container
# shares them, and `ssh-keygen -A` has nothing to do at start).
EXAMPLE_DOCKERFILE = f"""FROM {BASE}
RUN apt-get update && apt-get install -y openssh-server && rm /etc/ssh/ssh_host_*
CMD ["sh", "-c", "mkdir -p /run/sshd /root/.ssh && ssh-keygen -A && echo \\"$DOCKER_SSH\\" >> /root/.ssh/authorized_keys && echo qimg-host-key: $(cut -d' ' -f1,2 /etc/ssh/ssh_host_ed25519_key.pub) && exec /usr/sbin/sshd -D -e"]
"""  # noqa: E501


def median_seconds(action: Callable[[], object], runs: int = RUNS) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def start_to_login(client: docker.DockerClient, image: str, command: str, user: str, workdir: Path) -> float:
    workdir.mkdir()
    identity = make_throwaway_identity(workdir, "bench")

    def once() -> None:
        container = local.start(client, image, command, {"DOCKER_SSH": identity.public_line}, purpose="bench")
        try:
            wait_until_ready(
                Endpoint(container.host, container.port, user), identity.private_key, workdir / "known_hosts",
                lambda: local.host_keys(client, container.id), time.monotonic() + 60,
            )  # fmt: skip
        finally:
            local.remove(client, container.id)

    once()  # warm the page cache
    return median_seconds(once)


def layer_size(client: docker.DockerClient, image: str) -> int:
    layers = client.images.get(image).history()
    return max(int(layer["Size"]) for layer in layers if "apt-get" in layer["CreatedBy"])


def installed_size(client: docker.DockerClient, image: str) -> int:
    """Installed-Size that dpkg declares for the packages the image adds (docs included, so an upper bound
    of what the files take once docs are excluded, as on this base)."""

    def packages(ref: str) -> dict[str, int]:
        out = client.containers.run(
            ref, ["dpkg-query", "-W", "-f", "${Package} ${Installed-Size}\\n"], remove=True, entrypoint=[]
        )
        return {name: int(size) * 1024 for name, size in (line.split() for line in out.decode().splitlines())}

    base = packages(BASE)
    return sum(size for name, size in packages(image).items() if name not in base)


def main() -> None:
    client = docker.from_env()
    rows: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        qimg_image = build_image(client, ImageSpec.create(user="alice"), "qimg-bench/alice:latest").tag
        (workdir / "Dockerfile").write_text(EXAMPLE_DOCKERFILE)
        client.images.build(path=str(workdir), tag="qimg-bench/example:latest", rm=True)
        ours = start_to_login(client, qimg_image, "/usr/local/sbin/qimg-start", "alice", workdir / "a")
        theirs = start_to_login(client, "qimg-bench/example:latest", "", "root", workdir / "b")
        rows += [
            ("start to first ssh login, qimg image (median s)", f"{ours:.2f}"),
            ("start to first ssh login, Qarnot-example start (median s)", f"{theirs:.2f}"),
            ("  ratio example / qimg", f"{theirs / ours:.1f}x"),
        ]
        ours_layer = layer_size(client, qimg_image)
        plain_layer = layer_size(client, "qimg-bench/example:latest")
        floor = installed_size(client, qimg_image)
        rows += [
            ("ssh layer, qimg (MB)", f"{ours_layer / 1e6:.1f}"),
            ("ssh layer, Installed-Size dpkg declares for its packages (MB)", f"{floor / 1e6:.1f}"),
            ("ssh layer, plain apt-get install openssh-server (MB)", f"{plain_layer / 1e6:.1f}"),
        ]
    python = sys.executable
    qimg_help = median_seconds(
        lambda: subprocess.run([python, "-m", "qimg", "--help"], capture_output=True, check=True), 10
    )
    bare = median_seconds(lambda: subprocess.run([python, "-c", "pass"], capture_output=True, check=True), 10)
    rows += [
        ("qimg --help (median s)", f"{qimg_help:.3f}"),
        ("python -c pass (median s)", f"{bare:.3f}"),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value:>8}")


if __name__ == "__main__":
    main()
