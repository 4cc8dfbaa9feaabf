"""qimg benchmarks: prints a table of numbers measured in this run (never asserted in tests).

- start to first ssh login: a qimg image against the start of the public Qarnot example
  (`ssh-keygen -A`, keys appended to root's authorized_keys);
- the ssh layer's size: qimg's, the installed size of the packages themselves, a plain install;
- `qimg run --local --command true` against a raw `docker run` plus an ssh retry loop, with one
  instance and with 8 (raw: the containers started one after another, the ssh loops in parallel, one
  `docker rm -f` for all);
- against the fake Qarnot API: the delay between a forward appearing and the launcher knowing it,
  and the API requests per launch (and per second of it, from `qimg run` to ready), for qimg and for
  the polling loop of the public Qarnot example (SDK defaults: `task.state` with its 5 s cache, then
  `task.wait(5)` between checks);
- `qimg ls --json` with 20 running tasks on the fake API, against the raw SDK listing them;
- `qimg --help` wall time against a bare interpreter;
- a no-op rebuild: `qimg build` of an image already built against `docker build` of the same rendered
  context, with the builder qimg picks (the docker CLI's default) and with the legacy builder
  (DOCKER_BUILDKIT=0 for both).

`python -m bench.run [SECTION ...]` runs only the sections named (all by default; `make bench
ROWS="rebuild run-local"`), on a shared machine where only some numbers are wanted.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import docker

from qimg.builder.build import build_image
from qimg.builder.render import write_context
from qimg.builder.spec import Distro, ImageSpec
from qimg.engine_api import Engine
from qimg.launcher import containers
from qimg.launcher.keys.generate import throwaway_key
from qimg.launcher.ssh import wait_until_ready

# qimg as users run it: the installed command (its console script), not `python -m qimg`, whose runpy
# costs every call 5 ms more.
QIMG = str(Path(sys.executable).with_name("qimg"))
RUNS = 5
REBUILD_RUNS = 11  # a no-op rebuild takes a few tenths of a second: more pairs for a steadier median
ONE_LAUNCH_RUNS = 9  # so does a launch of one instance, whose ratio is the closest to its target
LISTED_TASKS = 20
MANY = 8  # instances in the second `run --local` measure
RAW_RETRY_SECONDS = 0.05  # between the raw loop's ssh tries
ATTEMPTS = 3  # of a launch against the fake API (see launch_against_fake)
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


def paired_medians(
    first: Callable[[], object], second: Callable[[], object], runs: int = RUNS
) -> tuple[float, float]:
    """The median times of two actions run in turns, so that a change in the machine's load (other jobs
    on a 2-core machine) weighs on both sides of a ratio alike."""
    firsts, seconds = [], []
    for _ in range(runs):
        firsts.append(median_seconds(first, 1))
        seconds.append(median_seconds(second, 1))
    return statistics.median(firsts), statistics.median(seconds)


def start_to_login(engine: Engine, image: str, command: str, user: str, workdir: Path) -> float:
    workdir.mkdir()
    key = throwaway_key(workdir, "bench")

    def once() -> None:
        container = containers.start(engine, image, command, {"DOCKER_SSH": key.docker_ssh}, purpose="bench")
        try:
            wait_until_ready(
                container.endpoint, user, key.identity, workdir / "known_hosts",
                lambda: containers.host_keys(engine, container.id), time.monotonic() + 60,
            )  # fmt: skip
        finally:
            containers.remove(engine, container.id)

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


def run_local_vs_raw(
    image: str, key: Path, env: dict[str, str], instances: int, runs: int = RUNS
) -> tuple[float, float]:
    qimg_run = [
        QIMG, "run", "--local", image, "--key", f"{key}.pub",
        "--instances", str(instances), "--command", "true",
    ]  # fmt: skip
    public = Path(f"{key}.pub").read_text()

    def login_loop(container: str) -> None:
        """ssh until it works, trusting any host key, every 50 ms as a hand-written script would."""
        port = (
            subprocess.run(["docker", "port", container, "22"], capture_output=True, text=True, check=True)
            .stdout.split(":")[-1]
            .strip()
        )
        ssh = ["ssh", "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "UserKnownHostsFile=/dev/null",
               "-o", "StrictHostKeyChecking=accept-new", "-o", "LogLevel=ERROR", "-i", str(key),
               "-p", port, "alice@127.0.0.1", "true"]  # fmt: skip
        while subprocess.run(ssh, capture_output=True, check=False).returncode != 0:
            time.sleep(RAW_RETRY_SECONDS)

    def raw() -> None:
        """What people script by hand: docker run for each, then ssh until it works, then docker rm -f."""
        started: list[str] = []
        try:
            for _ in range(instances):
                started.append(
                    subprocess.run(
                        ["docker", "run", "-d", "-p", "127.0.0.1::22", "-e", f"DOCKER_SSH={public}", image,
                         "/usr/local/sbin/qimg-start"], capture_output=True, text=True, check=True,
                    ).stdout.strip()
                )  # fmt: skip
            with ThreadPoolExecutor(len(started)) as pool:
                list(pool.map(login_loop, started))
        finally:
            subprocess.run(["docker", "rm", "-f", *started], capture_output=True, check=True)

    return paired_medians(
        lambda: subprocess.run(qimg_run, env=env, capture_output=True, check=True), raw, runs
    )


def launch_against_fake(
    client: docker.DockerClient, image: str, key: Path, env: dict[str, str]
) -> list[float]:
    """[qimg delay, qimg requests, qimg requests per second, example delay, example requests], forwards
    appearing 3 s after the task executes."""
    import qarnot

    from tests.fakes.qarnot import FakeQarnot, Faults

    with FakeQarnot(client) as fake:
        fake.faults = Faults(forward_delay=3)
        qimg_env = {**env, "QARNOT_CLUSTER_URL": fake.url, "QARNOT_CLIENT_TOKEN": fake.token}
        launch = [
            QIMG,
            "run",
            image,
            "--key",
            f"{key}.pub",
            "--name",
            "bench",
            "--json",
        ]
        for attempt in range(ATTEMPTS):
            first_request, started_at = len(fake.requests), time.monotonic()
            launched = subprocess.run(
                [*launch, "--timeout", "60"], env=qimg_env, capture_output=True, check=False
            )
            ready_at = time.monotonic()
            if launched.returncode == 0:
                break
            # Tests running on the same engine remove every container labelled as the fake's.
            print(f"(the fake API's launch failed, attempt {attempt + 1} of {ATTEMPTS})", file=sys.stderr)
        launched.check_returncode()
        (task,) = fake.tasks.values()
        qimg_delay, qimg_requests = ready_at - task.forwards_from, len(fake.requests) - first_request
        qimg_rate = qimg_requests / (ready_at - started_at)
        subprocess.run([QIMG, "stop", "bench"], env=qimg_env, capture_output=True, check=True)

        connection = qarnot.Connection(client_token=fake.token, cluster_url=fake.url)
        first_request = len(fake.requests)
        example = connection.create_task("example", "docker-network-ssh", 1)
        for name, value in fake_constants(image, key).items():
            example.constants[name] = value
        example.submit()
        while True:
            if example.state == "FullyExecuting":
                forwards = example.status.running_instances_info.per_running_instance_info[0].active_forward
                if forwards:
                    break
            example.wait(5)
        found_at = time.monotonic()
        (task,) = fake.tasks.values()
        example_delay, example_requests = found_at - task.forwards_from, len(fake.requests) - first_request
        example.delete()
    return [qimg_delay, qimg_requests, qimg_rate, example_delay, example_requests]


def list_against_fake(client: docker.DockerClient, image: str, key: Path, env: dict[str, str]) -> list[float]:
    """[qimg ls --json (median s), its API requests, the raw SDK listing the same tasks (median s)], with
    20 running tasks made by the raw SDK, tagged as qimg tags its tasks."""
    import qarnot

    from tests.fakes.qarnot import FakeQarnot

    with FakeQarnot(client) as fake:
        connection = qarnot.Connection(client_token=fake.token, cluster_url=fake.url)
        made = []
        for number in range(LISTED_TASKS):
            task = connection.create_task(f"listed-{number}", "docker-network-ssh", 1)
            for name, value in fake_constants(image, key).items():
                task.constants[name] = value
            task.tags = ["qimg"]
            task.submit()
            made.append(task)
        deadline = time.monotonic() + 120
        while len(fake.running()) < LISTED_TASKS or any(
            t.state != "FullyExecuting" for t in fake.tasks.values()
        ):
            assert time.monotonic() < deadline, "the listed tasks did not all start"
            time.sleep(0.5)
        qimg_env = {**env, "QARNOT_CLUSTER_URL": fake.url, "QARNOT_CLIENT_TOKEN": fake.token}
        ls = [QIMG, "ls", "--json"]
        first_request = len(fake.requests)
        subprocess.run(ls, env=qimg_env, capture_output=True, check=True)
        ls_requests = len(fake.requests) - first_request
        ours = median_seconds(lambda: subprocess.run(ls, env=qimg_env, capture_output=True, check=True), 3)
        raw = [
            sys.executable, "-c",
            "import sys, qarnot; c = qarnot.Connection(client_token=sys.argv[1], cluster_url=sys.argv[2]); "
            "list(c.all_tasks(summary=False, tags=['qimg']))", fake.token, fake.url,
        ]  # fmt: skip
        theirs = median_seconds(lambda: subprocess.run(raw, capture_output=True, check=True), 3)
        for task in made:
            task.delete()
    return [ours, ls_requests, theirs]


def fake_constants(image: str, key: Path) -> dict[str, str]:
    registry, _, rest = image.partition("/")
    repository, _, tag = rest.partition(":")
    return {
        "DOCKER_SRV": f"http://{registry}", "DOCKER_REPO": repository, "DOCKER_TAG": tag,
        "DOCKER_SSH": Path(f"{key}.pub").read_text().strip(), "DOCKER_CMD": "/usr/local/sbin/qimg-start",
    }  # fmt: skip


def user_env(workdir: Path) -> tuple[dict[str, str], Path]:
    """A user's environment of its own (HOME with a key pair, qimg's state) and the key's path."""
    (workdir / "home").mkdir(exist_ok=True)
    key = throwaway_key(workdir / "home", "bench").identity
    return {**os.environ, "HOME": str(workdir / "home"), "XDG_STATE_HOME": str(workdir / "state")}, key


