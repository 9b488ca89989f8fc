"""Rendering: what /metrics shows for given poll results, checked by parsing the exposition back."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text

from exporter.contract import Fetched, SourceInfo
from exporter.exposition.context import RenderContext
from exporter.sources.maxcompute.records import JobSnapshot, RunningJob, RunningJobs, SnapshotJob
from exporter.store import Store
from tests.helpers import body, rendering, source_apis, text_of, value

MC_APIS = source_apis("maxcompute")
INFO = SourceInfo("mc", "maxcompute", "cn-hangzhou")


def running(i: int, quota: str = "q1", project: str = "p1", owner: str = "ALIYUN$alice@example.com") -> RunningJob:
    return RunningJob(f"job{i}", project, quota, owner, cu_snapshot=i / 10, memory_snapshot=0.05, progress=0.5,
                      submitted_at=1000.0 + i, running_at=None if i == 0 else 2000.0)


def snap(i: int, quota: str = "q1", waiting: float = 30.0) -> SnapshotJob:
    return SnapshotJob(f"job{i}", "p1", quota, "SQL", "RAM$bot", "9", cpu_usage_cores=float(i),
                       cpu_request_cores=2.0 * i, memory_usage_bytes=1024.0**2, memory_request_bytes=2 * 1024.0**2,
                       cpu_usage_to_request=0.5, memory_usage_to_request=None, waiting_seconds=waiting,
                       running_seconds=10.0)


def render(results: dict[str, object], now: float = 100.0, **ctx: object) -> dict[str, dict]:
    """Returns {metric name: {frozenset(labels): value}} of the text exposition."""
    store, renderer = rendering({api: MC_APIS[api] for api in results}, SourceInfo("mc", "maxcompute", "cn-hangzhou",
                                **ctx))  # type: ignore[arg-type]
    for api, result in results.items():
        store.record_success(("mc", api), Fetched(result, 1, 0), end=now, duration=0.1)
    text = text_of(renderer.render(store.view(now)))
    out: dict[str, dict] = {}
    for family in parse_text(text):
        for s in family.samples:
            out.setdefault(s.name, {})[frozenset(s.labels.items())] = s.value
    return out


def test_running_jobs_aggregate_per_project_and_quota() -> None:
    jobs = RunningJobs(tuple([running(i) for i in range(3)] + [running(9, quota="q2", project="p2")]))
    m = render({"GetRunningJobs": jobs})
    base = {("source", "mc"), ("region", "cn-hangzhou")}
    assert m["maxcompute_running_jobs"] == {
        frozenset(base | {("project", "p1"), ("quota", "q1")}): 3,
        frozenset(base | {("project", "p2"), ("quota", "q2")}): 1,
    }
    assert m["maxcompute_quota_cu_snapshot_ratio"][frozenset(base | {("quota", "q1")})] == pytest.approx(0.3)
    started = m["maxcompute_running_job_started_timestamp_seconds"]
    assert len(started) == 3, "a job with no runningAtTime has no started sample (no NaN)"


def test_per_job_cap_keeps_the_largest_and_counts_the_rest() -> None:
    jobs = RunningJobs(tuple(running(i) for i in range(10)))
    m = render({"GetRunningJobs": jobs}, max_job_series=3)
    kept = {dict(k)["instance_id"] for k in m["maxcompute_running_job_cu_snapshot_ratio"]}
    assert kept == {"job9", "job8", "job7"}
    assert m["cloud_job_exporter_job_series_dropped"] == {frozenset({("source", "mc")}): 7}
    assert sum(m["maxcompute_running_jobs"].values()) == 10, "aggregates always count every job"


def test_per_job_values_follow_each_poll_through_the_reused_texts() -> None:
    """A source's renders reuse label prefixes from the last render and share the text of equal floats: every
    sample must still carry its own poll's value, including values that moved to another job, changed type, or
    went missing."""
    store, renderer = rendering({"GetRunningJobs": MC_APIS["GetRunningJobs"]}, INFO)
    polls = [
        [0.25, 0.5, 1 / 3, 0.5, None],
        [0.5, 0.25, 0.75, None, 1],  # values swapped between jobs, a new one, a job without, an int
        [0.1 + 0.2, 0.3, 0.25, 2 / 3, 0.0],
    ]
    for n, progress in enumerate(polls):
        jobs = RunningJobs(tuple(running(i)._replace(progress=p) for i, p in enumerate(progress)))
        store.record_success(("mc", "GetRunningJobs"), Fetched(jobs, 1, 0), end=100.0 + n, duration=0.1)
        text = text_of(renderer.render(store.view(100.0 + n)))
        (family,) = [f for f in parse_text(text) if f.name == "maxcompute_running_job_progress_ratio"]
        shown = {s.labels["instance_id"]: s.value for s in family.samples}
        assert shown == {f"job{i}": p for i, p in enumerate(progress) if p is not None}, f"poll {n}"


def test_a_zero_is_written_as_zero_whatever_its_sign() -> None:
    """Float texts are shared by value, and 0.0 == -0.0: the text must not depend on which came first."""
    from exporter.exposition.format import number_texts

    assert number_texts([-0.0, 0.0, 0.5, -0.0]) == [b"0.0", b"0.0", b"0.5", b"0.0"]
    assert number_texts([0.25, 1, 0.25]) == [b"0.25", b"1", b"0.25"]


def test_per_job_series_can_be_switched_off() -> None:
    m = render({"GetRunningJobs": RunningJobs((running(1),))}, per_job_series=False)
    assert "maxcompute_running_job_cu_snapshot_ratio" not in m
    assert "cloud_job_exporter_job_series_dropped" not in m


@pytest.mark.parametrize(("mode", "expected"), [("keep", "ALIYUN$alice@example.com"), ("drop", None)])
def test_owner_label_kept_or_dropped(mode: str, expected: str | None) -> None:
    m = render({"GetRunningJobs": RunningJobs((running(1),))}, owner_label=mode)
    (labels,) = m["maxcompute_running_job_progress_ratio"]
    assert dict(labels).get("owner") == expected


def test_owner_label_hashed_is_stable_and_hides_the_name() -> None:
    first = render({"GetRunningJobs": RunningJobs((running(1),))}, owner_label="hash")
    second = render({"GetRunningJobs": RunningJobs((running(1),))}, owner_label="hash")
    (labels,) = first["maxcompute_running_job_progress_ratio"]
    owner = dict(labels)["owner"]
    assert len(owner) == 16 and "alice" not in owner
    assert first["maxcompute_running_job_progress_ratio"] == second["maxcompute_running_job_progress_ratio"]


def test_snapshot_sums_and_gauge_histograms() -> None:
    jobs = JobSnapshot((snap(1, waiting=3), snap(2, waiting=100), snap(3, quota="q2", waiting=5000)), 1234.0)
    m = render({"ListJobSnapshotInfos": jobs})
    q1 = {("source", "mc"), ("region", "cn-hangzhou"), ("quota", "q1")}
    buckets = m["maxcompute_snapshot_job_waiting_seconds_bucket"]
    assert buckets[frozenset(q1 | {("le", "5.0")})] == 1
    assert buckets[frozenset(q1 | {("le", "120.0")})] == 2
    assert m["maxcompute_snapshot_job_waiting_seconds_count"][frozenset(q1)] == 2
    group = frozenset({("source", "mc"), ("region", "cn-hangzhou"), ("project", "p1"), ("quota", "q1"),
                       ("job_type", "SQL")})
    assert m["maxcompute_snapshot_cpu_usage_cores"][group] == 3.0
    assert m["maxcompute_snapshot_memory_request_bytes"][group] == 4 * 1024**2
    assert m["maxcompute_snapshot_timestamp_seconds"] == {frozenset({("source", "mc"), ("region", "cn-hangzhou")}):
                                                          1234.0}
    assert "maxcompute_job_memory_usage_to_request_ratio" not in m, "a field the API left out yields no sample"


def test_stale_data_leaves_but_health_stays() -> None:
    store, renderer = rendering({"GetRunningJobs": MC_APIS["GetRunningJobs"]}, INFO)
    store.record_success(("mc", "GetRunningJobs"), Fetched(RunningJobs((running(1),)), 1, 1), end=100, duration=0.1)
    store.record_failure(("mc", "GetRunningJobs"), "server", "HTTP 500", end=130, duration=0.1)
    fresh = text_of(renderer.render(store.view(150)))
    assert "maxcompute_running_jobs{" in fresh
    assert value(fresh, "cloud_job_exporter_source_up", source="mc", kind="maxcompute", api="GetRunningJobs") == 0
    stale = text_of(renderer.render(store.view(191)))
    assert "maxcompute_running_jobs{" not in stale
    assert value(stale, "cloud_job_exporter_poll_errors_total", source="mc", api="GetRunningJobs", reason="server") == 1


def test_label_values_are_escaped() -> None:
    m = render({"GetRunningJobs": RunningJobs((running(1, project='we"ird\\name\nx'),))})
    (labels,) = m["maxcompute_running_jobs"]
    assert dict(labels)["project"] == 'we"ird\\name\nx'


def test_openmetrics_form_parses_with_gauge_histograms_and_eof() -> None:
    store, renderer = rendering({"ListJobSnapshotInfos": MC_APIS["ListJobSnapshotInfos"]}, INFO, 180)
    store.record_success(("mc", "ListJobSnapshotInfos"), Fetched(JobSnapshot((snap(1),), 1.0), 1, 1), 10, 0.1)
    om = body(renderer.render(store.view(10)), openmetrics=True)
    families = {f.name: f for f in parse_openmetrics(om.decode())}
    assert families["maxcompute_snapshot_job_waiting_seconds"].type == "gaugehistogram"
    assert families["cloud_job_exporter_poll_duration_seconds"].type == "histogram"
    assert om.endswith(b"# EOF\n")


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed (CI installs prometheus)")
def test_promtool_accepts_the_exposition() -> None:
    store, renderer = rendering(MC_APIS, INFO)
    for api, result in (("GetRunningJobs", RunningJobs(tuple(running(i) for i in range(5)))),
                        ("ListJobSnapshotInfos", JobSnapshot(tuple(snap(i) for i in range(5)), 5.0))):
        store.record_success(("mc", api), Fetched(result, 1, 5), 10, 0.1)
    store.record_failure(("mc", "GetRunningJobs"), "timeout", "slow", 20, 10.0)
    text = body(renderer.render(store.view(20)))
    result = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, check=False)
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()


def test_stale_counters_stay_while_stale_gauges_go() -> None:
    from exporter.sources.maxcompute.records import FinishedJobs
    from exporter.tally import Tally

    tally = Tally({"wait_seconds": (10.0,), "run_seconds": (10.0,)})
    tally.add("finished", ("p1", "q1", "SQL", "terminated"))
    tally.observe("run_seconds", ("p1", "q1", "SQL"), 5)
    store, renderer = rendering({name: MC_APIS[name] for name in ("GetJobInfo", "GetRunningJobs")}, INFO)
    store.record_success(("mc", "GetJobInfo"), Fetched(FinishedJobs(tally.freeze()), 1, 1), end=100, duration=0.1)
    store.record_success(("mc", "GetRunningJobs"), Fetched(RunningJobs((running(1),)), 1, 1), end=100, duration=0.1)
    stale = text_of(renderer.render(store.view(500)))
    assert 'maxcompute_jobs_finished_total{source="mc"' in stale
    assert "maxcompute_job_run_duration_seconds_count{" in stale
    assert "maxcompute_running_jobs{" not in stale


async def test_housekeeping_drops_stale_series_without_a_new_poll() -> None:
    from dataclasses import replace

    from exporter.poller import Poller, Target

    now = [1000.0]
    store = Store()
    store.add_api(INFO, "GetRunningJobs", 90)

    async def fetch() -> Fetched[RunningJobs]:
        return Fetched(RunningJobs((running(1),)), 1, 1)

    target = Target("mc", replace(MC_APIS["GetRunningJobs"], fetch=fetch))
    poller = Poller(store, [target], clock=lambda: now[0])
    await poller.poll_once(target)
    assert b"maxcompute_running_jobs{" in body(poller.published.exposition)
    now[0] += 60
    await poller.housekeeping()
    assert b"maxcompute_running_jobs{" in body(poller.published.exposition)
    now[0] += 31  # 91 s after the last good poll: past stale_after
    await poller.housekeeping()
    assert b"maxcompute_running_jobs{" not in body(poller.published.exposition)


def test_owner_hash_is_the_first_16_hex_digits_of_sha256() -> None:
    import hashlib

    m = render({"GetRunningJobs": RunningJobs((running(1),))}, owner_label="hash")
    (labels,) = m["maxcompute_running_job_progress_ratio"]
    assert dict(labels)["owner"] == hashlib.sha256(b"ALIYUN$alice@example.com").hexdigest()[:16]


async def test_a_poll_that_never_ends_is_abandoned_as_a_timeout(monkeypatch) -> None:
    import asyncio
    from dataclasses import replace

    from exporter import poller as poller_module
    from exporter.poller import Poller, Target

    monkeypatch.setattr(poller_module, "poll_time_limit", lambda interval, stale_after: 0.2)
    store = Store()
    store.add_api(INFO, "GetRunningJobs", 90)

    async def hangs() -> Fetched[RunningJobs]:
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    target = Target("mc", replace(MC_APIS["GetRunningJobs"], fetch=hangs))
    poller = Poller(store, [target])
    await asyncio.wait_for(poller.poll_once(target), timeout=5)
    text = text_of(poller.published.exposition)
    assert value(text, "cloud_job_exporter_poll_errors_total", source="mc", api="GetRunningJobs", reason="timeout") == 1
    assert value(text, "cloud_job_exporter_source_up", source="mc", kind="maxcompute", api="GetRunningJobs") == 0


# ---- histograms: one way from counts to samples, and `le` inclusive --------------------------------------------------


def test_counts_become_buckets_one_way_with_the_same_bytes() -> None:
    from exporter.exposition.format import Buckets, frozen_histogram, histogram
    from exporter.exposition.selfmetrics import SelfMetrics
    from exporter.store import POLL_DURATION_BUCKETS
    from exporter.tally import Tally

    text = Buckets.from_counts((1, 2.5), [1, 0, 2], 7.5).samples("h", 'a="x"', False)
    assert text == ('h_bucket{a="x",le="1.0"} 1\nh_bucket{a="x",le="2.5"} 1\nh_bucket{a="x",le="+Inf"} 3\n'
                    'h_sum{a="x"} 7.5\nh_count{a="x"} 3\n')
    with pytest.raises(ValueError, match="2 counts for 2 bounds"):
        Buckets.from_counts((1, 2.5), [1, 0], 1.0)

    values = [0.5, 1, 2, 2.5, 3, 40]
    observed = Buckets.of((1, 2.5), values)
    tally = Tally({"h": (1, 2.5)})
    for v in values:
        tally.observe("h", ("x",), v)
    frozen = tally.freeze().histograms["h"][("x",)]
    assert frozen_histogram("h", "help", [('a="x"', frozen)]) == histogram("h", "help", [('a="x"', observed)])

    store = Store()
    store.add_api(INFO, "GetRunningJobs", 90)
    durations = (0.05, 0.1, 1.0, 7.0, 1000.0)
    direct = Buckets.of(POLL_DURATION_BUCKETS, durations)
    for d in durations:
        store.record_success(("mc", "GetRunningJobs"), Fetched(RunningJobs(()), 1, 0), end=100.0, duration=d)
    text, _ = SelfMetrics().expose(store.view(100.0), {})
    lab = 'source="mc",api="GetRunningJobs"'
    expected = parse_text("# TYPE cloud_job_exporter_poll_duration_seconds histogram\n" +
                          direct.samples("cloud_job_exporter_poll_duration_seconds", lab, False))
    (duration,) = [f for f in parse_text(text.decode()) if f.name == "cloud_job_exporter_poll_duration_seconds"]
    def shown(samples: list) -> set:
        return {(s.name, frozenset(s.labels.items()), s.value) for s in samples}

    assert shown(duration.samples) == shown(next(iter(expected)).samples), "the self-metrics' histogram, the same"


@pytest.mark.parametrize("value", [0.1, 1, 1.0, 2.5, 10])
def test_a_value_equal_to_a_bound_is_counted_in_that_bounds_bucket(value: float) -> None:
    """Prometheus' `le` is inclusive: an observation equal to a bound belongs to that bound's bucket (and not to the
    one below), whether it was counted by Buckets or by a Tally, int or float."""
    from exporter.exposition.format import Buckets, frozen_histogram, histogram, pieces
    from exporter.tally import Tally

    bounds = (0.1, 1, 2.5, 10)
    buckets = Buckets.of(bounds, [value])
    tally = Tally({"h": bounds})
    tally.observe("h", ("x",), value)
    families = [histogram("by_buckets", "h", [('a="x"', buckets)]),
                frozen_histogram("by_tally", "h", [('a="x"', tally.freeze().histograms["h"][("x",)])])]
    for openmetrics, parse in ((False, parse_text), (True, parse_openmetrics)):
        exposition = b"".join(pieces(families, openmetrics)).decode()
        for family in parse(exposition):
            cumulative = {float(s.labels["le"]): s.value for s in family.samples if s.name.endswith("_bucket")}
            below = [b for b in bounds if b < value]
            assert cumulative[float(value)] == 1, (family.name, exposition)
            assert all(cumulative[float(b)] == 0 for b in below), (family.name, exposition)


def test_the_poll_time_limit_never_outlasts_staleness() -> None:
    from exporter.pace import poll_time_limit

    assert poll_time_limit(30, 90) == 90
    assert poll_time_limit(10, 30) == 30, "a stuck poll is abandoned before its data goes stale"
    assert poll_time_limit(60, 600) == 180


def test_stitched_gzip_is_the_exposition_after_segments_are_reused() -> None:
    """A render reuses the deflate segments (and CRCs) of families that did not change, and holds a large family's
    text only compressed: both formats' gzip bodies must still decompress, CRC and length checked, to exactly what a
    renderer with nothing to reuse writes, and the exporter's own inflating must give the same text."""
    from exporter.speed.gzip import Segment, inflate

    def jobs_part(text: bytes) -> bytes:  # the job families: the exporter's own differ between two renders
        return text[: text.index(b"# HELP cloud_job_exporter_")]

    store, renderer = rendering(MC_APIS, INFO)
    store.record_success(("mc", "ListJobSnapshotInfos"), Fetched(JobSnapshot(tuple(snap(i) for i in range(400)), 1.0),
                                                                 1, 0), end=100.0, duration=0.1)
    deflated: list[set[int]] = []
    kept = []  # every exposition stays alive, so that no id is reused
    for n in range(3):
        jobs = RunningJobs(tuple(running(i)._replace(progress=n / 10) for i in range(400)))
        store.record_success(("mc", "GetRunningJobs"), Fetched(jobs, 1, 0), end=100.0 + n, duration=0.1)
        view = store.view(100.0 + n)
        exposition = renderer.render(view)
        _, fresh = rendering(MC_APIS, INFO)
        unreused = fresh.render(view)  # a new renderer, rendered once: nothing compressed before is reused
        for om in (False, True):
            expected = jobs_part(body(unreused, openmetrics=om))
            assert jobs_part(body(exposition, openmetrics=om)) == expected, (n, om)
        gz = exposition.gz_chunks
        assert b"".join(inflate(gz, piece=1000)) == body(exposition), "inflated in pieces, as identity scrapes are"
        kept.append(exposition)
        deflated.append({id(c) for c in gz if len(c) > 1000})
    assert deflated[0] & deflated[1] & deflated[2], "the unchanged snapshot families' segments were reused"
    held, _ = renderer.families(store.view(102.0))
    large = [f for f in held if f.name == "maxcompute_job_cpu_usage_cores"]
    assert large and all(isinstance(f.text, Segment) for f in large), "a large family is held compressed only"


