"""One budget, many workers: threads (with propagate) and asyncio tasks never overspend it.

.venv/bin/python examples/concurrent_workers.py
"""

from __future__ import annotations

import asyncio

from _client import async_openai_client, openai_client

import budgetguard as bg

QUESTION = [{"role": "user", "content": "Name a prime number."}]


def threads() -> None:
    with openai_client() as client, bg.Budget(max_usd=0.0005, on_exceed=bg.Wait(max_wait=5)) as budget:

        def worker() -> int:
            done = 0
            while True:
                try:
                    client.chat.completions.create(
                        model="gpt-4o-mini", messages=QUESTION, max_completion_tokens=16
                    )
                except bg.BudgetExceeded:
                    return done
                done += 1

        # Threads do not inherit contextvars: ScopedThreadPoolExecutor carries the budget over.
        with bg.ScopedThreadPoolExecutor(8) as pool:
            counts = list(pool.map(lambda _: worker(), range(8)))
    print(f"threads: {sum(counts)} calls, spent ${budget.spent_usd} of ${budget.max_usd}")


async def tasks() -> None:
    with async_openai_client() as client:
        async with bg.Budget(max_usd=0.0005, on_exceed=bg.Wait(max_wait=5)) as budget:

            async def one() -> bool:
                try:
                    await client.chat.completions.create(
                        model="gpt-4o-mini", messages=QUESTION, max_completion_tokens=16
                    )
                except bg.BudgetExceeded:
                    return False
                return True

            results = await asyncio.gather(*(one() for _ in range(200)))
    print(f"asyncio: {sum(results)} of 200 calls fit, spent ${budget.spent_usd} of ${budget.max_usd}")


if __name__ == "__main__":
    threads()
    asyncio.run(tasks())
