"""The places that run tasks, behind one protocol (`base.Backend`): Qarnot through its SDK, and the
local Docker engine. `registry` names them."""
