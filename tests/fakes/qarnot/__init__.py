"""A fake of Qarnot's REST API that the real `qarnot` SDK talks to, and that really runs tasks.

Faithful to ../shared/qarnot-api.md: the paths the SDK uses (repeated slashes collapsed, optional
/v1 prefix), camelCase JSON with the fields the SDK's parser needs, `{"message": ...}` errors, 401 for
a wrong token, stdout and fresh stdout (lines prefixed "N> " for the whole task), paginated listing
with the tag filter. As harsh as the real service where it is known to be harsher; where the
reference says a behaviour is unknown, the fake takes the harsher reading and says so where it does.

One module per resource, each with its routes and what they do:
- `tasks`: submission (constants checked against the API's limits), running in the Docker engine
  (secrets, `${NAME}` substitution, clusters, batch tasks), reading (output that lags and is a
  bounded buffer), listing, aborting, deleting (PendingDelete lingers), per-task credits;
- `account`: the account behind the token (`FakeQarnot.account`): profiles, hardware offers, user
  and organisation quotas, credits, settings; what a submission asks of it;
- `storage`: once `attach_storage` gives it a real S3 emulator: buckets, working directories,
  snapshots and results;
- `faults`: the knobs that make it harsh (`FakeQarnot.faults`): refusals, lags, drops, hangs;
- `server`: `FakeQarnot` (the state, what tests look at and do) and the HTTP handler, whose routing
  table maps a method and a path to a resource's function; `replies` and `model`: what they share.

Every request's JSON body is kept in `FakeQarnot.bodies`, for tests to read what the SDK sent;
`restart_instance` moves an instance to a new port, as a preempted instance does; `end_task` puts a
task in an ending state.
"""

from tests.fakes.qarnot.account import (
    HARDWARE_FIELDS,
    RUNNING_COUNTS,
    SCHEDULING_TYPES,
    Account,
    hardware_problem,
    organization_quotas,
    worker_problem,
)
from tests.fakes.qarnot.faults import Faults
from tests.fakes.qarnot.model import CORES_PER_INSTANCE, ENDING_STATES, Entry, FakeTask, Instance
from tests.fakes.qarnot.server import FakeQarnot
from tests.fakes.qarnot.storage import bucket_names
from tests.fakes.qarnot.tasks import (
    CONSTANT_KEY,
    FAKE_LABEL,
    MAX_CONSTANT_LENGTH,
    MAX_CONSTANTS,
    PAGE_SIZE,
    REQUIRED_FIELDS,
    SECRET_PREFIX,
    SECRET_SHOWN,
    constants_problem,
    is_cluster,
    substitute,
)

__all__ = [
    "CONSTANT_KEY",
    "CORES_PER_INSTANCE",
    "ENDING_STATES",
    "FAKE_LABEL",
    "HARDWARE_FIELDS",
    "MAX_CONSTANTS",
    "MAX_CONSTANT_LENGTH",
    "PAGE_SIZE",
    "REQUIRED_FIELDS",
    "RUNNING_COUNTS",
    "SCHEDULING_TYPES",
    "SECRET_PREFIX",
    "SECRET_SHOWN",
    "Account",
    "Entry",
    "FakeQarnot",
    "FakeTask",
    "Faults",
    "Instance",
    "bucket_names",
    "constants_problem",
    "hardware_problem",
    "is_cluster",
    "organization_quotas",
    "substitute",
    "worker_problem",
]
