"""Python's HTTP clients in Moat: every request goes to the host, which sends it.

The worker has no network permission at all. `install()` (run by the lockdown when the policy
allows hosts) wires what agent code writes to one function, `send`, that hands a request to the
host and blocks until its response: the host checks the URL against `network.allow`, adds that
entry's headers (secrets Python never sees), keeps to its `perMinute`, and answers within the
call's caps. So nothing here is a security boundary: code that bypasses it reaches no network.

- `http.client` (and so `urllib.request`): connections write into, and read from, a `_Wire`
  instead of a socket; https needs no `ssl`, since the host makes the TLS connection.
- `urllib3` (and so `requests`): its Emscripten support (`urllib3.contrib.emscripten`) is used
  as is, with its `fetch` module, which would call the browser's XMLHttpRequest, replaced.
- `httpx`: `HTTPTransport` and `AsyncHTTPTransport` are replaced by transports that call `send`.
- `moat.fetch`: the asynchronous helper from before, unchanged for its callers.

Redirects are not followed by the host: the response goes back to the client, which follows it
as it would anywhere (`requests` and `urllib` do, `httpx` when asked), each hop checked again.
"""

import sys


def install(send, stub):
    """Wires the clients to `send((request_json,)) -> answer_json`; returns the `moat` module."""
    import base64
    import io
    import json
    import types

    loads = json.loads
    dumps = json.dumps

    def exchange(url, method, headers, body=None, timeout=None):
        """Sends one request through the host; the response as a dict with `body` as bytes."""
        request = {
            "url": str(url),
            "method": str(method),
            "headers": [[str(k), str(v)] for k, v in headers],
        }
        if body:
            request["body"] = base64.b64encode(bytes(body)).decode("ascii")
        if isinstance(timeout, (int, float)) and timeout > 0:
            request["timeout"] = float(timeout)
        answer = loads(send((dumps(request),)))
        if answer.get("interrupted"):
            raise KeyboardInterrupt
        if "error" in answer:
            kind = answer.get("kind")
            cls = (
                PermissionError
                if kind in ("refused", "rate-limited")
                else TimeoutError
                if kind == "timeout"
                else ConnectionError
            )
            raise cls(answer["error"])
        answer["body"] = base64.b64decode(answer.get("body") or "")
        return answer

    # --- http.client, and urllib.request over it ---------------------------------------------

    class _Wire:
        """What an `http.client` connection has for a socket: the request written into it is
        sent by the host when the response is read."""

        def __init__(self, scheme, host, port, default_port, timeout):
            self._origin = f"{scheme}://{'[%s]' % host if ':' in host else host}"
            if port and port != default_port:
                self._origin += f":{port}"
            self._timeout = timeout
            self._out = bytearray()

        def sendall(self, data):
            self._out += data

        def send(self, data):
            self._out += data
            return len(data)

        def makefile(self, mode="rb", *args, **kwargs):
            raw = bytes(self._out)
            self._out.clear()
            return io.BufferedReader(io.BytesIO(self._exchange(raw)))

        def settimeout(self, timeout):
            self._timeout = timeout

        def setsockopt(self, *args):
            pass

        def shutdown(self, *args):
            pass

        def close(self):
            pass

        def _exchange(self, raw):
            head, _, rest = raw.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = (lines[0].split(" ", 2) + ["", ""])[:3]
            headers = []
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers.append((name.strip(), value.strip()))
            chunked = any(
                k.lower() == "transfer-encoding" and "chunked" in v.lower() for k, v in headers
            )
            body = _dechunk(rest) if chunked else rest
            url = target if "://" in target else self._origin + target
            timeout = self._timeout if isinstance(self._timeout, (int, float)) else None
            answer = exchange(url, method, headers, body, timeout)
            import http.client

            status = answer["status"]
            reason = answer.get("reason") or http.client.responses.get(status, "")
            out = [f"HTTP/1.1 {status} {reason}"]
            out += [f"{k}: {v}" for k, v in answer["headers"]]
            out.append(f"Content-Length: {len(answer['body'])}")
            text = "\r\n".join(out) + "\r\n\r\n"
            return text.encode("latin-1", "replace") + answer["body"]

    def _dechunk(data):
        out = bytearray()
        while data:
            size_line, _, data = data.partition(b"\r\n")
            size = int(size_line.split(b";")[0] or b"0", 16)
            if size == 0:
                break
            out += data[:size]
            data = data[size + 2 :]
        return bytes(out)

    def patch_http_client(module):
        def connect(self):
            scheme = getattr(self, "_moat_scheme", "http")
            self.sock = _Wire(scheme, self.host, self.port, self.default_port, self.timeout)

        module.HTTPConnection.connect = connect
        https = getattr(module, "HTTPSConnection", None)
        if https is None:

            class HTTPSConnection(module.HTTPConnection):
                default_port = 443

                def __init__(self, host, port=None, *, context=None, **kwargs):
                    super().__init__(host, port, **kwargs)
                    self._context = context

            module.HTTPSConnection = https = HTTPSConnection
        https._moat_scheme = "https"
        https.connect = connect
        # The host makes the TLS connection: no context is needed (nor can Pyodide's ssl make one).
        module._create_https_context = lambda http_version: None

    # --- urllib3's Emscripten fetch, and requests over it --------------------------------------

    def make_urllib3_fetch(module):
        class _RequestError(Exception):
            def __init__(self, message=None, *, request=None, response=None):
                self.message = message
                self.request = request
                self.response = response
                super().__init__(message)

        class _StreamingError(_RequestError):
            pass

        class _TimeoutError(_RequestError):
            pass

        def send_request(request):
            from urllib3._collections import HTTPHeaderDict
            from urllib3.contrib.emscripten.response import EmscriptenResponse

            body = request.body
            if isinstance(body, str):
                body = body.encode("utf-8")
            elif hasattr(body, "read"):
                body = body.read()
            elif body is not None and not isinstance(body, (bytes, bytearray, memoryview)):
                body = b"".join(c.encode() if isinstance(c, str) else bytes(c) for c in body)
            try:
                answer = exchange(
                    request.url, request.method, request.headers.items(), body, request.timeout
                )
            except TimeoutError as exc:
                # A read timeout, as urllib3 raises it for a socket: requests makes it a Timeout.
                from urllib3.exceptions import ReadTimeoutError

                raise ReadTimeoutError(None, request.url, str(exc)) from None
            except OSError as exc:
                raise _RequestError(str(exc), request=request) from None
            headers = HTTPHeaderDict()
            for k, v in answer["headers"]:
                headers.add(k, v)
            return EmscriptenResponse(
                status_code=answer["status"], headers=headers, body=answer["body"], request=request
            )

        def send_streaming_request(request):
            return None  # the whole response comes at once; urllib3 then reads it from memory

        module.__doc__ = "urllib3's Emscripten fetch, sent through Moat's host."
        module._RequestError = _RequestError
        module._StreamingError = _StreamingError
        module._TimeoutError = _TimeoutError
        module.send_request = send_request
        module.send_streaming_request = send_streaming_request
        module.streaming_ready = lambda: False
        module.has_jspi = lambda: False
        module.is_in_browser_main_thread = lambda: False

        async def wait_for_streaming_ready():
            return False

        module.wait_for_streaming_ready = wait_for_streaming_ready

    # --- httpx -----------------------------------------------------------------------------------

    def patch_httpx(module):
        """`module` is `httpx._transports.default`, patched before httpx's client imports it."""
        Response = module.Response
        errors = sys.modules["httpx._exceptions"]

        def handle(request):
            timeouts = request.extensions.get("timeout") or {}
            limits = [t for t in timeouts.values() if isinstance(t, (int, float))]
            try:
                answer = exchange(
                    str(request.url),
                    request.method,
                    request.headers.multi_items(),
                    request.content,
                    max(limits) if limits else None,
                )
            except TimeoutError as exc:
                raise errors.ReadTimeout(str(exc), request=request) from None
            except OSError as exc:
                raise errors.ConnectError(str(exc), request=request) from None
            return Response(
                answer["status"],
                headers=answer["headers"],
                content=answer["body"],
                request=request,
                extensions={
                    "http_version": b"HTTP/1.1",
                    "reason_phrase": (answer.get("reason") or "").encode("latin-1", "replace"),
                },
            )

        class HTTPTransport(module.BaseTransport):
            """httpx's transport in Moat: each request is sent by the host."""

            def __init__(self, *args, **kwargs):
                pass

            def handle_request(self, request):
                request.read()
                return handle(request)

        class AsyncHTTPTransport(module.AsyncBaseTransport):
            """httpx's async transport in Moat: each request is sent by the host (the event loop
            waits meanwhile, as for any blocking call)."""

            def __init__(self, *args, **kwargs):
                pass

            async def handle_async_request(self, request):
                await request.aread()
                return handle(request)

        HTTPTransport.__module__ = AsyncHTTPTransport.__module__ = module.__name__
        module.HTTPTransport = HTTPTransport
        module.AsyncHTTPTransport = AsyncHTTPTransport

    # --- the import hook -------------------------------------------------------------------------

    def patch_urllib3_response(module):
        """requests reads cookies from `_original_response.msg`, which urllib3's Emscripten
        response lacks: give it the headers as an `http.client.HTTPMessage`."""
        import http.client

        class _Original:
            def __init__(self, headers):
                self.msg = http.client.HTTPMessage()
                for k, v in headers.iteritems():
                    self.msg[k] = v

            def isclosed(self):
                return True

        wrapper = module.EmscriptenHttpResponseWrapper
        wrapper._original_response = property(lambda self: _Original(self.headers))

    patches = {
        "http.client": patch_http_client,
        "httpx._transports.default": patch_httpx,
        "urllib3.contrib.emscripten.response": patch_urllib3_response,
    }
    replaced = {"urllib3.contrib.emscripten.fetch": make_urllib3_fetch}

    class _Patching:
        """Runs a module as its own loader would, then patches it."""

        def __init__(self, loader, patch):
            self._loader = loader
            self._patch = patch

        def create_module(self, spec):
            create = getattr(self._loader, "create_module", None)
            return create(spec) if create else None

        def exec_module(self, module):
            self._loader.exec_module(module)
            self._patch(module)

        def __getattr__(self, name):
            return getattr(self._loader, name)

    class _Replacing:
        """Makes a module of Moat's own in place of one that needs the browser."""

        def __init__(self, make):
            self._make = make

        def create_module(self, spec):
            return None

        def exec_module(self, module):
            self._make(module)

    class MoatHTTPFinder:
        """Hands Python's HTTP clients their Moat versions as they are imported."""

        def find_spec(self, name, path=None, target=None):
            import importlib.machinery

            if name in replaced:
                return importlib.machinery.ModuleSpec(name, _Replacing(replaced[name]))
            patch = patches.get(name)
            if patch is None:
                return None
            for finder in sys.meta_path:
                if finder is self or not hasattr(finder, "find_spec"):
                    continue
                spec = finder.find_spec(name, path, target)
                if spec is not None:
                    spec.loader = _Patching(spec.loader, patch)
                    return spec
            return None

    sys.meta_path.insert(0, MoatHTTPFinder())
    if "http.client" in sys.modules:
        patch_http_client(sys.modules["http.client"])

    # --- moat.fetch ------------------------------------------------------------------------------

    class Response(types.SimpleNamespace):
        """What `moat.fetch` returns: `status`, `headers` (a dict), `body` (bytes)."""

        def text(self):
            return self.body.decode("utf-8", "replace")

        def json(self):
            return json.loads(self.body)

    async def fetch(url, *, method="GET", headers=None, body=None):
        """Fetches `url` (a host the policy allows) through the host; raises OSError when the host
        is refused. Redirects are not followed."""
        if isinstance(body, str):
            body = body.encode()
        answer = exchange(url, method, dict(headers or {}).items(), body)
        return Response(status=answer["status"], headers=dict(answer["headers"]), body=answer["body"])

    return stub("moat", fetch=fetch, Response=Response)
