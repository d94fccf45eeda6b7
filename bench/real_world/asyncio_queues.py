"""asyncio: 8 producers and 4 consumers passing 200,000 messages through bounded queues."""
import asyncio


async def producer(q, n, base):
    for i in range(n):
        await q.put({"id": base + i, "payload": [base, i, str(i)]})


async def consumer(q, out):
    while True:
        item = await q.get()
        if item is None:
            return
        out.append(len(item["payload"][2]) + item["id"] % 3)


async def main():
    q = asyncio.Queue(maxsize=1000)
    out = []
    consumers = [asyncio.create_task(consumer(q, out)) for _ in range(4)]
    await asyncio.gather(*(producer(q, 25_000, k * 100_000) for k in range(8)))
    for _ in consumers:
        await q.put(None)
    await asyncio.gather(*consumers)
    print(len(out), sum(out))


asyncio.run(main())
