"""A local Gladly REST API simulator for tests, demos and benchmarks (stdlib only).

    from gladly_sync.simulator import Simulator
    with Simulator(seed=1, customers=20, conversations=40, rate_limit_per_second=10.0) as sim:
        sim.base_url                  # http://127.0.0.1:PORT  (clients append /api/v1)
        sim.world.new_message(conversation_id, text="Any news?")
        sim.faults.add(method="POST", path=r"/notes$", kind="drop_after_apply")
        sim.requests                  # every request received, with its status

Credentials: `api_email` / `api_token` (default api-user@demo.example / demo-token) is the API
user; `noperm@demo.example` / `noperm-token` gets 403 everywhere; anything else gets 401.
`python -m gladly_sync.simulator --help` runs it as a process.
"""

from gladly_sync.simulator.errors import ApiError
from gladly_sync.simulator.faults import Fault, Faults
from gladly_sync.simulator.organization import (
    DEFAULT_API_EMAIL,
    DEFAULT_API_TOKEN,
    NOPERM_EMAIL,
    NOPERM_TOKEN,
)
from gladly_sync.simulator.server import RequestRecord, Simulator
from gladly_sync.simulator.world import Quirks, World

__all__ = [
    "DEFAULT_API_EMAIL",
    "DEFAULT_API_TOKEN",
    "NOPERM_EMAIL",
    "NOPERM_TOKEN",
    "ApiError",
    "Fault",
    "Faults",
    "Quirks",
    "RequestRecord",
    "Simulator",
    "World",
]
