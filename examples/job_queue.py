"""A job queue: thousands of jobs, flaky handlers, automatic retries.

    python examples/job_queue.py [--jobs 3000] [--workers 2] [--concurrency 32]

Enqueues email, webhook and report jobs, some of whose handlers fail at random, runs
them on Worker objects with retries and backoff, shows a progress bar, and ends with
a table of outcomes, retries and throughput, and where the SQLite files are.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

import dotdo


@dotdo.job("email")
async def send_email(payload):
    await asyncio.sleep(random.uniform(0.001, 0.005))  # an SMTP round trip
    if random.random() < 0.10:
        raise ConnectionError("SMTP server busy")
    return {"sent": payload["to"]}


@dotdo.job("webhook")
async def call_webhook(payload):
    await asyncio.sleep(random.uniform(0.002, 0.010))
    if random.random() < 0.15:
        raise TimeoutError(f"{payload['url']} did not answer")
    return {"status": 200}


@dotdo.job("report")
def generate_report(payload):
    if payload["rows"] % 97 == 0:
        raise ValueError(f"report {payload['rows']} has a corrupt row")  # fails every try
    return {"rows": payload["rows"], "total": sum(range(payload["rows"]))}


def make_jobs(n: int) -> list[dict]:
    kinds = [
        lambda i: {"type": "email", "payload": {"to": f"user{i}@example.com"}},
        lambda i: {"type": "webhook", "payload": {"url": f"https://hooks.example.com/{i}"}},
        lambda i: {"type": "report", "payload": {"rows": i}, "max_retries": 2},
    ]
    return [kinds[i % 3](i) for i in range(n)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=3000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    console = Console()
    settings = dotdo.init()
    run = time.strftime("%Y%m%d-%H%M%S")
    queue = dotdo.Queue(f"demo-{run}")

    start = time.perf_counter()
    jobs = make_jobs(args.jobs)
    for i in range(0, len(jobs), 1000):  # enqueue_many: one call, one transaction
        queue.enqueue_many(jobs[i:i + 1000]).result()
    enqueued = time.perf_counter() - start
    workers = [dotdo.Worker(f"demo-{run}-{i}") for i in range(args.workers)]
    dotdo.get([w.start(queue.id, concurrency=args.concurrency, backoff=0.1) for w in workers])

    columns = (TextColumn("[bold]jobs"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("{task.fields[detail]}"))
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("jobs", total=args.jobs, detail="")
        while True:
            m = queue.get_metrics().result()
            progress.update(task, completed=m.completed + m.failed,
                            detail=f"running {m.running}, retries {m.retries}, failed {m.failed}")
            if m.completed + m.failed >= args.jobs:
                break
            time.sleep(0.2)
    elapsed = time.perf_counter() - start

    table = Table(title=f"dotdo job queue: {args.jobs} jobs, {args.workers} workers")
    for col in ("type", "completed", "failed", "retries"):
        table.add_column(col, justify="right")
    counts = queue.counts().result()
    retries_by_type = {}
    page = queue.list(limit=1000).result()
    while True:
        for job in page["jobs"]:
            retries_by_type[job["type"]] = retries_by_type.get(job["type"], 0) + max(job["attempts"] - 1, 0)
        if page["cursor"] is None:
            break
        page = queue.list(limit=1000, cursor=page["cursor"]).result()
    for job_type, by_status in sorted(counts.items()):
        table.add_row(job_type, str(by_status.get("completed", 0)), str(by_status.get("failed", 0)),
                      str(retries_by_type.get(job_type, 0)))
    m = queue.get_metrics().result()
    table.add_row("[bold]all", f"[bold]{m.completed}", f"[bold]{m.failed}", f"[bold]{m.retries}")
    console.print(table)
    console.print(f"enqueued {args.jobs} jobs in {enqueued:.2f} s "
                  f"({args.jobs / enqueued:,.0f} jobs/s); all finished in {elapsed:.2f} s "
                  f"({args.jobs / elapsed:,.0f} jobs/s end to end, retry waits included)",
                  soft_wrap=True)
    failed = queue.list(status="failed", limit=3).result()["jobs"]
    for job in failed:
        console.print(f"  dead letter: {job['$id'][:8]} {job['type']}: {job['error']}",
                      soft_wrap=True)
    console.print(f"SQLite files: {settings.storage}/Queue and {settings.storage}/Worker "
                  "(one file per object; `sqlite3` opens them)", soft_wrap=True)


if __name__ == "__main__":
    main()