def run_local_rows(image: str, workdir: Path) -> list[tuple[str, str]]:
    env, key = user_env(workdir)
    ours, theirs = run_local_vs_raw(image, key, env, 1, ONE_LAUNCH_RUNS)
    ours_many, theirs_many = run_local_vs_raw(image, key, env, MANY)
    return [
        ("qimg run --local --command true (median s)", f"{ours:.2f}"),
        ("docker run + ssh retry loop every 50 ms, no host key pinned (median s)", f"{theirs:.2f}"),
        ("  ratio qimg / raw", f"{ours / theirs:.2f}x"),
        (f"qimg run --local --instances {MANY} --command true (median s)", f"{ours_many:.2f}"),
        (f"the same raw work for {MANY} containers (median s)", f"{theirs_many:.2f}"),
        (f"  ratio qimg / raw, {MANY} instances", f"{ours_many / theirs_many:.2f}x"),
    ]


def fake_api_rows(client: docker.DockerClient, image: str, workdir: Path) -> list[tuple[str, str]]:
    from qimg.builder.push import push_image
    from qimg.builder.spec import ImageRef
    from tests.fakes.registry import serve_registry

    env, key = user_env(workdir)
    (workdir / "registry").mkdir()
    with serve_registry(workdir / "registry", auth=False) as registry:
        pushed = push_image(client, image, ImageRef.parse(registry.ref("bench/alice:latest"), "--to"))
        qimg_delay, qimg_requests, qimg_rate, example_delay, example_requests = launch_against_fake(
            client, pushed.ref, key, env
        )
        ls_seconds, ls_requests, raw_list_seconds = list_against_fake(client, pushed.ref, key, env)
    return [
        ("fake API: forward appears -> qimg ready, ssh login done (s)", f"{qimg_delay:.2f}"),
        ("fake API: API requests per qimg launch", f"{qimg_requests:.0f}"),
        ("fake API: API requests per second, qimg run to ready", f"{qimg_rate:.2f}"),
        ("fake API: forward appears -> Qarnot example sees it (s)", f"{example_delay:.2f}"),
        ("fake API: API requests per Qarnot-example launch", f"{example_requests:.0f}"),
        (f"fake API: qimg ls --json, {LISTED_TASKS} running tasks (median s)", f"{ls_seconds:.2f}"),
        ("fake API: API requests per qimg ls", f"{ls_requests:.0f}"),
        (f"fake API: raw SDK listing the {LISTED_TASKS} tasks (median s)", f"{raw_list_seconds:.2f}"),
        ("  ratio qimg ls / raw SDK", f"{ls_seconds / raw_list_seconds:.2f}x"),
    ]


