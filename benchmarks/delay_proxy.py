"""A TCP proxy on loopback that makes a server look remote: every byte arrives a fixed time late.

    python benchmarks/delay_proxy.py --delay-ms 25 9200 9090    # prints "9200 -> PORT" per target

Each target port on 127.0.0.1 gets a listening port of its own. Data is delayed by ``--delay-ms``
in each direction (25 ms each way: a 50 ms round trip), in order, without limiting bandwidth; a new
connection first waits one round trip, as a TCP handshake to a remote server would, so reusing
connections pays as it does against real remote servers. Runs until killed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def deliver() -> None:
        while True:
            due, data = await queue.get()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:
                with contextlib.suppress(OSError):
                    writer.write_eof()
                return
            writer.write(data)
            await writer.drain()

    sender = asyncio.create_task(deliver())
    try:
        while True:
            data = await reader.read(1 << 16)
            queue.put_nowait((loop.time() + delay, data))
            if not data:
                break
        await sender
    except (ConnectionError, OSError):
        sender.cancel()


async def _serve(target: int, delay: float) -> asyncio.Server:
    async def connected(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            await asyncio.sleep(2 * delay)  # the handshake's round trip
            server_reader, server_writer = await asyncio.open_connection("127.0.0.1", target)
        except OSError:
            client_writer.close()
            return
        try:
            await asyncio.gather(_pump(client_reader, server_writer, delay), _pump(server_reader, client_writer, delay))
        finally:
            for writer in (client_writer, server_writer):
                writer.close()

    return await asyncio.start_server(connected, "127.0.0.1", 0)


async def main(targets: list[int], delay_ms: float) -> None:
    servers = [await _serve(target, delay_ms / 1000) for target in targets]
    for target, server in zip(targets, servers, strict=False):
        print(f"{target} -> {server.sockets[0].getsockname()[1]}", flush=True)
    await asyncio.gather(*(server.serve_forever() for server in servers))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--delay-ms", type=float, default=25.0, help="one-way delay (default 25: a 50 ms round trip)")
    parser.add_argument("targets", nargs="+", type=int, help="ports on 127.0.0.1 to put behind the delay")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(args.targets, args.delay_ms))