def test_a_per_job_family_is_compressed_as_it_is_rendered() -> None:
    """A render does not hold every per-job family's text until its end (28 MB for a snapshot of 20,000 jobs): each
    is on its way to its segment when the kind's render returns, and the exposition made of them says the same
    samples as a render that compressed them afterwards."""
    from concurrent.futures import Future

    from exporter.speed.gzip import Segment

    result = JobSnapshot(tuple(snap(i) for i in range(400)), 1.0)
    families, _ = MC_APIS["ListJobSnapshotInfos"].render(RenderContext(INFO, 10**6), result)
    per_job = [f for f in families if f.name == "maxcompute_job_cpu_usage_cores"]
    assert per_job and all(isinstance(f.text, Future | Segment) for f in per_job), "held as text after the render"
    store, renderer = rendering(MC_APIS, INFO)
    store.record_success(("mc", "ListJobSnapshotInfos"), Fetched(result, 1, 0), end=100.0, duration=0.1)
    text = text_of(renderer.render(store.view(100.0)))
    assert text.count("maxcompute_job_cpu_usage_cores{") == 400


async def test_a_publish_cancelled_mid_render_keeps_the_next_render_waiting() -> None:
    """A render's thread cannot be stopped: a publish cancelled while it runs must not let a second render start
    beside it on the same caches."""
    import asyncio
    import threading
    from dataclasses import replace

    from exporter.poller import Poller, Target

    entered, release, inside = threading.Event(), threading.Event(), [0, 0]  # now, most at once
    real = MC_APIS["GetRunningJobs"].render

    def slow(ctx: RenderContext, result: RunningJobs):
        inside[0] += 1
        inside[1] = max(inside)
        entered.set()
        release.wait(10)
        inside[0] -= 1
        return real(ctx, result)

    store, key = Store(), ("mc", "GetRunningJobs")
    store.add_api(INFO, "GetRunningJobs", 90)
    poller = Poller(store, [Target("mc", replace(MC_APIS["GetRunningJobs"], render=slow))], clock=lambda: 100.0)
    store.record_success(key, Fetched(RunningJobs((running(1),)), 1, 1), end=100.0, duration=0.1)
    first = asyncio.create_task(poller.publish())
    assert await asyncio.to_thread(entered.wait, 10)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    store.record_success(key, Fetched(RunningJobs((running(2),)), 1, 1), end=100.0, duration=0.1)
    second = asyncio.create_task(poller.publish())
    await asyncio.sleep(0.2)  # time for a second render to start, were it not held back
    release.set()
    await second
    assert inside[1] == 1
    assert 'instance_id="job2"' in text_of(poller.published.exposition)