def rebuild_rows(workdir: Path) -> list[tuple[str, str]]:
    """`qimg build` of alice's image once built, against `docker build` of the context qimg renders for
    it (the same Dockerfile and files, so the same cached steps), each builder in turn: the default
    (BuildKit where the CLI has buildx, as qimg then uses it) and the legacy one."""
    env, _key = user_env(workdir)
    context = workdir / "context"
    write_context(ImageSpec.create(user="alice", distro=Distro.DEBIAN), context)
    tag = "qimg-bench/rebuild:latest"
    qimg_build = [QIMG, "build", "--user", "alice", "--tag", tag]
    docker_build = ["docker", "build", "-q", "-t", tag, str(context)]
    rows = []
    for builder, extra in (("default builder", {}), ("legacy builder", {"DOCKER_BUILDKIT": "0"})):
        builder_env = {**env, **extra}

        def run(argv: list[str], environment: dict[str, str] = builder_env) -> None:
            subprocess.run(argv, env=environment, capture_output=True, check=True)

        run(qimg_build)  # built (or found cached) once: what follows is the no-op
        run(docker_build)
        ours, theirs = paired_medians(lambda: run(qimg_build), lambda: run(docker_build), REBUILD_RUNS)
        rows += [
            (f"no-op rebuild, {builder}: qimg build (median s)", f"{ours:.2f}"),
            (f"no-op rebuild, {builder}: docker build, same context (median s)", f"{theirs:.2f}"),
            ("  ratio qimg / docker build; difference (s)", f"{ours / theirs:.2f}x {ours - theirs:+.2f}"),
        ]
    return rows


