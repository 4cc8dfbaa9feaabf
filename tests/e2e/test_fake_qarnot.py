"""The fake speaks the wire format the real SDK expects (../shared/qarnot-api.md)."""

from __future__ import annotations

import time

import docker
import pytest
import qarnot
from qarnot.exceptions import MissingTaskException, UnauthorizedException

from tests.fakes.qarnot import FakeQarnot

pytestmark = pytest.mark.docker


def test_the_sdk_against_the_fake(docker_client: docker.DockerClient) -> None:
    with FakeQarnot(docker_client, linger_seconds=0.5) as fake:
        with pytest.raises(UnauthorizedException):
            qarnot.Connection(client_token="wrong", cluster_url=fake.url)
        connection = qarnot.Connection(client_token=fake.token, cluster_url=fake.url + "/")
        tasks = []
        for number in range(3):
            task = connection.create_task(f"t{number}", "docker-network-ssh", 1)
            task.constants["DOCKER_SRV"] = "http://127.0.0.1:9"  # nothing there: the pull fails
            task.constants["DOCKER_REPO"] = "team/none"
            task.constants["QIMG_NUMBER"] = number  # a number: the fake turns it into a string
            task.tags = ["qimg"]
            task.submit()
            tasks.append(task)
        assert fake.tasks[tasks[0].uuid].constants["QIMG_NUMBER"] == "0"
        deadline = time.monotonic() + 60
        while tasks[0].state != "Failure":
            assert time.monotonic() < deadline
            time.sleep(0.2)
            tasks[0].update(True)
        assert tasks[0].errors[0].code == "PullFailed"
        listed = list(connection.all_tasks(tags=["qimg"], summary=False))
        assert sorted(task.name for task in listed) == ["t0", "t1", "t2"]
        assert fake.count("POST", "/tasks/paginate") == 2  # two pages of two
        assert tasks[0].fresh_stdout() == tasks[0].fresh_stdout() == ""
        uuid = tasks[0].uuid
        tasks[0].delete()
        # Deleting is not instant: the task lingers in PendingDelete, then it is gone.
        assert connection.retrieve_task(uuid).state == "PendingDelete"
        while True:
            try:
                connection.retrieve_task(uuid)
            except MissingTaskException:
                break
            assert time.monotonic() < deadline
            time.sleep(0.1)
        for task in tasks[1:]:
            task.delete()
        assert fake.tasks == {}
        assert ("GET", "/settings") in fake.requests  # the trailing slash gave //settings, collapsed
