"""The official MaxCompute SDK against the simulator over real HTTP: the simulator accepts the SDK's signatures and
the SDK parses the answers into its models. The SDK signs with the real time, so the simulator runs on it too."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from alibabacloud_maxcompute20220104 import models
from alibabacloud_maxcompute20220104.client import Client
from alibabacloud_tea_openapi.exceptions import ClientException, ThrottlingException
from alibabacloud_tea_openapi.models import Config

from exporter.simulator import Simulator, WorkloadParams
from exporter.simulator.run import Endpoint, run_in_thread

KEY_ID, SECRET = "LTAI5tSdkAgainstSim01", "sdk-against-simulator-secret"
STS_KEY_ID, STS_SECRET, STS_TOKEN = "STS.NUtemporaryKey01", "temporary-secret", "CAIS-temporary-token"


@pytest.fixture(scope="module")
def endpoint() -> Iterator[Endpoint]:
    sim = Simulator(
        {KEY_ID: SECRET, STS_KEY_ID: STS_SECRET},
        seed=5,
        workload=WorkloadParams(target_running=60),
        security_tokens={STS_KEY_ID: STS_TOKEN},
    )
    with run_in_thread(sim) as served:
        yield served


@pytest.fixture(autouse=True)
def _no_faults(endpoint: Endpoint) -> None:
    endpoint.sim.faults.reset()


def sdk(endpoint: Endpoint, key_id: str = KEY_ID, secret: str = SECRET, token: str | None = None) -> Client:
    """Returns the official client pointed at the simulator over plain HTTP."""
    config = Config(
        access_key_id=key_id,
        access_key_secret=secret,
        security_token=token,
        endpoint=f"127.0.0.1:{endpoint.port}",
        protocol="http",
    )
    return Client(config)


def test_get_running_jobs_with_list_filters(endpoint: Endpoint) -> None:
    now = int(time.time())
    request = models.GetRunningJobsRequest(
        from_=now - 86400,
        to=now,
        page_number=1,
        page_size=20,
        job_owner_list=["RAM$etl-bot", "ALIYUN$alice@example.com"],  # the SDK joins them with commas
        quota_nickname_list=["os_bigdata", "etl_quota", "os_PayAsYouGoQuota"],
    )
    response = sdk(endpoint).get_running_jobs(request)
    assert response.status_code == 200 and response.body.http_code == 200
    data = response.body.data
    assert data.total_count > 0 and data.page_number == 1 and data.page_size == 20
    job = data.running_job_info_list[0]
    assert job.instance_id and job.project and job.submitted_at_time <= now and 0 <= job.cu_snapshot <= 1
    assert {j.job_owner.strip() for j in data.running_job_info_list} <= {"RAM$etl-bot", "ALIYUN$alice@example.com"}


def test_list_job_snapshot_infos_with_body_filters_and_ordering(endpoint: Endpoint) -> None:
    request = models.ListJobSnapshotInfosRequest(
        to=int(time.time()),
        page_size=50,
        order_column="cpuUsage",
        asc_order=False,  # sent as Python's "False"
        status_list=["running"],
        project_list=["dw_prod", "ads_report"],
        type_list=["SQL", "SQLRT", "SPARK", "MR"],
    )
    data = sdk(endpoint).list_job_snapshot_infos(request).body.data
    jobs = data.job_info_list
    assert data.total_count == len(jobs) > 0
    assert {j.project for j in jobs} <= {"dw_prod", "ads_report"} and {j.status for j in jobs} == {"running"}
    assert [j.cpu_usage for j in jobs] == sorted((j.cpu_usage for j in jobs), reverse=True)
    assert all(j.cpu_request >= j.cpu_usage and j.snapshot_time and j.tenant_id for j in jobs)


def test_get_job_info_of_a_running_job(endpoint: Endpoint) -> None:
    now = int(time.time())
    running = sdk(endpoint).get_running_jobs(models.GetRunningJobsRequest(from_=0, to=now, page_size=1))
    instance_id = running.body.data.running_job_info_list[0].instance_id
    info = sdk(endpoint).get_job_info(instance_id).body.data
    assert info.instance_id == instance_id and info.status == "running"
    assert info.running_at_time >= info.submitted_at_time and info.cu_usage is None
    assert info.job_sub_status_list[0].code == 1010


def test_sts_credentials_are_accepted(endpoint: Endpoint) -> None:
    client = sdk(endpoint, STS_KEY_ID, STS_SECRET, STS_TOKEN)
    response = client.get_running_jobs(models.GetRunningJobsRequest(from_=0, to=int(time.time())))
    assert response.body.data.page_size == 10


def test_a_wrong_secret_fails_with_signature_does_not_match(endpoint: Endpoint) -> None:
    with pytest.raises(ClientException) as raised:
        sdk(endpoint, secret="not-the-secret").get_running_jobs(models.GetRunningJobsRequest(from_=0, to=1))
    assert raised.value.code == "SignatureDoesNotMatch" and raised.value.status_code == 400


def test_throttling_reaches_the_sdk_with_its_retry_after(endpoint: Endpoint) -> None:
    endpoint.sim.faults.set("GetJobInfo", throttle_rate=1.0, retry_after_ms=1500)
    with pytest.raises(ThrottlingException) as raised:
        sdk(endpoint).get_job_info("20230410050036549gfmsdwf60gg")
    assert raised.value.code == "Throttling.User" and raised.value.retry_after == 1500
