#!/usr/bin/python3
"""A TCP proxy that delays what it forwards: the round trip a real link has and this kernel's
tc cannot add (no netem). Each connection to LISTEN is forwarded to TARGET; every chunk read is
written on after DELAY_MS / 2 (so a round trip through the proxy takes DELAY_MS more), in order.
Prints "listening on HOST:PORT" once it listens (port 0: a free one).

  delay_proxy.py LISTEN_HOST:PORT TARGET_HOST:PORT DELAY_MS [--cut up|down:BYTES ...]

--cut cuts a link once: the first connection that has carried BYTES upward (client to target)
or downward is reset both ways, as a link that dies (each --cut once, in its turn; later
connections go through). Prints "cut DIRECTION at BYTES" when it does.

Stopped by SIGTERM (the test that started it, by its PID)."""
import asyncio
import sys
import time


CUTS = []  # [direction, bytes], the next first


class Cut(ConnectionError):
    pass


async def pipe(reader, writer, delay, direction):
    """Forwards reader to writer, each chunk held until `delay` seconds after it was read."""
    queue = asyncio.Queue(maxsize=64)  # 4 MiB in flight at most: the link pushes back
    carried = 0

    async def read():
        nonlocal carried
        try:
            while data := await reader.read(1 << 16):
                carried += len(data)
                if CUTS and CUTS[0][0] == direction and carried >= CUTS[0][1]:
                    print(f"cut {direction} at {carried}", flush=True)
                    CUTS.pop(0)
                    raise Cut(direction)
                await queue.put((time.monotonic() + delay, data))
        finally:  # an end or a reset: the writer learns it either way
            await queue.put((0, b""))

    async def write():
        while True:
            due, data = await queue.get()
            if not data:
                break
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()  # half-closed, as the sender left it: the answer may still come

    results = await asyncio.gather(read(), write(), return_exceptions=True)
    if any(isinstance(r, Exception) for r in results):
        raise ConnectionError("a side of the connection broke")


async def main():
    listen, target, delay_ms = sys.argv[1], sys.argv[2], float(sys.argv[3])
    for i in range(4, len(sys.argv), 2):
        assert sys.argv[i] == "--cut", f"unknown argument {sys.argv[i]}"
        direction, size = sys.argv[i + 1].split(":")
        assert direction in ("up", "down"), direction
        CUTS.append([direction, int(size)])
    host, port = listen.rsplit(":", 1)
    thost, tport = target.rsplit(":", 1)
    delay = delay_ms / 2000

    async def connection(client_reader, client_writer):
        try:
            server_reader, server_writer = await asyncio.open_connection(thost, int(tport))
        except OSError:
            client_writer.close()
            return
        ends = [asyncio.ensure_future(pipe(client_reader, server_writer, delay, "up")),
                asyncio.ensure_future(pipe(server_reader, client_writer, delay, "down"))]
        # A direction that breaks (a reset) ends both: the other side is told by the close.
        await asyncio.wait(ends, return_when=asyncio.FIRST_EXCEPTION)
        broke = any(e.done() and e.exception() is not None for e in ends)
        for end in ends:
            end.cancel()
        for writer in (server_writer, client_writer):
            if broke:
                writer.transport.abort()
            else:
                writer.close()

    server = await asyncio.start_server(connection, host, int(port))
    print(f"listening on {host}:{server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
