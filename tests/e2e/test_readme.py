"""The README is executed: every command of its ```sh blocks runs here, in the README's order, as a user
types it (the installed `qimg` on PATH, a fresh HOME, a working directory outside the repository),
against the local engine and the fake Qarnot API with its registry and S3. A README command that breaks
fails this test.

Each command (a line of a block, continuations joined, its comment left out) is one of:
- REWRITTEN: run as the replacement given, for the reason given (a placeholder such as `...` or NAME,
  a summary line of alternatives, a command that runs until Ctrl-C);
- NOT_RUN: not run here, for the reason given;
- any other: run as written, with the one substitution every line gets (`registry.example.com` is the
  test registry).
So a new command is run, and an entry naming a command the README no longer has (an edited one) fails
the test until the lists follow: nothing is skipped silently.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import docker

from qimg.launcher.ssh import free_local_port
from tests.e2e.conftest import User
from tests.fakes.qarnot import FakeQarnot
from tests.fakes.registry import REGISTRY_PASSWORD, Registry
from tests.fakes.s3 import S3
from tests.helpers import REPO, qimg_executable

README = REPO / "README.md"

# Markers in replacements, filled in by the test: the fake's token, a free local port.
TOKEN, PORT = "@TOKEN@", "@PORT@"
# The name of the one task `qimg ls` lists with an ssh endpoint (one just stopped may still be listed,
# pending its deletion), which a replacement needs: qimg names tasks at random.
ONE_TASK = (
    "import json, sys;"
    ' (task,) = [t for t in json.load(sys.stdin)["tasks"] if t["endpoints"]]; print(task["name"])'
)
NEWEST = f"$(qimg ls --json | python3 -c '{ONE_TASK}')"
# `qimg tunnel` runs until Ctrl-C: a Ctrl-C after a while, and its exit (130, as the README says) checked.
UNTIL_CTRL_C = "timeout --preserve-status -s INT 5"

REWRITTEN: dict[str, tuple[str, str]] = {
    "qimg ls | ssh NAME [-- CMD] | tunnel NAME 8888 | logs NAME [-f] | stop NAME | stop --all": (
        f'NAME={NEWEST} && qimg ls && qimg ssh "$NAME" -- id && qimg logs "$NAME"'
        f' && {{ {UNTIL_CTRL_C} qimg tunnel "$NAME" {PORT} || [ $? = 130 ]; }}'
        ' && qimg stop "$NAME" && qimg run --local --name other && qimg stop other --local'
        " && qimg stop --all",
        "a summary of subcommands joined by |: each run once, on the task `qimg run --ssh` left (the local"
        " engine is shared: `stop --all` runs on Qarnot's side only, where every task is this test's)",
    ),
    "qimg snapshot NAME | fetch NAME [DIR] | ls --buckets | stop NAME --purge": (
        "qimg run --ssh --name snap --results ./snap-out && qimg snapshot snap && qimg fetch snap"
        " && qimg fetch snap ./snap-dir && qimg ls --buckets && qimg stop snap --purge",
        "a summary of subcommands joined by |: each run once, on a task with a results bucket",
    ),
    "qimg jupyter --local qimg/alice:jupyter": (
        f"{{ timeout --preserve-status -s INT 30 qimg jupyter --local qimg/alice:jupyter --no-browser"
        f" --port {PORT} >jupyter.url || [ $? = 130 ]; }} && grep -q '^http://127.0.0.1:' jupyter.url",
        "it serves until Ctrl-C, and no browser here: its URL printed, then a Ctrl-C (130, as Ctrl-C exits)",
    ),
    "qimg run --local qimg/alice:dev --name dev": (
        "{ timeout --preserve-status -s INT 20 qimg run --local qimg/alice:dev --name dev"
        f" --tunnel {PORT}:8888"
        ' || [ $? = 130 ]; } && qimg ls --local --json | grep -q \'"label": "Jupyter"\'',
        "it holds the forwarded port until Ctrl-C (a Ctrl-C after 20 s), and 8888 may be taken here: the same"
        " remote port from a free local one, its label shown by ls",
    ),
    "qimg code dev --local": (
        "qimg code dev --local --print 2>code.err | grep -q '/workspaces/'"
        " && grep -q defaultExtensions code.err",
        "no VS Code here: the link printed, in the workspace folder, and the extensions' setting on stderr",
    ),
    "qimg profiles | hardware | account": (
        "qimg profiles && qimg hardware && qimg account",
        "a summary of subcommands joined by |: each run once",
    ),
    "qimg keygen [--ppk]": (
        "qimg keygen --ppk --out ~/.ssh/id_readme"
        " && qimg keygen --from ~/.ssh/id_readme.ppk --out ~/.ssh/id_back",
        "[--ppk] is optional: run with it, beside the key the user already has, and the .ppk converted back",
    ),
    "export QARNOT_CLIENT_TOKEN=...": (f"export QARNOT_CLIENT_TOKEN={TOKEN}", "`...` is the fake's token"),
    'echo "$REGISTRY_PASSWORD" | qimg push --to ... --username me --password-stdin': (
        'echo "$REGISTRY_PASSWORD" | qimg push --to registry.example.com/team/alice:dev --username me'
        " --password-stdin",
        "`...` is the reference of the line above",
    ),
    "qimg run --command 'nvidia-smi; python3 train.py'": (
        "qimg run --command 'nvidia-smi; python3 -c \"print(42)\"'",
        "no train.py here (nvidia-smi is missing too: the ; goes on, as it does on a machine without GPU)",
    ),
    "qimg run --connect": (
        "echo exit | script -qec 'qimg run --connect' /dev/null",
        "a session needs a terminal: util-linux `script` gives it one, and `exit` ends it",
    ),
    "qimg tunnel alice-1a2b 8888": (
        f'NAME={NEWEST} && {{ {UNTIL_CTRL_C} qimg tunnel "$NAME" {PORT} || [ $? = 130 ]; }}',
        "alice-1a2b is the name `qimg run --ssh` printed, 8888 a free port here; it runs until Ctrl-C",
    ),
    "qimg stop alice-1a2b": (f'NAME={NEWEST} && qimg stop "$NAME"', "alice-1a2b: the name printed above"),
    "export HF_TOKEN=...": ("export HF_TOKEN=hf-readme-secret", "`...` is the user's Hugging Face token"),
    "qimg run registry.example.com/team/jupyter:gpu --name nb --profile docker-nvidia-network-ssh --gpu"
    " --ram 32 --scheduling on-demand --max-queue 30m --timeout 2400 --env NOTEBOOKS=/job/notebooks"
    " --secret HF_TOKEN --upload ./notebooks --upload ./data --results ./out --snapshot-every 30m"
    " --idle-stop 2h": (
        "qimg run registry.example.com/team/alice:dev --name nb --profile docker-nvidia-network-ssh --gpu"
        " --ram 32 --scheduling on-demand --max-queue 30m --timeout 2400 --env NOTEBOOKS=/job/notebooks"
        " --secret HF_TOKEN --upload ./notebooks --upload ./data --results ./out --snapshot-every 30m"
        " --idle-stop 2h",
        "the CUDA image is not built here (see NOT_RUN): the image pushed above, every option as written",
    ),
    "qimg tunnel nb 8888": (
        f"{{ {UNTIL_CTRL_C} qimg tunnel nb {PORT} || [ $? = 130 ]; }}",
        "8888: a free port here; it runs until Ctrl-C",
    ),
    'docker run -d -e DOCKER_SSH="$(cat ~/.ssh/id_ed25519.pub)" -p 127.0.0.1:2222:22 qimg/alice:latest': (
        f'ID=$(docker run -d -e DOCKER_SSH="$(cat ~/.ssh/id_ed25519.pub)" -p 127.0.0.1:{PORT}:22'
        ' qimg/alice:latest) && docker rm -f "$ID"',
        "2222: a free port here; the container is removed after",
    ),
}

NOT_RUN: dict[str, str] = {
    "make demo": "`make test` runs it on the checkout (the Makefile's test target)",
    "make test": "the suite this test is part of",
    "pipx install .": "tests/packaging/test_distributions.py runs it, and pip install of the wheel and sdist",
    "qimg build --base nvidia/cuda:12.4.1-runtime-ubuntu22.04 --user alice --package jupyter-notebook"
    " --tag registry.example.com/team/jupyter:gpu": (
        "pulls a multi-GB CUDA base image; the same build runs above on debian:bookworm-slim"
    ),
    "qimg push --to registry.example.com/team/jupyter:gpu": "its image is the CUDA build, not built here",
    **dict.fromkeys(
        (
            "systemctl --user start podman.socket",
            "export DOCKER_HOST=unix://$XDG_RUNTIME_DIR/podman/podman.sock",
            "sudo systemctl start podman.socket",
            "export DOCKER_HOST=unix:///run/podman/podman.sock",
        ),
        "no systemd here, and the README's later commands use Docker: the suite starts the same service"
        " with `podman system service` (tests/podman.py) and points DOCKER_HOST at it (tests/engines.py)",
    ),
    'qimg ssh nb -- \'cd "$NOTEBOOKS" && nohup jupyter notebook --no-browser --ip 127.0.0.1 --port 8888'
    " >~/jupyter.log 2>&1 </dev/null &'": "Jupyter is in the CUDA image only (see above)",
}


def readme_devcontainer() -> str:
    """The devcontainer.json the README shows (its one ```jsonc block)."""
    found = re.search(r"^```jsonc\n(.*?)^```", README.read_text(), flags=re.MULTILINE | re.DOTALL)
    assert found, "README.md: no ```jsonc block (the devcontainer.json of its devcontainer section)"
    return found[1]


# What the user has in their working directory for the commands that upload it, and the project
# `qimg build --devcontainer` builds.
FILES = {
    "data/run.sh": "echo from-the-task > /job/result.txt\n",
    "notebooks/hello.ipynb": "{}\n",
    ".devcontainer/devcontainer.json": readme_devcontainer(),
}


def readme_commands() -> list[list[str]]:
    """Each ```sh block of the README as its commands: continuation lines joined, comments left out."""
    blocks = re.findall(r"^```sh\n(.*?)^```", README.read_text(), flags=re.MULTILINE | re.DOTALL)
    commands = []
    for block in blocks:
        joined = re.sub(r"\s*\\\n\s*", " ", block)
        lines = (re.sub(r"\s+#\s.*$", "", line).strip() for line in joined.splitlines())
        commands.append([line for line in lines if line])
    return commands


def test_every_readme_command_is_run_or_listed() -> None:
    """A command the lists do not name is run as written; an entry of the lists names a README command
    (an edited command leaves a stale entry here, and fails until the lists follow)."""
    commands = [command for block in readme_commands() for command in block]
    assert len(commands) > 20  # the parse found the blocks
    assert set(REWRITTEN) & set(NOT_RUN) == set()
    stale = sorted((set(REWRITTEN) | set(NOT_RUN)) - set(commands))
    assert stale == [], f"listed in tests/e2e/test_readme.py but not in README.md: {stale}"
    assert all(reason for _, reason in REWRITTEN.values()) and all(NOT_RUN.values())


FAILED = '{ status=$?; echo "README command failed (exit $status)"; exit $status; }'


def script_of(block: list[str], registry: Registry, fake: FakeQarnot) -> str:
    """A block as one shell script: each command echoed, then run; the first that fails (anywhere in
    an && list, which `set -e` would pass over) ends the script with its status."""
    lines = ["set -o pipefail", "exec 2>&1"]
    for command in block:
        if command in NOT_RUN:
            continue
        line = REWRITTEN[command][0] if command in REWRITTEN else command
        line = line.replace("registry.example.com", registry.host)
        line = line.replace(TOKEN, fake.token).replace(PORT, str(free_local_port()))
        lines += [f"echo {shlex.quote('$ ' + line)}", f"{{ {line}\n}} || {FAILED}"]
    return "\n".join(lines) + "\n"


def test_the_readme_commands_run(
    fake: FakeQarnot,
    storage: S3,
    open_registry: Registry,
    tmp_path: Path,
    user: User,
    docker_client: docker.DockerClient,
) -> None:
    """One HOME for the whole README (the images built and the state carry from block to block), and a
    fresh working directory holding FILES for each block: the blocks are separate examples."""
    home, bin_dir = tmp_path / "readme-home", tmp_path / "readme-bin"
    for folder in (home / ".ssh", bin_dir):
        folder.mkdir(parents=True)
    shutil.copy(user.home / ".ssh" / "id_ed25519", home / ".ssh")  # the user's own key pair
    shutil.copy(user.public_key, home / ".ssh")
    # Only `qimg` from the installed package joins the PATH (its venv's python stays out of it).
    (bin_dir / "qimg").symlink_to(qimg_executable())
    kept = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "QARNOT_", "SSH_", "DOCKER_C"))}
    env = {
        **kept,
        "HOME": str(home),
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "QARNOT_CLUSTER_URL": fake.url,
        "QARNOT_CLIENT_TOKEN": fake.token,
        "REGISTRY_PASSWORD": REGISTRY_PASSWORD,
    }
    try:
        for number, block in enumerate(readme_commands(), start=1):
            work = tmp_path / f"readme-work-{number}"
            for name, text in FILES.items():
                (work / name).parent.mkdir(parents=True, exist_ok=True)
                (work / name).write_text(text)
            ran = subprocess.run(
                ["bash", "-c", script_of(block, open_registry, fake)], cwd=work, env=env,
                stdout=subprocess.PIPE, text=True, timeout=1800, check=False,
            )  # fmt: skip
            assert ran.returncode == 0, f"README block {number} failed:\n{ran.stdout[-6000:]}"
            assert "Traceback" not in ran.stdout, ran.stdout
    finally:
        # Qarnot's side only: `stop --all --local` would stop other sessions' tasks on the shared engine.
        subprocess.run(
            ["qimg", "stop", "--all", "--purge"], cwd=home, env=env, capture_output=True, check=False
        )
        # The tags naming this session's registry (the layers stay in the build cache); qimg/alice:latest
        # stays, as on a user's machine.
        for image in docker_client.images.list():
            for tag in image.tags:
                if tag.startswith(open_registry.host + "/"):
                    docker_client.images.remove(tag)
