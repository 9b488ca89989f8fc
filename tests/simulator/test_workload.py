"""The MaxCompute workload in process: views kept across seconds agree with views made afresh, the running jobs stay
newest first as they start and end, and the kept views are bounded."""

from __future__ import annotations

from collections.abc import Callable

from exporter.simulator.workload import MEMO_VIEWS, Job, Workload, WorkloadParams
from tests.helpers import START, FakeClock


def _workload(clock: FakeClock, **params: int) -> Workload:
    return Workload(WorkloadParams(**{"target_running": 300, **params}), seed=11, clock=clock)


def _ids(jobs: list[Job]) -> list[str]:
    return sorted(j.instance_id for j in jobs)


def _counting(compute: Callable[[], list[Job]], calls: list[int]) -> Callable[[], list[Job]]:
    def counted() -> list[Job]:
        calls.append(1)
        return compute()

    return counted


def test_a_kept_view_of_a_past_instant_agrees_with_a_fresh_one_as_the_workload_lives_on() -> None:
    clock = FakeClock()
    # Few finished jobs retained, so retention forgets jobs that were active at the older instants below.
    workload = _workload(clock, retain_finished_count=40)
    instants = [int(START) - 200, int(START) - 5, int(START)]
    for step in range(60):
        clock.now += 1
        now = workload.advance()
        if step == 20:
            workload.starve(4, waited_seconds=600)  # back-dated: they were waiting at every instant above
        if step == 30:
            workload.set_target(200)  # cancels running jobs now and draws replacements mid-run
        if step == 40:
            workload.inject_running(3)
        for at in [*instants, now]:
            view = workload.memo(("active", at), at, lambda at=at: workload.active_at(at))
            assert _ids(view) == _ids(workload.active_at(at)), (step, at)


def test_a_view_is_computed_once_until_a_control_call_or_another_instant() -> None:
    clock = FakeClock()
    workload = _workload(clock)
    calls: list[int] = []
    at = workload.advance()
    view = _counting(lambda: workload.active_at(at), calls)
    for _ in range(3):
        clock.now += 1
        workload.advance()
        workload.memo("active", at, view)
    assert len(calls) == 1
    workload.inject_running(1)
    workload.memo("active", at, view)
    assert len(calls) == 2
    workload.memo("active", at - 1, view)
    assert len(calls) == 3


def test_kept_views_are_bounded() -> None:
    workload = _workload(FakeClock())
    calls: list[int] = []
    view = _counting(list, calls)
    for key in range(MEMO_VIEWS + 1):
        workload.memo(key, 0, view)
    workload.memo(MEMO_VIEWS, 0, view)  # the newest is still kept
    assert len(calls) == MEMO_VIEWS + 1
    workload.memo(0, 0, view)  # the oldest is not
    assert len(calls) == MEMO_VIEWS + 2


def test_running_jobs_stay_newest_first_as_they_start_and_end() -> None:
    clock = FakeClock()
    workload = _workload(clock)
    workload.running_newest_first()  # built now, then kept in step
    for step in range(120):
        clock.now += 7
        now = workload.advance()
        if step == 60:
            workload.set_target(260)
        running = [j for j in workload.active_at(now) if j.is_running(now)]
        expected = sorted(running, key=lambda j: (-j.submitted_at, j.instance_id))
        assert workload.running_newest_first() == expected, step


def test_ended_counts_every_job_that_ended_since_the_start_retained_or_not() -> None:
    clock = FakeClock()
    forgetful, keeping = _workload(clock, retain_finished_count=10), _workload(clock, retain_finished_count=10**6)
    assert forgetful.summary()["ended"] == 0
    for _ in range(60):  # the same seed and clock readings: the same jobs
        clock.now += 60
        forgetful.advance()
        keeping.advance()
    kept, forgot = keeping.summary(), forgetful.summary()
    assert forgot["finished_retained"] == 10
    assert forgot["ended"] == kept["ended"] == kept["finished_retained"] > 10
