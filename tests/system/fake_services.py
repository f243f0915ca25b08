"""Test doubles that run inside the system-test container (standard library only).

- A TCP proxy in front of the moto server. While the hang file exists it accepts
  connections and never responds. When the file is removed, the hung connections are
  closed so that the client retries at once.
- A Docker Engine API stand-in on a Unix socket that serves ``/_ping``, ``/version``,
  ``/info`` and ``/auth``. It records method and path of each request in a log file,
  never a body or header.
"""

import argparse
import asyncio
import json
import os
from pathlib import Path

API_VERSION = "1.41"


class HangingProxy:
    def __init__(self, upstream_host, upstream_port, hang_file):
        self.upstream = (upstream_host, upstream_port)
        self.hang_file = Path(hang_file)
        self.hung_writers = set()

    async def handle(self, reader, writer):
        if self.hang_file.exists():
            self.hung_writers.add(writer)
            return
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.close()
            return
        await asyncio.gather(self.pipe(reader, upstream_writer), self.pipe(upstream_reader, writer))

    @staticmethod
    async def pipe(reader, writer):
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()

    async def release_when_file_removed(self):
        while True:
            await asyncio.sleep(0.1)
            if self.hung_writers and not self.hang_file.exists():
                for writer in self.hung_writers:
                    writer.close()
                self.hung_writers.clear()


class FakeDockerApi:
    def __init__(self, request_log):
        self.request_log = Path(request_log)

    async def handle(self, reader, writer):
        try:
            while True:
                request_line = await reader.readline()
                if not request_line:
                    break
                method, path = request_line.decode("latin-1").split()[:2]
                length = await self.read_headers(reader)
                await reader.readexactly(length)
                with self.request_log.open("a") as log:
                    log.write(f"{method} {path}\n")
                status, body = self.respond(method, path)
                writer.write(self.response(status, body))
                await writer.drain()
        except (OSError, ValueError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    @staticmethod
    async def read_headers(reader):
        length = 0
        while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        return length

    @staticmethod
    def respond(method, path):
        endpoint = "/" + path.split("?")[0].rstrip("/").split("/")[-1]
        if endpoint == "/_ping":
            return 200, "OK"
        if endpoint == "/version":
            return 200, {"ApiVersion": API_VERSION, "Version": "20.10.24", "Os": "linux"}
        if endpoint == "/info":
            return 200, {"Swarm": {"LocalNodeState": "inactive"}}
        if endpoint == "/auth" and method == "POST":
            return 200, {"Status": "Login Succeeded", "IdentityToken": ""}
        return 404, {"message": f"page not found: {method} {path}"}

    @staticmethod
    def response(status, body):
        if isinstance(body, str):
            payload, content_type = body.encode(), "text/plain"
        else:
            payload, content_type = json.dumps(body).encode(), "application/json"
        reason = "OK" if status == 200 else "Not Found"
        head = (
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n"
            f"Api-Version: {API_VERSION}\r\nContent-Length: {len(payload)}\r\n\r\n"
        )
        return head.encode() + payload


async def serve(args):
    proxy = HangingProxy(args.upstream_host, args.upstream_port, args.hang_file)
    listen_host, listen_port = args.listen.rsplit(":", 1)
    await asyncio.start_server(proxy.handle, listen_host, int(listen_port))

    docker = FakeDockerApi(args.docker_log)
    Path(args.docker_socket).unlink(missing_ok=True)
    await asyncio.start_unix_server(docker.handle, args.docker_socket)
    os.chmod(args.docker_socket, 0o660)

    await proxy.release_when_file_removed()


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--listen", required=True, help="HOST:PORT of the proxy")
    parser.add_argument("--upstream-host", default="127.0.0.1")
    parser.add_argument("--upstream-port", type=int, required=True)
    parser.add_argument("--hang-file", required=True)
    parser.add_argument("--docker-socket", required=True)
    parser.add_argument("--docker-log", required=True)
    asyncio.run(serve(parser.parse_args()))


if __name__ == "__main__":
    main()