def login_rows(client: docker.DockerClient, qimg_image: str, workdir: Path) -> list[tuple[str, str]]:
    (workdir / "Dockerfile").write_text(EXAMPLE_DOCKERFILE)
    client.images.build(path=str(workdir), tag="qimg-bench/example:latest", rm=True)
    engine = Engine.from_env()
    ours = start_to_login(engine, qimg_image, "/usr/local/sbin/qimg-start", "alice", workdir / "a")
    theirs = start_to_login(engine, "qimg-bench/example:latest", "", "root", workdir / "b")
    ours_layer = layer_size(client, qimg_image)
    plain_layer = layer_size(client, "qimg-bench/example:latest")
    floor = installed_size(client, qimg_image)
    return [
        ("start to first ssh login, qimg image (median s)", f"{ours:.2f}"),
        ("start to first ssh login, Qarnot-example start (median s)", f"{theirs:.2f}"),
        ("  ratio example / qimg", f"{theirs / ours:.1f}x"),
        ("ssh layer, qimg (MB)", f"{ours_layer / 1e6:.1f}"),
        ("ssh layer, Installed-Size dpkg declares for its packages (MB)", f"{floor / 1e6:.1f}"),
        ("ssh layer, plain apt-get install openssh-server (MB)", f"{plain_layer / 1e6:.1f}"),
    ]


def help_rows() -> list[tuple[str, str]]:
    python = sys.executable
    qimg_help = median_seconds(lambda: subprocess.run([QIMG, "--help"], capture_output=True, check=True), 10)
    bare = median_seconds(lambda: subprocess.run([python, "-c", "pass"], capture_output=True, check=True), 10)
    return [
        ("qimg --help (median s)", f"{qimg_help:.3f}"),
        ("python -c pass (median s)", f"{bare:.3f}"),
        ("  ratio qimg --help / python -c pass", f"{qimg_help / bare:.1f}x"),
    ]


SECTIONS = ("login", "run-local", "fake-api", "rebuild", "help")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description="qimg's benchmarks")
    parser.add_argument("sections", nargs="*", help=f"the sections to run, of {', '.join(SECTIONS)} (all)")
    wanted = parser.parse_args().sections or SECTIONS
    if unknown := sorted(set(wanted) - set(SECTIONS)):
        parser.error(f"no such section: {', '.join(unknown)} (sections: {', '.join(SECTIONS)})")
    client = docker.from_env()
    rows: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        image = "qimg-bench/alice:latest"
        if {"login", "run-local", "fake-api"} & set(wanted):
            build_image(client, ImageSpec.create(user="alice"), image)
        sections: dict[str, Callable[[Path], list[tuple[str, str]]]] = {
            "login": lambda where: login_rows(client, image, where),
            "run-local": lambda where: run_local_rows(image, where),
            "fake-api": lambda where: fake_api_rows(client, image, where),
            "rebuild": rebuild_rows,
            "help": lambda _where: help_rows(),
        }
        for section in (section for section in SECTIONS if section in wanted):
            (workdir / section).mkdir()
            rows += sections[section](workdir / section)
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value:>8}")


if __name__ == "__main__":
    main()
