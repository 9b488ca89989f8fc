"""A signature-checking simulator of the cloud job APIs the exporter polls, served over real HTTP.

`Simulator` is the ASGI application; `exporter.simulator.run` serves it (`serve`, `run_in_thread`, `main`).
Adding an API is one module with a `Service` (see `maxcompute.py`) and one `add_service` line below.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from exporter.simulator.app import AcsGateway, App
from exporter.simulator.dataarts_factory import DataArtsFactoryService, HuaweiGateway
from exporter.simulator.emr_serverless_spark import EmrServerlessSparkService
from exporter.simulator.faults import FAULT_NAMES, Faults, FaultSettings
from exporter.simulator.maxcompute import MaxComputeService
from exporter.simulator.sts import StsService
from exporter.simulator.workload import Quota, Workload, WorkloadParams

__all__ = ["FAULT_NAMES", "FaultSettings", "Faults", "Quota", "Simulator", "WorkloadParams"]


class Simulator(App):
    """The simulated cloud: MaxCompute's job APIs over a living workload, behind Alibaba Cloud's gateway.

    `credentials` maps access key ids to secrets; `security_tokens` maps STS key ids to the token requests must carry.
    `clock` returns UNIX seconds; the workload, the timestamp check and the nonce window all read it.
    """

    def __init__(
        self,
        credentials: Mapping[str, str],
        *,
        seed: int = 0,
        clock: Callable[[], float] = time.time,
        workload: WorkloadParams | None = None,
        faults: Faults | None = None,
        security_tokens: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(seed=seed, clock=clock, faults=faults)
        self.credentials = dict(credentials)
        self.security_tokens = dict(security_tokens or {})
        self.workload = Workload(workload, seed=seed, clock=clock)
        self.maxcompute = MaxComputeService(self.workload, self.faults)
        self.add_service(self.maxcompute, self.alibaba_gateway("MaxCompute"))
        self.emr = EmrServerlessSparkService(self.faults, seed=seed, clock=clock)
        self.add_service(self.emr, self.alibaba_gateway("emr-serverless-spark"))
        self.dataarts = DataArtsFactoryService(self.faults, seed=seed, clock=clock)
        self.add_service(self.dataarts, HuaweiGateway(self.credentials, self.security_tokens))
        self.sts = StsService.serve_on(self, seed)  # AssumeRoleWithOIDC: RRSA's temporary keys for the gateways

    def alibaba_gateway(self, product: str) -> AcsGateway:
        """Returns an ACS3 gateway for `product` sharing this simulator's keys and nonce memory."""
        return AcsGateway(product, self.credentials, self.security_tokens, self.nonces)
