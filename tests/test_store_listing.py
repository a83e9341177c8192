"""Listing jobs by status, a page after a cursor (docs/management.md section 2), on real Redis and on
fakeredis: every job of a status listed once across pages, in the set's order, also when pages end
inside a tie of scores and when jobs are added while paging; pending of every type in dispatch
order; a type filter on a queue-wide set in bounded pages; rows as the job's hash has them."""

from __future__ import annotations

import orjson
import pytest
from support import T

from empfast.errors import BadArgument
from empfast.store import Completion, Cursor, JobPage, NewJob, Store


async def all_pages(store: Store, status: str, **options: object) -> tuple[list[str], int]:
    """Every job id of the listing, page after page; and the number of pages."""
    ids: list[str] = []
    cursor: Cursor | None = None
    pages = 0
    while True:
        page: JobPage = await store.list_jobs(status, cursor=cursor, **options)  # type: ignore[arg-type]
        pages += 1
        ids += [row["job_id"] for row in page.rows]
        if page.cursor is None:
            return ids, pages
        cursor = page.cursor
        assert pages < 1000, "the listing does not end"


async def complete_all(store: Store, worker_id: str, count: int, now: int) -> list[str]:
    """Claim and complete `count` jobs in one completeJobs call, so they share a finish time."""
    jobs = await store.claim(worker_id, count, now=now)
    await store.complete_many(worker_id, [Completion(j.job_id, j.attempt, b'{"ok":1}') for j in jobs],
                              now=now)
    return [j.job_id for j in jobs]


async def test_pages_inside_a_tie_of_finish_times_list_every_job_once_in_order(store: Store) -> None:
    await store.add_jobs([NewJob("a", job_id=f"j{n:02d}") for n in range(25)], now=T)
    await store.register_worker("w1", ["a"], 25, now=T)
    done = await complete_all(store, "w1", 25, now=T + 5)  # one millisecond for all 25
    ids, pages = await all_pages(store, "completed", limit=4)
    assert ids == sorted(done) and pages == 7  # the set's order inside a tie: by id
    newest, _ = await all_pages(store, "completed", limit=4, newest_first=True)
    assert newest == sorted(done, reverse=True)


async def test_pending_of_every_type_is_listed_in_dispatch_order(store: Store) -> None:
    await store.add_jobs([NewJob("a", job_id="a-low", priority=0), NewJob("b", job_id="b-high", priority=5),
                          NewJob("a", job_id="a-high", priority=5), NewJob("b", job_id="b-low", priority=0),
                          NewJob("c", job_id="c-late", priority=0, delay_ms=60_000)], now=T)
    ids, _ = await all_pages(store, "pending", limit=2)
    assert ids == ["b-high", "a-high", "a-low", "b-low"]  # priority, then submit order
    assert (await all_pages(store, "pending", job_type="a"))[0] == ["a-high", "a-low"]
    assert (await all_pages(store, "scheduled"))[0] == ["c-late"]
    assert (await all_pages(store, "pending", newest_first=True))[0] == ["b-low", "a-low", "a-high", "b-high"]


async def test_jobs_added_while_paging_are_neither_repeated_nor_make_others_skipped(store: Store) -> None:
    await store.add_jobs([NewJob("a", job_id=f"p{n:02d}") for n in range(10)], now=T)
    first = await store.list_jobs("pending", limit=4)
    await store.add_jobs([NewJob("a", job_id=f"q{n:02d}") for n in range(3)], now=T + 1)
    rest: list[str] = []
    cursor = first.cursor
    while cursor is not None:
        page = await store.list_jobs("pending", limit=4, cursor=cursor)
        rest += [row["job_id"] for row in page.rows]
        cursor = page.cursor
    listed = [row["job_id"] for row in first.rows] + rest
    assert listed == [f"p{n:02d}" for n in range(10)] + ["q00", "q01", "q02"]


async def test_a_type_filter_on_a_queue_wide_set_looks_at_few_ids_per_page(store: Store) -> None:
    await store.add_jobs([NewJob("common", job_id=f"c{n:03d}") for n in range(60)]
                         + [NewJob("rare", job_id="r1"), NewJob("rare", job_id="r2")], now=T)
    await store.register_worker("w1", ["common", "rare"], 62, now=T)
    await complete_all(store, "w1", 62, now=T + 5)
    page = await store.list_jobs("completed", job_type="rare", limit=1)
    assert page.scanned <= 10  # SCAN_PER_ROW ids for the one row asked for
    ids, pages = await all_pages(store, "completed", job_type="rare", limit=1)
    assert sorted(ids) == ["r1", "r2"] and pages > 2  # several short pages, never one long call


async def test_a_row_is_the_job_as_stored_with_payload_and_result_on_request(store: Store) -> None:
    payload = b'{"url": "https://example.org/a.png", "n": 1.50}'
    await store.add_jobs([NewJob("a", job_id="j1", payload=payload, priority=3, max_attempts=5)], now=T)
    await store.register_worker("w1", ["a"], 1, now=T)
    (job,) = await store.claim("w1", now=T + 10)
    await store.fail(job.job_id, "w1", job.attempt, "upstream 503", retry=False, now=T + 20)
    (row,) = (await store.list_jobs("failed")).rows
    assert {k: row[k] for k in ("job_id", "job_type", "status", "priority", "attempts", "max_attempts",
                                "worker_id", "created_at", "started_at", "finished_at", "error")} == {
        "job_id": "j1", "job_type": "a", "status": "failed", "priority": 3, "attempts": 1, "max_attempts": 5,
        "worker_id": "w1", "created_at": T, "started_at": T + 10, "finished_at": T + 20,
        "error": "upstream 503"}
    assert "payload" not in row
    (full,) = (await store.list_jobs("failed", payloads=True)).rows
    assert full["payload"] == payload and full["result"] is None
    assert orjson.loads(full["payload"])["n"] == 1.5


async def test_bad_arguments_are_refused_and_an_empty_status_is_one_empty_page(store: Store) -> None:
    with pytest.raises(BadArgument, match="status"):
        await store.list_jobs("done")
    with pytest.raises(BadArgument, match="limit"):
        await store.list_jobs("failed", limit=501)
    page = await store.list_jobs("active")
    assert page.rows == [] and page.cursor is None
    with pytest.raises(ValueError, match="cursor"):
        Cursor.decode("not a cursor")
    assert Cursor.decode(Cursor("1733150000123", "a:b").encode()) == Cursor("1733150000123", "a:b")
