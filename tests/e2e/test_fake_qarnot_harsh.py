"""The fake is as harsh as the real service where ../shared/qarnot-api.md says the service is harsh.

Each test drives the real SDK against the fake; what the SDK does then is what the launcher must
cope with. Tasks that need not run point at a registry that is not there (their pull fails).
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import docker
import pytest
import qarnot
import requests
from qarnot.exceptions import MissingTaskException, QarnotGenericException, UnauthorizedException

from tests.fakes.qarnot import (
    ENDING_STATES,
    MAX_CONSTANT_LENGTH,
    MAX_CONSTANTS,
    SECRET_PREFIX,
    FakeQarnot,
    Faults,
    substitute,
)
from tests.fakes.registry import REGISTRY_PASSWORD, REGISTRY_USER, Registry

pytestmark = pytest.mark.docker
TAG = "harsh"
NOWHERE = {"DOCKER_SRV": "http://127.0.0.1:9", "DOCKER_REPO": "team/none"}  # the pull fails: nothing runs
SLEEP_AFTER = "sh -c '{}; exec sleep infinity'"  # a DOCKER_CMD that prints, then keeps the task running


@pytest.fixture
def harsh(docker_client: docker.DockerClient) -> Iterator[FakeQarnot]:
    """The fake with its default settings; the test leaves no task that is not over, no container."""
    with FakeQarnot(docker_client) as fake:
        yield fake
        live, containers = [task.name for task in fake.live()], fake.containers()
    assert live == [] and containers == [], f"left behind: tasks {live}, containers {containers}"


@pytest.fixture(scope="session")
def runnable(docker_client: docker.DockerClient, auth_registry: Registry) -> Iterator[dict[str, str]]:
    """Constants that run a tiny image from the authenticated registry, its password as a secret."""
    repository, tag = "harsh/tiny", "1"
    reference = f"{auth_registry.ref(repository)}:{tag}"
    dockerfile = b'FROM debian:bookworm-slim\nCMD ["sleep", "infinity"]\n'
    docker_client.images.build(fileobj=io.BytesIO(dockerfile), tag=reference, rm=True)
    login = {"username": REGISTRY_USER, "password": REGISTRY_PASSWORD}
    pushed = docker_client.images.push(
        auth_registry.ref(repository), tag=tag, auth_config=login, stream=True, decode=True
    )
    for event in pushed:
        assert "error" not in event, event
    yield {
        "DOCKER_SRV": f"http://{auth_registry.host}", "DOCKER_REPO": repository, "DOCKER_TAG": tag,
        "DOCKER_REGISTRY_LOGIN": REGISTRY_USER, f"{SECRET_PREFIX}DOCKER_REGISTRY_PASSWORD": REGISTRY_PASSWORD,
    }  # fmt: skip
    docker_client.images.remove(reference)


def connect(fake: FakeQarnot, **options: Any) -> Any:
    """The real SDK; two retries with short waits (0.01 s, then 0.02 s): three tries in all."""
    return qarnot.Connection(
        client_token=fake.token, cluster_url=fake.url, retry_count=2, retry_wait=0.01, **options
    )


def new_task(connection: Any, name: str, constants: dict[Any, Any], instances: int = 1) -> Any:
    task = connection.create_task(name, "docker-network-ssh", instances)
    for key, value in constants.items():
        task.constants[key] = value
    task.tags = [TAG]
    return task


def submitted(connection: Any, name: str, constants: dict[Any, Any], instances: int = 1) -> Any:
    task = new_task(connection, name, constants, instances)
    task.submit()
    return task


def wait_until(check: Callable[[], bool], what: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def state_of(task: Any) -> str:
    task.update(True)
    return str(task.state)


def stdout_is(task: Any, expected: str) -> bool:
    return bool(task.stdout() == expected)


def gone(connection: Any, task_id: str) -> bool:
    try:
        connection.retrieve_task(task_id)
    except MissingTaskException:
        return True
    return False


def delete_listed(connection: Any) -> None:
    """Delete every task the listing shows (the only way to reach a task whose uuid was lost)."""
    for task in list(connection.all_tasks(tags=[TAG], summary=False)):
        if task.state != "PendingDelete":
            task.delete()


def test_a_gateway_error_after_create_makes_the_sdk_create_a_second_task(harsh: FakeQarnot) -> None:
    connection = connect(harsh)
    harsh.faults = Faults(gateway_error_after_create=504)
    task = submitted(connection, "twice", NOWHERE)  # no error reaches the caller
    assert harsh.count("POST", "/tasks") == 2
    first, second = harsh.tasks.values()
    assert (first.name, first.tags) == (second.name, second.tags) == ("twice", [TAG])
    assert task.uuid == second.uuid  # the caller knows only the second one
    delete_listed(connection)
    assert harsh.tasks == {}


def test_gateway_errors_on_every_try_leave_tasks_that_only_a_listing_finds(harsh: FakeQarnot) -> None:
    connection = connect(harsh)
    harsh.faults = Faults(gateway_error_after_create=504, gateway_error_times=3)
    task = new_task(connection, "lost", NOWHERE)
    with pytest.raises(QarnotGenericException):
        task.submit()
    assert task.uuid is None
    assert harsh.count("POST", "/tasks") == 3 and len(harsh.tasks) == 3  # one task per try
    listed = connection.all_tasks(tags=[TAG], summary=False)
    assert sorted(listed_task.uuid for listed_task in listed) == sorted(harsh.tasks)
    delete_listed(connection)
    assert harsh.tasks == {}


def test_a_404_on_the_read_that_follows_the_create(harsh: FakeQarnot) -> None:
    connection = connect(harsh)
    harsh.faults = Faults(missing_after_create=1)
    task = new_task(connection, "hidden", NOWHERE)
    with pytest.raises(MissingTaskException, match="No such task"):
        task.submit()
    (created,) = harsh.tasks.values()
    assert task.uuid == created.uuid  # set from the POST's reply before the GET failed
    assert harsh.count("GET", f"/tasks/{created.uuid}") == 1
    assert state_of(task) in {"Submitted", "FullyDispatched", "Failure"}  # only that first read failed
    task.delete()
    assert harsh.tasks == {}


def test_secret_constants_read_back_as_secret(harsh: FakeQarnot) -> None:
    connection = connect(harsh)
    secret = f"{SECRET_PREFIX}API_KEY"
    task = new_task(connection, "secret", {**NOWHERE, secret: "k3y", "PLAIN": "seen"})
    task.submit()
    # submit() ends with a GET, which overwrites the SDK's own copy of the constants.
    assert task.constants[secret] == "[SECRET]" and task.constants["PLAIN"] == "seen"
    assert connection.retrieve_task(task.uuid).constants[secret] == "[SECRET]"
    (listed,) = connection.all_tasks(tags=[TAG], summary=False)
    assert listed.constants == {**NOWHERE, secret: "[SECRET]", "PLAIN": "seen"}
    kept = harsh.tasks[task.uuid]
    assert kept.constants[secret] == "k3y" and harsh.visible_constants(kept)[secret] == "[SECRET]"
    task.delete()


def test_the_registry_password_pulls_as_a_secret_or_plain_and_secrets_reach_the_container(
    harsh: FakeQarnot, runnable: dict[str, str]
) -> None:
    connection = connect(harsh)
    secret_key = f"{SECRET_PREFIX}DOCKER_REGISTRY_PASSWORD"
    show = SLEEP_AFTER.format(f'echo "${secret_key}|$DOCKER_REGISTRY_PASSWORD"')
    as_secret = submitted(connection, "as-secret", {**runnable, "DOCKER_CMD": show})
    plain = {key: value for key, value in runnable.items() if key != secret_key}
    as_plain = submitted(connection, "as-plain", {**plain, "DOCKER_REGISTRY_PASSWORD": REGISTRY_PASSWORD})
    wrong = submitted(connection, "wrong", {**runnable, secret_key: "not-the-password"})
    # The secret is in the container under its full key and under its bare name.
    wait_until(lambda: as_secret.stdout() == f"0> {REGISTRY_PASSWORD}|{REGISTRY_PASSWORD}\n", "the secret")
    wait_until(lambda: state_of(as_plain) == "FullyExecuting", "the plain password's pull")
    wait_until(lambda: state_of(wrong) == "Failure", "the wrong password's pull")
    assert wrong.errors[0].code == "PullFailed"
    assert as_secret.constants[secret_key] == "[SECRET]"
    for task in (as_secret, as_plain, wrong):
        task.delete()


@pytest.mark.parametrize(
    ("constants", "reason"),
    [
        ({f"K{number}": "v" for number in range(MAX_CONSTANTS + 1)}, "Too many constants"),
        ({"K" * (MAX_CONSTANT_LENGTH + 1): "v"}, "at most 2048"),
        ({"K": "v" * (MAX_CONSTANT_LENGTH + 1)}, "at most 2048"),
        ({"TWO WORDS": "v"}, "Invalid constant key"),
        ({"DOLLAR$": "v"}, "Invalid constant key"),
        ({"CAFÉ": "v"}, "Invalid constant key"),
        ({"": "v"}, "Invalid constant key"),
        ({"K": None}, "cannot be null"),
        ({None: "v"}, "cannot be null"),
    ],
    ids=["151-constants", "long-key", "long-value", "space", "dollar", "non-ascii", "empty-key",
         "null-value", "null-key"],
)  # fmt: skip
def test_constants_beyond_the_limits_are_refused(
    harsh: FakeQarnot, constants: dict[Any, Any], reason: str
) -> None:
    task = new_task(connect(harsh), "refused", constants)
    with pytest.raises(QarnotGenericException, match=reason):
        task.submit()
    assert task.uuid is None and harsh.tasks == {} and harsh.count("POST", "/tasks") == 1


def test_constants_at_the_limits_are_accepted(harsh: FakeQarnot) -> None:
    longest_key = ("aZ09_-." * MAX_CONSTANT_LENGTH)[:MAX_CONSTANT_LENGTH]
    constants: dict[str, Any] = {**NOWHERE, longest_key: "v" * MAX_CONSTANT_LENGTH}
    constants |= {f"K{number}": number for number in range(MAX_CONSTANTS - len(constants))}
    task = submitted(connect(harsh), "limits", constants)
    assert len(harsh.tasks[task.uuid].constants) == MAX_CONSTANTS
    task.delete()


def test_substitution_replaces_known_names_and_blanks_every_other_placeholder() -> None:
    names = {"INSTANCE_ID": "1", "GREETING": "hi-${INSTANCE_ID}"}
    placeholders = "${INSTANCE_ID} [${NOPE:-x}] [${NOPE}] [${}] $INSTANCE_ID"
    assert substitute(placeholders, names) == "1 [] [] [] $INSTANCE_ID"
    assert substitute("${GREETING}", names) == "hi-${INSTANCE_ID}"  # one pass: inserted text stays as is


def test_substitution_reaches_the_container_but_not_a_reader_of_the_api(
    harsh: FakeQarnot, runnable: dict[str, str], docker_client: docker.DockerClient
) -> None:
    command, greeting = "echo ${INSTANCE_ID} ${NOPE:-x}", "hi-${INSTANCE_ID}-of-${INSTANCE_COUNT}"
    task = submitted(connect(harsh), "subst", {**runnable, "DOCKER_CMD": command, "GREETING": greeting}, 2)
    # No shell ran: the fake substituted ${...} before the container started.
    wait_until(lambda: task.stdout() == "0> 0\n1> 1\n", "the substituted command's output")
    assert task.stdout(1) == "1\n"
    for instance in harsh.tasks[task.uuid].instances:
        environment = docker_client.containers.get(instance.container_id).attrs["Config"]["Env"]
        assert f"GREETING=hi-{instance.index}-of-2" in environment
        assert f"DOCKER_CMD=echo {instance.index} " in environment
    task.update(True)
    assert task.constants["DOCKER_CMD"] == command and task.constants["GREETING"] == greeting
    task.delete()


def test_docker_user_picks_the_user_and_a_delete_removes_the_containers_at_once(
    harsh: FakeQarnot, runnable: dict[str, str]
) -> None:
    connection = connect(harsh)
    whoami = SLEEP_AFTER.format("id -un")
    as_nobody = submitted(connection, "nobody", {**runnable, "DOCKER_CMD": whoami, "DOCKER_USER": "nobody"})
    as_image = submitted(connection, "image-user", {**runnable, "DOCKER_CMD": whoami})
    wait_until(lambda: as_nobody.stdout() == "0> nobody\n", "DOCKER_USER's output")
    wait_until(lambda: as_image.stdout() == "0> root\n", "the image user's output")  # the image has no USER
    assert len(harsh.containers()) == 2
    as_nobody.delete()
    as_image.delete()
    assert harsh.containers() == [] and harsh.tasks == {}


def test_a_deleted_task_lingers_in_pending_delete_then_is_gone(harsh: FakeQarnot) -> None:
    harsh.linger_seconds = 1.0
    connection = connect(harsh)
    task = submitted(connection, "bye", NOWHERE)
    task_id = task.uuid
    before_delete = time.monotonic()
    task.delete()
    assert harsh.tasks == {} and list(harsh.deleted) == [task_id]
    lingering = connection.retrieve_task(task_id)
    assert lingering.state == "PendingDelete"
    listed = connection.all_tasks(tags=[TAG], summary=False)
    assert [(listed_task.uuid, listed_task.state) for listed_task in listed] == [(task_id, "PendingDelete")]
    with pytest.raises(UnauthorizedException, match="PendingDelete"):  # a 403
        lingering.abort()
    with pytest.raises(MissingTaskException):  # a second DELETE
        lingering.delete()
    wait_until(lambda: gone(connection, task_id), "the end of PendingDelete")
    assert time.monotonic() - before_delete >= harsh.linger_seconds
    assert list(connection.all_tasks(tags=[TAG], summary=False)) == [] and harsh.deleted == {}


def test_ending_states_stop_the_containers_and_refuse_an_abort(
    harsh: FakeQarnot, runnable: dict[str, str]
) -> None:
    connection = connect(harsh)
    constants = {**runnable, "DOCKER_CMD": SLEEP_AFTER.format("echo up")}
    tasks = {state: submitted(connection, state, constants) for state in sorted(ENDING_STATES)}
    for task in tasks.values():
        wait_until(partial(stdout_is, task, "0> up\n"), "a running task's output")
    assert len(harsh.live()) == len(harsh.containers()) == len(ENDING_STATES)
    for state, task in tasks.items():
        harsh.end_task(task.uuid, state)
    assert harsh.live() == [] and harsh.containers() == []
    for state, task in tasks.items():
        assert state_of(task) == state
        with pytest.raises(UnauthorizedException, match=state):  # a 403
            task.abort()
        assert task.stdout() == "0> up\n"  # the output of a container gone stays readable
    with pytest.raises(ValueError, match="not an ending state"):
        harsh.end_task(tasks["Success"].uuid, "FullyExecuting")
    for task in tasks.values():
        task.delete()


def test_output_lags_behind_the_container(
    harsh: FakeQarnot, runnable: dict[str, str], docker_client: docker.DockerClient
) -> None:
    harsh.output_lag_seconds = 1.0
    task = submitted(connect(harsh), "lag", {**runnable, "DOCKER_CMD": SLEEP_AFTER.format("echo one")})
    wait_until(lambda: state_of(task) == "FullyExecuting", "the task to run")
    container = docker_client.containers.get(harsh.tasks[task.uuid].instances[0].container_id)
    wait_until(lambda: b"one" in container.logs(), "the container's line")
    assert task.stdout() == task.fresh_stdout() == ""  # written, not served yet
    wait_until(lambda: task.stdout() == "0> one\n", "the line, once old enough")
    assert task.fresh_stdout() == "0> one\n"  # the early POST consumed nothing
    task.delete()


def test_output_is_a_bounded_buffer_and_only_post_consumes(
    harsh: FakeQarnot, runnable: dict[str, str]
) -> None:
    harsh.output_lag_seconds = 0.0
    harsh.output_limit_bytes = 1000
    lines = SLEEP_AFTER.format("for i in $(seq 1000 3999); do echo line-$i; done")  # 30000 bytes
    task = submitted(connect(harsh), "chatty", {**runnable, "DOCKER_CMD": lines})
    last = "".join(f"line-{number}\n" for number in range(3900, 4000))  # its last 1000 bytes
    wait_until(lambda: task.stdout(0) == last, "the end of the output")
    whole_task = "".join(f"0> {line}\n" for line in last.splitlines())
    assert task.stdout() == whole_task
    assert task.fresh_stdout() == whole_task  # the GETs consumed nothing; the buffer still bounds
    assert task.fresh_stdout() == ""  # the POST did consume
    assert task.stdout() == whole_task and task.stderr() == ""
    task.delete()


def test_a_hung_reply_blocks_a_client_without_timeout_but_not_the_fake_s_exit(
    docker_client: docker.DockerClient,
) -> None:
    errors: list[BaseException] = []

    def read(task: Any) -> None:
        try:
            task.update(True)
        except requests.RequestException as error:
            errors.append(error)

    with FakeQarnot(docker_client) as fake:
        patient, impatient = connect(fake), connect(fake, cluster_timeout=1)
        task = submitted(patient, "hung", NOWHERE)
        mirror = impatient.retrieve_task(task.uuid)
        fake.faults = Faults(hang_next=2, hang_paths=(r"GET /tasks/[0-9a-f-]{36}",))
        blocked = threading.Thread(target=read, args=(task,), daemon=True)
        blocked.start()
        blocked.join(1.0)
        assert blocked.is_alive()  # no timeout: it would wait for an hour
        assert mirror.stdout() == ""  # another path: answered
        with pytest.raises(requests.exceptions.ReadTimeout):
            mirror.update(True)  # the second hang; a timeout gets out of it
        assert state_of(mirror) in {"Submitted", "FullyDispatched", "Failure"}  # no more hangs
        mirror.delete()
        assert fake.live() == []
        leaving = time.monotonic()
    assert time.monotonic() - leaving < 2  # the exit did not wait on the hung reply
    blocked.join(5)
    assert not blocked.is_alive() and isinstance(errors[0], requests.ConnectionError)


def test_an_unavailable_credits_endpoint_costs_every_retry(harsh: FakeQarnot) -> None:
    task = submitted(connect(harsh), "billed", NOWHERE)
    harsh.faults = Faults(credits_unavailable=True)
    with pytest.raises(QarnotGenericException, match="Service Unavailable"):
        task.credits()
    assert harsh.count("GET", f"/credits/v1/tasks/{task.uuid}/credits") == 3  # a try and two retries
    harsh.faults = Faults()
    assert task.credits().amount_in_euros == 0.0
    task.delete()
